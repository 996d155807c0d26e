// The end-to-end facade: the report's figures follow from the stats and the architecture's
// prices (checked here by recomputing them independently), sampled layers agree with
// simulating every layer, the GPU presets meet the measured peaks of
// ../shared/calibration/gpu-peaks.json, and bad requests are clear errors.
#include "tools/api/run.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>  // getpid: each test process writes its own config
#include <nlohmann/json.hpp>
#include <cmath>

#include "arch/derived.hpp"
#include "arch/loader.hpp"

namespace tessera::api {
namespace {

RunSpec decode(const std::string& model, int64_t batch, int64_t context) {
  RunSpec s;
  s.model = model, s.phase = "decode", s.batch = batch, s.context = context;
  return s;
}

RunSpec prefill(const std::string& model, int64_t batch, int64_t seq) {
  RunSpec s;
  s.model = model, s.phase = "prefill", s.batch = batch, s.seq = seq;
  return s;
}

RunSpec op(const std::string& name, std::vector<int64_t> shape) {
  RunSpec s;
  s.op = name, s.shape = std::move(shape);
  return s;
}

// A mid-sized Llama (6 layers) written to a temporary config.json.
std::string small_llama() {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("tessera_run_test_llama_" + std::to_string(getpid()) + ".json")).string();
  std::ofstream(path) << R"({"model_type": "llama", "hidden_size": 1024, "intermediate_size": 2816,
    "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 4096})";
  return path;
}

TEST(Report, EnergyIsTheSumOfPricedEventsAndStaticPower) {
  const arch::Arch a = arch::load_arch("maia100-class", {"power.active_power=40W"});
  const Report r = run(a, decode(small_llama(), 8, 256));
  ASSERT_EQ(r.throttled_seconds, 0.0);
  const sim::Stats& s = r.stats;
  // Recomputed from the architecture's own fields, not from the energy module's prices.
  const double expected =
      s.sum("system.chip0.tile", ".sa.macs_bf16") * a.power.mac_energy.at("bf16") +
      (s.sum("system.chip0.tile", ".sram.read_bytes") + s.sum("system.chip0.tile", ".sa.sram_read_bytes")) *
          a.power.sram_read_energy +
      (s.sum("system.chip0.tile", ".sram.write_bytes") + s.sum("system.chip0.tile", ".sa.sram_write_bytes")) *
          a.power.sram_write_energy +
      s.sum("system.chip0.shared", ".bytes") * a.power.shared_memory_energy +
      (s.value("system.chip0.hbm.read_bytes") + s.value("system.chip0.hbm.write_bytes")) * 8 *
          a.hbm.energy_per_bit +
      s.value("system.chip0.noc.bit_hops") * a.power.noc_energy +
      s.sum("system.chip0.tile", ".vector.elements") * a.power.vector_energy +
      (a.power.active_power + a.power.static_power) * r.seconds;
  EXPECT_NEAR(r.energy.total(), expected, 1e-9 * expected);
  EXPECT_NEAR(r.energy.joules.at("active"), 40.0 * r.seconds, 1e-9);
  // The operators' rows share out all of it but the static power.
  double rows = 0;
  for (const Report::Row& op : r.ops) rows += op.energy.total();
  EXPECT_NEAR(rows, r.energy.dynamic(), 1e-9 * rows);
  EXPECT_GT(r.energy.joules.at("mac"), 0);
  EXPECT_GT(r.energy.joules.at("hbm"), 0);
  EXPECT_DOUBLE_EQ(r.avg_power_w, r.energy.total() / r.seconds);
  EXPECT_DOUBLE_EQ(r.joules_per_token, r.energy.total() / 8);
  EXPECT_GE(r.peak_power_w, r.avg_power_w * 0.999);
}

TEST(Report, CostFollowsFromCapexEnergyAndThroughput) {
  const arch::Arch a = arch::load_arch("maia100-class");
  const Report r = run(a, decode(small_llama(), 8, 256));
  const arch::Derived d = arch::derive(a);
  EXPECT_DOUBLE_EQ(r.tokens, 8);
  EXPECT_DOUBLE_EQ(r.tokens_per_s, 8 / r.seconds);
  EXPECT_DOUBLE_EQ(r.capex_usd, d.capex_per_chip);
  const double per_hour = d.capex_per_chip / (a.cost.amortization_years * 8760) +
                          r.avg_power_w * a.cost.pue * 3600 * a.cost.electricity_price;
  EXPECT_NEAR(r.usd_per_hour, per_hour, 1e-12 * per_hour);
  EXPECT_NEAR(r.usd_per_million_tokens, r.usd_per_hour / (r.tokens_per_s * 3600) * 1e6,
              1e-12 * r.usd_per_million_tokens);
  EXPECT_DOUBLE_EQ(r.tokens_per_s_per_capex_usd, r.tokens_per_s / d.capex_per_chip);

  RunOptions cloud;
  cloud.pricing = "cloud";
  const arch::Arch h100 = arch::load_arch("h100-sxm");
  const Report c = run(h100, decode(small_llama(), 8, 256), cloud);
  EXPECT_DOUBLE_EQ(c.usd_per_hour, *h100.cost.cloud_price);
  EXPECT_NEAR(c.usd_per_million_tokens, c.usd_per_hour / (c.tokens_per_s * 3600) * 1e6,
              1e-12 * c.usd_per_million_tokens);
}

TEST(Report, UtilizationAndBoundComeFromTheStats) {
  const arch::Arch a = arch::load_arch("maia100-class");
  const arch::Derived d = arch::derive(a);
  const Report r = run(a, op("gemm", {4096, 4096, 4096}));
  EXPECT_DOUBLE_EQ(r.flops, 2.0 * 4096 * 4096 * 4096);
  EXPECT_NEAR(r.utilization.at("compute"), r.flops / r.seconds / d.peak_flops.at("bf16"), 1e-12);
  EXPECT_NEAR(r.utilization.at("hbm_bandwidth"), r.hbm_bytes / r.seconds / d.hbm_bandwidth, 1e-12);
  EXPECT_EQ(r.bound, "compute");
  // A decode step streams the weights: HBM-bound (the small model's short ops leave HBM at
  // ~50%, bound by latency).
  const Report m = run(a, decode("llama-3-8b", 8, 256));
  EXPECT_GT(m.utilization.at("hbm_bandwidth"), kSaturated);
  EXPECT_EQ(m.bound, "hbm_bandwidth");
  EXPECT_EQ(run(a, decode(small_llama(), 8, 256)).bound, "latency");
}

TEST(SampledLayers, AgreeWithSimulatingEveryLayer) {
  const arch::Arch a = arch::load_arch("maia100-class");
  RunOptions full;
  full.sample_layers = 0;
  for (const RunSpec& s : {decode(small_llama(), 16, 512), prefill(small_llama(), 1, 512)}) {
    const Report sampled = run(a, s), every = run(a, s, full);
    EXPECT_EQ(sampled.layers, 6);
    EXPECT_EQ(sampled.layers_simulated, 3);
    EXPECT_EQ(every.layers_simulated, 6);
    EXPECT_NEAR(sampled.seconds / every.seconds, 1.0, 0.01) << s.describe();
    EXPECT_NEAR(sampled.hbm_bytes / every.hbm_bytes, 1.0, 1e-6) << s.describe();
    EXPECT_NEAR(sampled.flops / every.flops, 1.0, 1e-9) << s.describe();
    EXPECT_NEAR(sampled.energy.total() / every.energy.total(), 1.0, 0.01) << s.describe();
  }
}

// Measured on real GPUs: ../shared/calibration/gpu-peaks.json (copied here; the test checks
// the copy against the file when it is there).
struct Measured {
  const char* preset;
  const char* key;
  double gemm_tflops, copy_tb_s, idle_w, gemm_w;
};
constexpr Measured kMeasured[] = {{"h100-sxm", "h100_sxm", 755.9, 2.934, 70.4, 696.5},
                                  {"h200-sxm", "h200_sxm", 748.0, 4.137, 78.6, 693.2}};

// A model split over two chips (tensor parallelism): the same work, half of it per chip, an
// all-reduce after o_proj and after down_proj, each sending (n - 1) / n of the [tokens, hidden]
// bf16 sums twice (reduce-scatter, all-gather) from every chip to the next: with n = 2, the
// whole tensor once per all-reduce on each link direction.
TEST(TensorParallel, TwoChipsShareTheWorkAndSendTheAllReducesBytes) {
  const std::string model = small_llama();
  RunOptions every;
  every.sample_layers = 0;
  const Report one = run(arch::load_arch("maia100-class"), decode(model, 8, 256), every);
  const Report two = run(arch::load_arch("maia100-class", {"system.chips=2", "system.topology=fully_connected",
                                                           "system.link.count=1", "system.parallelism.tp=2"}),
                         decode(model, 8, 256), every);
  EXPECT_EQ(two.chips, 2);
  EXPECT_LT(two.seconds, one.seconds);
  EXPECT_NEAR(two.flops / one.flops, 1.0, 0.02);  // norms and embeddings are done twice: a little more
  const double tensor = 8.0 * 1024 * 2;                    // tokens x hidden x bf16
  const double all_reduces = 2 * 6;                        // two per layer
  EXPECT_DOUBLE_EQ(two.stats.value("system.link.c0-c1.bytes"), all_reduces * tensor);
  EXPECT_DOUBLE_EQ(two.stats.value("system.link.c1-c0.bytes"), all_reduces * tensor);
  std::set<std::string> ops;
  for (const Report::Row& r : two.ops) {
    if (r.share.seconds > 0) ops.insert(r.share.name);
  }
  EXPECT_TRUE(ops.count("attn_all_reduce") && ops.count("mlp_all_reduce"));
  // Each chip holds half of every layer's weights and of the LM head (the embeddings whole).
  EXPECT_LT(two.utilization.at("capacity"), 0.6 * one.utilization.at("capacity"));
}

// A small Mixtral (4 layers, 8 experts, top 2) written to a temporary config.json.
std::string small_mixtral() {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("tessera_run_test_mixtral_" + std::to_string(getpid()) + ".json")).string();
  std::ofstream(path) << R"({"model_type": "mixtral", "hidden_size": 1024, "intermediate_size": 2048,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 8192,
    "num_local_experts": 8, "num_experts_per_tok": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "max_position_embeddings": 4096})";
  return path;
}

