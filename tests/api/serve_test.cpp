// The serving facade: ragged steps through run(), the KV-cache blocks the HBM leaves, replicas,
// the report and its timeline, and bad traffic. A small Llama keeps the simulations quick (the
// grid against simulating iterations whole: serve_slow_test.cpp).
#include "tools/api/serve.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>  // getpid: each test process writes its own files

#include <filesystem>
#include <fstream>
#include <sstream>

#include "arch/derived.hpp"
#include "arch/loader.hpp"
#include "tools/api/api.hpp"

namespace tessera::api {
namespace {

std::string temp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / fmt::format("tessera_serve_{}_{}", getpid(), name)).string();
}

// 2 layers, hidden 256, 4 heads over 2 KV heads of 64: 2 x 2 x 2 x 64 x 2 = 1,024 KV bytes a token.
std::string small_llama() {
  const std::string path = temp("llama.json");
  std::ofstream(path) << R"({"model_type": "llama", "hidden_size": 256, "intermediate_size": 704,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 4096})";
  return path;
}

arch::Arch replica(const char* preset = "tpu-v4-class") {
  arch::Arch a = arch::load_arch(preset, {});
  a.system.parallelism.tp = a.system.parallelism.pp = a.system.parallelism.ep = 1;
  return a;
}

// A mixed step of equal sequences is the uniform step: the same program, the same time.
TEST(MixedStep, OfEqualSequencesIsTheUniformDecode) {
  RunSpec mixed;
  mixed.model = small_llama(), mixed.phase = "mixed";
  mixed.sequences.assign(4, {100, 1});
  RunSpec decode = mixed;
  decode.phase = "decode", decode.batch = 4, decode.context = 100, decode.sequences.clear();
  const Report a = run(replica(), mixed, {}), b = run(replica(), decode, {});
  EXPECT_DOUBLE_EQ(a.seconds, b.seconds);
  EXPECT_DOUBLE_EQ(a.tokens, 4.0);
  mixed.sequences = {{0, 300}, {20, 1}, {7, 1}};
  EXPECT_EQ(mixed.describe(), fmt::format("{} mixed 1 prefill (300 tokens) + 2 decode", mixed.model));
  EXPECT_DOUBLE_EQ(run(replica(), mixed, {}).tokens, 302.0);
  mixed.phase = "decode";
  EXPECT_THAT([&] { run(replica(), mixed, {}); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("for phase mixed only")));
  mixed.phase = "mixed", mixed.sequences = {{0, 0}};
  EXPECT_THAT([&] { run(replica(), mixed, {}); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("sequence 0: 0 tokens after 0")));
}

// The blocks: the HBM left by the weights (2 x 8192 x 256 embedding and head, 2 layers of
// 4 x 256^2 + 3 x 256 x 704, bf16: 11.3 MB) and the largest step's activations (a few MB) over
// 16 tokens x 1,024 bytes.
TEST(ReplicaCost, KvBlocksFillTheHbmTheModelLeaves) {
  ServeSpec spec;
  spec.model = small_llama();
  const arch::Arch a = replica();
  ReplicaCost cost(a, spec, {});
  EXPECT_DOUBLE_EQ(cost.kv_bytes_per_token(), 1024.0);
  const double capacity = arch::derive(a).hbm_capacity, weights = 2.0 * (2 * 8192 * 256 + 2 * (4 * 256 * 256 + 3 * 256 * 704));
  const int64_t blocks = cost.kv_blocks(8192, 16);
  EXPECT_LE(double(blocks) * 16 * 1024, capacity - weights);
  EXPECT_GE(double(blocks) * 16 * 1024, capacity - weights - 64e6);
}

