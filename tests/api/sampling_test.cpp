// Sampled simulation against simulating everything, on long prompts (CTest label slow: Release
// only). Prefills of 8,192 tokens a sequence whose long operators (GEMMs of many passes or pass
// rows, attention of many query-block pairs, row ops of many chunks) are simulated in part (the
// first two rounds and the last two) and three of its layers, against the same step with every
// round of every layer simulated: within 1%.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>  // getpid: each test process writes its own config

#include "arch/loader.hpp"
#include "tools/api/run.hpp"

namespace tessera::api {
namespace {

std::string mid_llama() {
  const std::string path = (std::filesystem::temp_directory_path() / ("tessera_sampling_llama_" + std::to_string(getpid()) + ".json")).string();
  std::ofstream(path) << R"({"model_type": "llama", "hidden_size": 1024, "intermediate_size": 4096,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 16384})";
  return path;
}

TEST(SampledRounds, AgreeWithSimulatingEverythingAt8kTokens) {
  // h100-sxm at batch 5 (40,960 tokens): GEMMs of several pass rows with A kept resident (a
  // row's first pass loads A: rounds are whole pass rows) and row ops of many chunks in rounds.
  for (const auto& [preset, batch] :
       {std::pair{"h100-sxm", 1}, std::pair{"maia100-class", 2}, std::pair{"h100-sxm", 5}}) {
    SCOPED_TRACE(preset);
    const arch::Arch a = arch::load_arch(preset);
    RunSpec s;
    s.model = mid_llama(), s.phase = "prefill", s.batch = batch, s.seq = 8192;
    RunOptions full;
    full.sample_layers = 0, full.sample_rounds = 0;
    const Report sampled = run(a, s), every = run(a, s, full);
    EXPECT_FALSE(sampled.rounds_sampled.empty()) << "the case must simulate some operator in part";
    EXPECT_EQ(sampled.layers_simulated, 3);
    EXPECT_TRUE(every.rounds_sampled.empty());
    EXPECT_NEAR(sampled.seconds / every.seconds, 1.0, 0.01);
    EXPECT_NEAR(sampled.energy.total() / every.energy.total(), 1.0, 0.01);
    EXPECT_NEAR(sampled.hbm_bytes / every.hbm_bytes, 1.0, 0.01);
    // A GEMM's last pass may be partial and the extrapolated ones are whole.
    EXPECT_NEAR(sampled.flops / every.flops, 1.0, 0.005);
  }
}

// Plain PyTorch's element-wise kernels of a long prefill (RMSNorm's seven over 8,192 tokens move
// 200 MB each) run in rounds of sixteen 64 KiB pieces a tile: a sampled run simulates four.
TEST(SampledRounds, PyTorchElementWiseKernelsAgreeWithSimulatingEveryRound) {
  RunSpec s;
  s.model = mid_llama(), s.phase = "prefill", s.batch = 1, s.seq = 8192, s.framework = "pytorch";
  RunOptions full;
  full.sample_layers = 0, full.sample_rounds = 0;
  const arch::Arch a = arch::load_arch("h100-sxm");
  const Report sampled = run(a, s), every = run(a, s, full);
  EXPECT_NEAR(sampled.seconds / every.seconds, 1.0, 0.01);
  EXPECT_NEAR(sampled.energy.total() / every.energy.total(), 1.0, 0.01);
  EXPECT_NEAR(sampled.hbm_bytes / every.hbm_bytes, 1.0, 0.01);
}

// Mixtral-style experts through per-expert GEMMs (a long prompt): under uniform routing every
// expert takes about as many tokens, so the experts are rounds of like cost and a sampled run
// simulates four of the eight in each routed block of tokens (two blocks of 1,024 here), and of
// those the GEMMs' passes in turn (SMs of 136 KiB: small blocks, many passes; attention's rounds
// are sampled too).
TEST(SampledRounds, MoeExpertsAgreeWithSimulatingEveryExpert) {
  const std::string path = (std::filesystem::temp_directory_path() / ("tessera_sampling_moe_" + std::to_string(getpid()) + ".json")).string();
  std::ofstream(path) << R"({"model_type": "mixtral", "hidden_size": 1024, "intermediate_size": 2048,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 16384,
    "num_local_experts": 8, "num_experts_per_tok": 2})";
  // Without the L2's caching of HBM: what a sampled round finds cached differs from the rounds
  // it stands for (here the sampled run reads 13% fewer HBM bytes; README, limits).
  const arch::Arch a = arch::load_arch("h100-sxm", {"chip.tile.sram.capacity=136KiB", "chip.shared_memory.hbm_cache=0"});
  RunSpec s;
  s.model = path, s.phase = "prefill", s.batch = 1, s.seq = 2048;
  RunOptions full;
  full.sample_layers = 0, full.sample_rounds = 0;
  const Report sampled = run(a, s), every = run(a, s, full);
  EXPECT_EQ(sampled.rounds_sampled, (std::vector<std::string>{"l0.attention: 4 of 16 rounds",
                                                             "l0.experts: 4 of 8 rounds, 25 parts simulated"}));
  // 1.5% on time: the attention's 4 sampled rounds of 16 stand for the others less closely than
  // the experts' (within 1%) do.
  EXPECT_NEAR(sampled.seconds / every.seconds, 1.0, 0.015);
  EXPECT_NEAR(sampled.energy.total() / every.energy.total(), 1.0, 0.01);
  EXPECT_NEAR(sampled.hbm_bytes / every.hbm_bytes, 1.0, 0.01);
  EXPECT_NEAR(sampled.flops / every.flops, 1.0, 0.005);
}

}  // namespace
}  // namespace tessera::api