// Sparse routing in performance mode: one token reads the weights of its 2 experts of 8, a
// skewed routing leaves experts without tokens (their weights unread) where uniform routing
// reaches them all, and a prefill does the routed tokens' expert FLOPs, not all experts'.
TEST(SparseMoe, StepsReadAndComputeOnlyTheRoutedExperts) {
  const std::string model = small_mixtral();
  const arch::Arch a = arch::load_arch("maia100-class");
  RunOptions every;
  every.sample_layers = 0;
  const double layers = 4, H = 1024, I = 2048, E = 8;
  const double expert_bytes = 3 * H * I * 2;  // w1, w3, w2 in bf16
  const Report one = run(a, decode(model, 1, 256), every);
  const Report wide = run(a, decode(model, 16, 256), every);
  // 16 tokens reach all 8 experts (uniform: each is missed with probability (6/8)^16 = 1%); one
  // token reaches 2 of them: 6 experts a layer fewer read, besides 15 sequences' KV caches.
  const double kv = layers * 15 * 256 * 2 * (4 * 128) * 2;
  EXPECT_NEAR(wide.hbm_bytes - one.hbm_bytes, layers * (E - 2) * expert_bytes + kv, 0.05 * layers * E * expert_bytes);
  RunOptions skewed = every;
  skewed.routing_skew = 3.0;  // p ~ 1 / rank^3: most tokens pick the same few experts
  const Report hot = run(a, decode(model, 16, 256), skewed);
  EXPECT_LT(hot.hbm_bytes, wide.hbm_bytes - layers * expert_bytes);
  EXPECT_GT(hot.hbm_bytes, one.hbm_bytes);

  // Prefill of 512 tokens: the experts' MACs are the routed tokens' (512 x 2 of the 8 x 512
  // dense ones) plus the padding of each expert's last block, well under half the dense count.
  const Report pre = run(a, prefill(model, 1, 512), every);
  const double routed_macs = layers * 512 * 2 * 3 * H * I, dense_macs = routed_macs * E / 2;
  const double other_macs = pre.flops / 2 - routed_macs;  // attention, projections, LM head
  EXPECT_GT(other_macs, 0.0);
  EXPECT_LT(pre.flops / 2, routed_macs + 0.5 * routed_macs + 0.25 * dense_macs);
}

