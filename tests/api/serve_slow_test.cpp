// Serving costs on the grid against simulating every iteration whole (CTest label slow: Release
// only).
//  - Iterations of every kind for Llama-3-8B on maia100-class: within 6% each in time, 3% in
//    energy (a new 1,024-token prompt beside 20 decodes comes out 5.0% short: its attention,
//    simulated apart, shares the tiles with the decodes' better than in the one kernel).
//  - A 5-minute window of Azure's conversation trace (../shared/data/azure-llm-2023), replayed
//    with and without the grid: throughput, p99 TTFT and energy within 3%. Simulating its
//    iterations whole is what bounds the test, so a small Llama (2 layers, hidden 256) serves
//    it on tpu-v4-class at 300 x the trace's rate: its 1,445 requests arrive in a second, beyond
//    the replica's capacity, so batches fill (to 256) and a queue builds (p99 TTFT 0.74 s):
//    4,800 iterations, about 45 s.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "arch/loader.hpp"
#include "tools/api/serve.hpp"

namespace tessera::api {
namespace {

using sim::serving::SequenceWork;

arch::Arch replica(const char* preset) {
  arch::Arch a = arch::load_arch(preset, {});
  a.system.parallelism.tp = a.system.parallelism.pp = a.system.parallelism.ep = 1;
  return a;
}

std::vector<SequenceWork> decodes(int64_t n, int64_t lo, int64_t hi) {
  std::vector<SequenceWork> b;
  for (int64_t i = 0; i < n; ++i) b.push_back({i, lo + (hi - lo) * i / std::max<int64_t>(1, n - 1), 1, false});
  return b;
}

TEST(ServeGrid, CostsLlama3IterationsAsSimulatingThemWhole) {
  ServeSpec spec;
  spec.model = "llama-3-8b";
  ReplicaCost cost(replica("maia100-class"), spec, {});
  std::vector<std::vector<SequenceWork>> iterations = {decodes(24, 600, 1800)};
  iterations.push_back(decodes(20, 400, 1400));
  iterations.back().push_back({20, 0, 1024, true});  // a new prompt beside decodes
  iterations.push_back(decodes(40, 800, 2200));
  iterations.back().push_back({40, 2048, 300, true});  // a prompt's later chunk
  iterations.push_back({{0, 0, 200, true}, {1, 0, 700, true}, {2, 0, 90, true}});
  for (const auto& b : iterations) {
    const auto grid = cost.grid_cost(b), whole = cost.exact_cost(b);
    SCOPED_TRACE(fmt::format("{} sequences, first {} tokens after {}", b.size(), b[0].tokens, b[0].context));
    EXPECT_NEAR(grid.seconds / whole.seconds, 1.0, 0.06);
    EXPECT_NEAR(grid.joules / whole.joules, 1.0, 0.03);
  }
}

TEST(ServeGrid, ReplaysFiveMinutesOfTheConversationTraceAsSimulatingEveryIteration) {
  const std::string trace = std::string(TESSERA_SOURCE_DIR) + "/../shared/data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv";
  if (!std::filesystem::exists(trace)) GTEST_SKIP() << trace << " is absent";
  const std::string model = (std::filesystem::temp_directory_path() / fmt::format("tessera_serve_slow_{}.json", getpid())).string();
  std::ofstream(model) << R"({"model_type": "llama", "hidden_size": 256, "intermediate_size": 704,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 16384})";
  Traffic t;
  t.requests = trace, t.duration = 300, t.rate_scale = 300;
  const std::vector<workloads::Request> requests = load_traffic(t);
  ServeSpec spec;
  spec.model = model;
  const arch::Arch a = replica("tpu-v4-class");
  const ServeReport grid = serve(a, requests, spec, {});
  spec.exact = true;
  const ServeReport exact = serve(a, requests, spec, {});
  const auto& g = grid.metrics;
  const auto& e = exact.metrics;
  RecordProperty("iterations", int(exact.simulations));
  EXPECT_GT(g.requests, 1000);
  EXPECT_LT(grid.simulations, exact.simulations / 5);
  EXPECT_NEAR(g.requests_per_s / e.requests_per_s, 1.0, 0.03);
  EXPECT_NEAR(g.output_tokens_per_s / e.output_tokens_per_s, 1.0, 0.03);
  EXPECT_NEAR(g.ttft.p99 / e.ttft.p99, 1.0, 0.03);
  EXPECT_NEAR(g.joules / e.joules, 1.0, 0.03);
}

}  // namespace
}  // namespace tessera::api