// Two replicas take the requests in turn and each idles at its static power between iterations.
TEST(Serve, ReplicasTakeRequestsInTurn) {
  Traffic t;
  t.synthetic = "rate=20,prompt=64,output=uniform:2:6,count=8,seed=4";
  const std::vector<workloads::Request> requests = load_traffic(t);
  ServeSpec spec;
  spec.model = small_llama(), spec.replicas = 2, spec.slo = "ttft=1s";
  const arch::Arch a = replica();
  const ServeReport r = serve(a, requests, spec, {});
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_EQ(r.results[0].requests.size(), 4u);
  EXPECT_EQ(r.replica_of, (std::vector<int64_t>{0, 1, 0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(r.metrics.requests, 8);
  EXPECT_DOUBLE_EQ(r.metrics.slo_attainment, 1.0);
  double busy = 0, iteration_joules = 0;
  for (const auto& x : r.results) {
    for (const auto& it : x.iterations) busy += it.seconds, iteration_joules += it.joules;
  }
  const double idle_watts = sim::EnergyPrices::from(a).static_power;
  EXPECT_NEAR(r.metrics.joules, iteration_joules + idle_watts * (2 * r.metrics.seconds - busy), 1e-9 * r.metrics.joules);
  const nlohmann::json j = r.to_json();
  ASSERT_EQ(j["request_results"].size(), 8u);
  EXPECT_EQ(j["request_results"][3]["replica"], 1);
  EXPECT_EQ(j["request_results"][3]["id"], requests[3].id);
  EXPECT_TRUE(j["slo"]["tpot"].is_null());
  // The timeline: an iteration slice and its counters for every iteration of each replica.
  std::ostringstream trace;
  r.write_trace(trace);
  const nlohmann::json events = nlohmann::json::parse(trace.str())["traceEvents"];
  int64_t slices = 0;
  for (const auto& e : events) slices += e["ph"] == "X";
  EXPECT_EQ(slices, int64_t(r.results[0].iterations.size() + r.results[1].iterations.size()));
}

// A request beyond the model's 4,096 positions is rejected: counted, and without times.
TEST(Serve, RequestsBeyondTheModelArePassedOverAndReported) {
  ServeSpec spec;
  spec.model = small_llama();
  const ServeReport r = serve(replica(), {{0, 0.0, 50, 5}, {1, 0.1, 4000, 200}, {2, 0.2, 30, 3}}, spec, {});
  EXPECT_EQ(r.metrics.rejected, 1);
  EXPECT_EQ(r.scheduler.max_context, 4096);
  const nlohmann::json j = r.to_json();
  EXPECT_TRUE(j["request_results"][1]["rejected"].get<bool>());
  EXPECT_TRUE(j["request_results"][1]["ttft"].is_null());
  EXPECT_GT(j["request_results"][2]["ttft"].get<double>(), 0.0);
  EXPECT_EQ(j["rejected"], 1);
}

TEST(Serve, BadTrafficIsAClearError) {
  auto fails = [](Traffic t) {
    try {
      load_traffic(t);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(fails({}), ::testing::HasSubstr("give a trace or synthetic traffic"));
  EXPECT_THAT(fails({"", "rate=1,prompt=5,output=5,count=3", 0, 1, -2, ""}), ::testing::HasSubstr("rate scale must be a number above 0"));
  EXPECT_THAT(fails({"", "rate=1,prompt=5,output=5,count=3", -1, 1, 1, ""}), ::testing::HasSubstr("a window from -1 s"));
  EXPECT_THAT(fails({"", "rate=1,prompt=5,output=5,count=3", 100, 1, 1, ""}), ::testing::HasSubstr("no requests arrive"));
  const std::string bad = temp("bad.csv");
  std::ofstream(bad) << "TIMESTAMP,ContextTokens,GeneratedTokens\n1,5,5\n0.5,5,5\n";
  EXPECT_THAT(fails({bad, "", 0, 1, 1, ""}), ::testing::HasSubstr(bad + ":3"));
  ServeSpec spec;
  spec.model = small_llama(), spec.replicas = 0;
  EXPECT_THAT([&] { serve(replica(), {{0, 0, 5, 5}}, spec, {}); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("replicas must be at least 1")));
}

}  // namespace
}  // namespace tessera::api

namespace tessera::api {
namespace {

// KV caches between replicas, by hand from the presets' links (1 MB from each chip):
//   maia100-x8, tp 8: the next replica is in other servers: up and down the scale-out
//     network (3 x 400 Gb/s = 150 GB/s a chip, 4 us through the switch, 10 pJ/bit a link).
//   maia100-x8, tp 2: the next replica is in the same server: the 3-link bundle to the peer
//     chip (150 GB/s, 2 us, 5 pJ/bit).
//   hgx-h100x8, tp 4: through the NVSwitch: 18 x 25 GB/s = 450 GB/s, 1 us, two links of 5 pJ/bit.
TEST(KvRoute, TimeAndEnergyOverTheRouteByHand) {
  const double mb = 1e6;
  const auto maia = arch::load_arch("maia100-x8", {}), h100 = arch::load_arch("hgx-h100x8", {});
  const auto far = kv_route(maia, 8).cost(mb);
  EXPECT_NEAR(far.seconds, 4e-6 + mb / 150e9, 1e-12);
  EXPECT_NEAR(far.joules, 8 * mb * 8 * 20e-12, 1e-12);
  const auto near = kv_route(maia, 2).cost(mb);
  EXPECT_NEAR(near.seconds, 2e-6 + mb / 150e9, 1e-12);
  EXPECT_NEAR(near.joules, 2 * mb * 8 * 5e-12, 1e-12);
  const auto nvlink = kv_route(h100, 4).cost(mb);
  EXPECT_NEAR(nvlink.seconds, 1e-6 + mb / 450e9, 1e-12);
  EXPECT_NEAR(nvlink.joules, 4 * mb * 8 * 10e-12, 1e-12);
}

// Disaggregated pools: every request with more than one output token moves its prompt's KV
// cache (1,024 bytes a token of the small Llama on one chip) once; the first token comes from
// the prefill pool, the rest from the decode pool.
TEST(Serve, DisaggregatedPoolsMoveEachPromptsKvCacheOnce) {
  Traffic t;
  t.synthetic = "rate=20,prompt=uniform:32:256,output=uniform:1:6,count=12,seed=9";
  const std::vector<workloads::Request> requests = load_traffic(t);
  ServeSpec spec;
  spec.model = small_llama(), spec.prefill_replicas = 1, spec.decode_replicas = 2;
  spec.scheduler.max_batched_tokens = 512, spec.scheduler.max_running = 16, spec.grid_per_octave = 1;  // a quick grid
  const arch::Arch a = arch::load_arch("maia100-class", {});
  const ServeReport r = serve(a, requests, spec, {});
  EXPECT_EQ(r.replicas, 3);
  ASSERT_EQ(r.results.size(), 3u);
  // One chip to the next through maia100-class's switch: 2 us over two hops of 12 x 400 Gb/s.
  double expected = 0;
  for (const workloads::Request& q : requests) {
    if (q.output_tokens > 1) expected += 2e-6 + 1024.0 * double(q.prompt_tokens) / 600e9;
  }
  EXPECT_NEAR(r.transfer_seconds, expected, 1e-12);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(r.replica_of[i] >= 1, requests[i].output_tokens > 1) << i;  // decode replicas are 1 and 2
    EXPECT_GE(r.requests[i].finished, r.requests[i].first_token);
  }
  EXPECT_EQ(r.to_json()["pools"]["decode"], 2);
  spec.decode_replicas = 0;
  EXPECT_THAT([&] { serve(a, requests, spec, {}); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("a prefill and a decode replica at least")));
}

// Swap preemption needs the host link; prefix sharing saves prompt tokens in the report.
TEST(Serve, SwapNeedsAHostLinkAndSharedPrefixesAreReported) {
  Traffic t;
  t.synthetic = "rate=5,prompt=256,output=4,count=6,arrivals=gamma,cv=0.01,seed=2";
  t.prefix_sharing = "fraction=0.5,groups=1";
  EXPECT_THAT([&] { Traffic u = t; u.prefix_sharing = "groups=2"; load_traffic(u); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("--prefix-sharing fraction: missing")));
  const std::vector<workloads::Request> requests = load_traffic(t);
  ServeSpec spec;
  spec.model = small_llama(), spec.scheduler.max_batched_tokens = 512, spec.scheduler.max_running = 16;
  const ServeReport r = serve(replica(), requests, spec, {});
  // 128 shared tokens = 8 blocks, found by every request after the first (0.2 s apart).
  EXPECT_EQ(r.metrics.cached_tokens, 5 * 128);
  EXPECT_EQ(r.to_json()["cached_prompt_tokens"], 5 * 128);
  spec.preemption = "swap";
  EXPECT_NO_THROW(serve(replica(), requests, spec, {}));
  arch::Arch no_host = replica();
  no_host.system.host = {};
  EXPECT_THAT([&] { serve(no_host, requests, spec, {}); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("needs system.host.bandwidth")));
  spec.preemption = "evict";
  EXPECT_THAT([&] { serve(replica(), requests, spec, {}); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("'evict' is not recompute or swap")));
}

// A plan on light traffic: one replica of each mapping meets the SLO; $ per user-month is the
// fleet's $/hour over the requests it serves an hour, times a user's requests.
TEST(Plan, PricesTheFewestReplicasAndPicksTheCheapest) {
  Traffic t;
  t.synthetic = "rate=4,prompt=128,output=8,count=16,seed=3";
  const std::vector<workloads::Request> requests = load_traffic(t);
  PlanSpec p;
  p.serve.model = small_llama(), p.serve.slo = "ttft=1s,tpot=200ms";
  p.serve.scheduler.max_batched_tokens = 512, p.serve.scheduler.max_running = 16;
  p.loads = {1, 2}, p.requests_per_user_month = 500, p.max_replicas = 4;
  const std::vector<arch::Arch> systems{arch::load_arch("maia100-class", {}), arch::load_arch("h100-sxm", {})};
  const PlanReport r = plan(systems, requests, p, {});
  ASSERT_EQ(r.rows.size(), 2u * 2u * 2u);  // systems x loads x modes (one chip: tp 1)
  for (const PlanRow& row : r.rows) {
    SCOPED_TRACE(row.system + (row.disaggregated ? " disaggregated" : " co-located"));
    EXPECT_TRUE(row.fleet.feasible);
    EXPECT_EQ(row.fleet.pools.replicas(), row.disaggregated ? 2 : 1);
    const sim::serving::ServeMetrics& m = row.fleet.metrics;
    EXPECT_NEAR(row.usd_per_user_month_owned, row.usd_per_hour_owned / (m.requests_per_s * 3600) * 500, 1e-9);
    // Owned: capex over the years of amortisation, and energy at the PUE and electricity price ($ per J).
    const arch::Arch& a = systems[row.system == "h100-sxm"];
    const double capex_hour = arch::derive(a).capex_per_chip / (a.cost.amortization_years * 8760.0);
    EXPECT_NEAR(row.usd_per_hour_owned,
                capex_hour * double(row.chips) + row.avg_power_w * 3600 * a.cost.pue * a.cost.electricity_price,
                1e-9 * row.usd_per_hour_owned);
    EXPECT_EQ(std::isnan(row.usd_per_hour_cloud), !a.cost.cloud_price.has_value());
  }
  ASSERT_EQ(r.best.size(), 2u);
  const PlanRow& best = r.rows[size_t(r.best[0])];
  for (const PlanRow& row : r.rows) {
    if (row.load == 1) {
      EXPECT_LE(best.usd_per_hour_owned, row.usd_per_hour_owned);
    }
  }
  EXPECT_EQ(r.to_json()["rows"].size(), 8u);
  p.serve.slo = "";
  EXPECT_THAT([&] { plan(systems, requests, p, {}); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("give an SLO to plan for")));
}

}  // namespace
}  // namespace tessera::api