// Expert parallelism over 2 chips: each holds 4 whole experts, so one token's 2 experts are read
// once on whichever chips hold them (as tensor parallelism reads half of each on both), and the
// MoE's output is still all-reduced (2 per layer, tokens x hidden x bf16 each way).
TEST(SparseMoe, ExpertParallelChipsReadTheirOwnExperts) {
  const std::string model = small_mixtral();
  RunOptions every;
  every.sample_layers = 0;
  const auto system = [](int64_t ep) {
    return arch::load_arch("maia100-class", {"system.chips=2", "system.topology=fully_connected", "system.link.count=1",
                                             "system.parallelism.tp=2", fmt::format("system.parallelism.ep={}", ep)});
  };
  const Report tp = run(system(1), decode(model, 1, 256), every), ep = run(system(2), decode(model, 1, 256), every);
  EXPECT_NEAR(ep.hbm_bytes, tp.hbm_bytes, 0.02 * tp.hbm_bytes);
  EXPECT_DOUBLE_EQ(ep.stats.value("system.link.c0-c1.bytes"), 2 * 4 * 1024 * 2.0);
  const double c0 = ep.stats.value("system.chip0.hbm.read_bytes"), c1 = ep.stats.value("system.chip1.hbm.read_bytes");
  const double expert_bytes = 3 * 1024 * 2048 * 2.0, layers = 4;
  // Each chip reads its half of the rest; the experts split 0/2, 1/1 or 2/0 in each layer.
  EXPECT_NEAR(c0 + c1, tp.stats.value("system.chip0.hbm.read_bytes") + tp.stats.value("system.chip1.hbm.read_bytes"),
              0.02 * (c0 + c1));
  EXPECT_NEAR(std::fmod(std::fabs(c0 - c1) + 0.5 * expert_bytes, expert_bytes), 0.5 * expert_bytes, 0.02 * expert_bytes);
  EXPECT_LE(std::fabs(c0 - c1), layers * 2 * expert_bytes * 1.02);
}

// Two pipeline stages of one chip each, a decode step of batch 8 in 2 microbatches of 4: each
// stage holds 3 of the 6 layers; the hidden state of each microbatch (4 tokens x 1024 x bf16)
// crosses the link once, in latency + bytes / bandwidth; the step is the steady state's period,
// max(one microbatch's trip, 2 x the slower stage) (mapping.hpp), and the rows add up to it.
TEST(Pipeline, TwoStagesComposeTheirTimesAndSendTheHiddenState) {
  const std::string model = small_llama();
  const Report one = run(arch::load_arch("maia100-class"), decode(model, 8, 256));
  const Report two = run(arch::load_arch("maia100-class", {"system.chips=2", "system.topology=fully_connected",
                                                           "system.link.count=1", "system.parallelism.pp=2"}),
                         decode(model, 8, 256));
  EXPECT_EQ(two.tp, 1);
  EXPECT_EQ(two.pp, 2);
  EXPECT_EQ(two.microbatches, 2);
  ASSERT_EQ(two.stage_seconds.size(), 2u);
  ASSERT_EQ(two.transfer_seconds.size(), 1u);
  const double bytes = 4.0 * 1024 * 2;
  // maia100: 400 Gb/s links, 2 us; plus reading the first piece from HBM and writing the last.
  EXPECT_GE(two.transfer_seconds[0], 2e-6 + bytes / 50e9);
  EXPECT_LT(two.transfer_seconds[0], 1.05 * (2e-6 + bytes / 50e9));
  const double s0 = two.stage_seconds[0], s1 = two.stage_seconds[1];
  EXPECT_DOUBLE_EQ(two.seconds, std::max(s0 + s1 + two.transfer_seconds[0], 2 * std::max(s0, s1)));
  EXPECT_DOUBLE_EQ(two.stats.value("system.link.c0-c1.bytes"), 2 * bytes);
  EXPECT_DOUBLE_EQ(two.stats.value("system.link.c1-c0.bytes"), 0);
  EXPECT_GT(two.stats.value("system.chip1.hbm.read_bytes"), 0);
  double rows = 0;
  for (const Report::Row& r : two.ops) rows += r.share.seconds;
  EXPECT_NEAR(rows, two.seconds, 1e-9 * two.seconds);
  EXPECT_EQ(two.layer_rows.size(), 6u);
  EXPECT_NEAR(two.flops / one.flops, 1.0, 0.02);
  EXPECT_LT(two.utilization.at("capacity"), 0.6 * one.utilization.at("capacity"));
  EXPECT_GT(two.energy.joules.at("link"), 0);
}

// A transfer is simulated on the two stages' chips alone: on a full mesh of 4 chips with 2 links
// per pair, each boundary's hidden state crosses at 2 x 400 Gb/s, as on the whole mesh.
TEST(Pipeline, TransfersKeepTheLinksOfEachPairOfChips) {
  const Report r = run(arch::load_arch("maia100-class", {"system.chips=4", "system.topology=fully_connected",
                                                         "system.link.count=6", "system.parallelism.pp=4"}),
                       decode(small_llama(), 4, 256));
  ASSERT_EQ(r.transfer_seconds.size(), 3u);
  const double bytes = 1.0 * 1024 * 2, formula = 2e-6 + bytes / 100e9;  // microbatches of 1 sequence
  for (double t : r.transfer_seconds) {
    EXPECT_GE(t, formula);
    EXPECT_LT(t, 1.05 * formula);
  }
  EXPECT_DOUBLE_EQ(r.stats.value("system.link.c2-c3.bytes"), 4 * bytes);
}

// With the mapping left open, the search simulates the candidates it keeps and reports the fastest.
TEST(Pipeline, TheSearchKeepsTheFastestMapping) {
  const Report r = run(arch::load_arch("maia100-class", {"system.chips=2", "system.topology=fully_connected",
                                                         "system.link.count=1"}),
                       decode(small_llama(), 8, 256));
  ASSERT_FALSE(r.mapping_search.empty());
  for (const Report::Tried& t : r.mapping_search) {
    EXPECT_EQ(t.tp * t.pp, 2);
    EXPECT_LE(r.seconds, t.seconds);
  }
}

// The power limit, derived by hand: a step whose average power would exceed the limit L runs
// its work (dynamic energy D, unchanged) at the clock that holds L with the static power S, so
// it takes D / (L - S); a limit above its power changes nothing. (The power controller's window
// set to 0: every operator is held to the limit from its start.)
TEST(PowerLimit, AStepAboveTheLimitTakesItsDynamicEnergyOverTheHeadroom) {
  const RunSpec gemm = op("gemm", {4096, 4096, 4096});
  const Report free = run(arch::load_arch("h100-sxm", {"power.limit=2000W"}), gemm);
  EXPECT_EQ(free.throttled_seconds, 0.0);
  const double S = arch::load_arch("h100-sxm").power.static_power;
  const double dynamic = free.energy.total() - S * free.seconds;
  ASSERT_GT(dynamic / free.seconds + S, 300.0);
  const Report capped = run(arch::load_arch("h100-sxm", {"power.limit=300W", "power.limit_window=0s"}), gemm);
  const double expected = dynamic / (300.0 - S);
  EXPECT_NEAR(capped.seconds, expected, 1e-9 * expected);
  EXPECT_NEAR(capped.throttled_seconds, expected - free.seconds, 1e-9 * expected);
  EXPECT_NEAR(capped.avg_power_w, 300.0, 1e-6);
  EXPECT_NEAR(capped.energy.total() - S * capped.seconds, dynamic, 1e-9 * dynamic);
  // The active power is dynamic: the same work at a lower clock, the same energy.
  const double active = arch::load_arch("h100-sxm").power.active_power;
  ASSERT_GT(active, 0);
  EXPECT_NEAR(capped.energy.joules.at("active"), active * free.seconds, 1e-9 * dynamic);
  EXPECT_EQ(capped.bound, "power");
  EXPECT_LT(capped.peak_power_w, free.peak_power_w);
  double rows = 0;
  for (const Report::Row& r : capped.ops) rows += r.share.seconds;
  EXPECT_NEAR(rows, capped.seconds, 1e-9 * capped.seconds);  // a power_throttle row completes the step
  try {
    arch::load_arch("h100-sxm", {"power.limit=50W"});
    ADD_FAILURE() << "a limit below the static power was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("power.limit: a power limit (50W) must be above the static power"),
              std::string::npos)
        << e.what();
  }
}

// The controller's window W, by hand: from idle, a run of time T and dynamic power P keeps its
// clock until the power averaged over W reaches the limit, for tau = W (L - S) / P; the rest,
// at the clock c = (L - S) / P, takes (T - tau) / c. A run whose tau covers it keeps its clock.
TEST(PowerLimit, FromIdleTheClockHoldsUntilTheWindowsAverageReachesTheLimit) {
  const RunSpec gemm = op("gemm", {4096, 4096, 4096});
  const Report free = run(arch::load_arch("h100-sxm", {"power.limit=2000W"}), gemm);
  const double S = arch::load_arch("h100-sxm").power.static_power, L = 300.0, T = free.seconds;
  const double P = (free.energy.total() - S * T) / T;
  const double window = 0.5 * T * P / (L - S);  // tau = T / 2
  const Report capped = run(arch::load_arch("h100-sxm", {"power.limit=300W", fmt::format("power.limit_window={}s", window)}),
                            gemm);
  const double tau = T / 2, c = (L - S) / P, expected = tau + (T - tau) / c;
  EXPECT_NEAR(capped.seconds, expected, 1e-9 * expected);
  EXPECT_EQ(capped.bound, "power");
  EXPECT_NEAR(capped.peak_power_w, free.peak_power_w, 1e-9 * free.peak_power_w);  // its start at full clock
  const Report within = run(arch::load_arch("h100-sxm", {"power.limit=300W", fmt::format("power.limit_window={}s", 2 * window)}),
                            gemm);
  EXPECT_EQ(within.throttled_seconds, 0.0);
  EXPECT_DOUBLE_EQ(within.seconds, T);
  ASSERT_FALSE(within.warnings.empty());
  EXPECT_NE(within.warnings.back().find("starting from idle"), std::string::npos) << within.warnings.back();
}

TEST(PowerLimit, EachOperatorAboveTheLimitRunsAtTheClockItCanPayFor) {
  // A prefill's operators draw differently: under a limit of 450 W its GEMMs slow down to it and
  // its element-wise ops do not. The step takes, over the operators of the same run without a
  // limit, the sum of max(0, dynamic energy / (limit - static) - time), the dynamic energy being
  // the events' and the active power's over the operator's time.
  RunSpec prefill;
  prefill.model = small_llama(), prefill.phase = "prefill", prefill.batch = 4, prefill.seq = 512;
  const Report free = run(arch::load_arch("h100-sxm", {"power.limit=2000W"}), prefill);
  const arch::Arch capped_arch = arch::load_arch("h100-sxm", {"power.limit=450W", "power.limit_window=0s"});
  const sim::EnergyPrices prices = sim::EnergyPrices::from(capped_arch);
  const double S = prices.static_power, limit = 450.0;
  double expected = 0;
  int throttled = 0, not_throttled = 0;
  for (const Report::Row& r : free.ops) {
    const double dynamic = sim::price(prices, r.share.activity, r.share.seconds, 1).dynamic();
    if (r.share.seconds <= 0) continue;
    if (dynamic / r.share.seconds + S > limit) {
      expected += dynamic / (limit - S) - r.share.seconds;
      ++throttled;
    } else {
      ++not_throttled;
    }
  }
  ASSERT_GT(throttled, 0);
  ASSERT_GT(not_throttled, 0);
  const Report capped = run(capped_arch, prefill);
  EXPECT_NEAR(capped.throttled_seconds, expected, 1e-9 * expected);
  EXPECT_NEAR(capped.seconds, free.seconds + expected, 1e-9 * capped.seconds);
  EXPECT_NEAR(capped.energy.total() - S * capped.seconds, free.energy.total() - S * free.seconds,
              1e-9 * free.energy.total());
}

TEST(GpuCalibration, MeasuredValuesMatchTheCalibrationFile) {
  const std::filesystem::path file =
      std::filesystem::path(TESSERA_SOURCE_DIR) / "../shared/calibration/gpu-peaks.json";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << file << " is not on this machine";
  const nlohmann::json j = nlohmann::json::parse(std::ifstream(file));
  for (const Measured& m : kMeasured) {
    EXPECT_DOUBLE_EQ(j[m.key]["bf16_gemm_tflops"].get<double>(), m.gemm_tflops);
    EXPECT_DOUBLE_EQ(j[m.key]["copy_tb_s_read_plus_write"].get<double>(), m.copy_tb_s);
    EXPECT_DOUBLE_EQ(j[m.key]["idle_w"].get<double>(), m.idle_w);
    EXPECT_DOUBLE_EQ(j[m.key]["gemm_power_w"].get<double>(), m.gemm_w);
  }
}

TEST(GpuCalibration, GemmThroughputAndPowerMatchTheMeasurements) {
  for (const Measured& m : kMeasured) {
    // Timed one call at a time: 1.5 ms, within the power limit's window.
    const Report r = run(arch::load_arch(m.preset), op("gemm", {8192, 8192, 8192}));
    EXPECT_NEAR(r.flops / r.seconds / 1e12 / m.gemm_tflops, 1.0, 0.05) << m.preset;
    // Back to back for 4 s: as four calls' work in one, 6 ms of it, held to the limit after its
    // first 2 ms window (so a little above it on average).
    const Report b2b = run(arch::load_arch(m.preset), op("gemm", {4 * 8192, 8192, 8192}));
    EXPECT_GT(b2b.throttled_seconds, 0.0) << m.preset;
    EXPECT_NEAR(b2b.avg_power_w / m.gemm_w, 1.0, 0.10) << m.preset;
  }
}

TEST(GpuCalibration, CopyBandwidthAndIdlePowerMatchTheMeasurements) {
  for (const Measured& m : kMeasured) {
    const arch::Arch a = arch::load_arch(m.preset);
    const Report r = run(a, op("copy", {int64_t(1) << 30}));
    EXPECT_NEAR(r.hbm_bytes / r.seconds / 1e12 / m.copy_tb_s, 1.0, 0.05) << m.preset;
    // With nothing to do, a chip draws its static power.
    EXPECT_NEAR(a.power.static_power / m.idle_w, 1.0, 0.10) << m.preset;
  }
}

TEST(RunErrors, BadRequestsAreClearErrors) {
  const arch::Arch a = arch::load_arch("maia100-class");
  auto message = [&](const RunSpec& s, RunOptions o = {}) {
    try {
      run(a, s, o);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(op("gemm", {1, 2})).find("--shape M,K,N"), std::string::npos);
  EXPECT_NE(message(op("gemm", {64, 0, 64})).find("positive"), std::string::npos);
  RunSpec attention = op("attention", {6, 4, 64});
  attention.context = 16;
  EXPECT_NE(message(attention).find("multiple of KV_HEADS"), std::string::npos);
  attention.shape = {8, 4, 64};
  attention.context = -1;
  EXPECT_NE(message(attention).find("context"), std::string::npos);
  EXPECT_NE(message(op("conv", {1})).find("unknown operator 'conv'"), std::string::npos);
  EXPECT_NE(message(RunSpec{}).find("nothing to run"), std::string::npos);
  try {
    run(arch::load_arch("maia100-class", {"system.chips=2", "system.link.count=1"}), op("gemm", {64, 64, 64}));
    ADD_FAILURE() << "an operator ran on two chips";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("an operator runs on one"), std::string::npos) << e.what();
  }
  RunOptions cloud;
  cloud.pricing = "cloud";
  EXPECT_NE(message(decode(small_llama(), 1, 16), cloud).find("cloud_price"), std::string::npos);
  RunOptions bogus;
  bogus.pricing = "free";
  EXPECT_NE(message(decode(small_llama(), 1, 16), bogus).find("pricing"), std::string::npos);
  EXPECT_NE(message(decode("no-such-model", 1, 16)).find("no-such-model"), std::string::npos);
  RunOptions launch;
  launch.launch = "lazy";
  EXPECT_NE(message(decode(small_llama(), 1, 16), launch).find("launch must be graph or eager, got 'lazy'"),
            std::string::npos);
  RunSpec framework = decode(small_llama(), 1, 16);
  framework.framework = "jax";
  EXPECT_NE(message(framework).find("framework must be fused or pytorch, got 'jax'"), std::string::npos);
  // MoE options: a negative or NaN capacity factor or routing skew is named, not taken as dropless
  // or as some other distribution.
  for (const double bad : {-1.0, std::nan("")}) {
    RunSpec moe = decode(small_mixtral(), 1, 16);
    moe.capacity_factor = bad;
    EXPECT_NE(message(moe).find("capacity_factor must be a finite number >= 0"), std::string::npos) << bad;
    RunOptions skew;
    skew.routing_skew = bad;
    EXPECT_NE(message(decode(small_mixtral(), 1, 16), skew).find("routing_skew must be a finite number >= 0"),
              std::string::npos)
        << bad;
  }
}

}  // namespace
}  // namespace tessera::api
