// Fleets, plans, prefix caching and swap preemption against answers worked out by hand, with
// iteration costs linear in the tokens (every token costs the same, so a replica's capacity is
// its tokens per second and the arithmetic stays short).
#include "sim/serving/fleet.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace tessera::sim::serving {
namespace {

using workloads::Request;

// `per_token` seconds a token of the batch; the batches are kept for inspection.
struct LinearCost : IterationCost {
  explicit LinearCost(double s) : per_token(s) {}
  double per_token;
  std::vector<std::vector<SequenceWork>> batches;
  IterationCostResult cost(const std::vector<SequenceWork>& batch) override {
    batches.push_back(batch);
    int64_t tokens = 0;
    for (const SequenceWork& w : batch) tokens += w.tokens;
    return {per_token * double(tokens), double(tokens)};
  }
};

SchedulerConfig roomy() {
  SchedulerConfig c;
  c.block_tokens = 16, c.blocks = 1000;
  return c;
}

// 200 requests, one every 44 ms, each a 100-token prompt and 10 output tokens.
std::vector<Request> steady() {
  std::vector<Request> r;
  for (int64_t i = 0; i < 200; ++i) r.push_back({i, 0.044 * double(i), 100, 10});
  return r;
}

// $/hour of a fleet: `price` a replica.
FleetSpec spec_of(LinearCost& cost, double price) {
  FleetSpec s;
  s.config = roomy(), s.cost = &cost;
  s.usd_per_hour = [price](const Pools& p, const ServeMetrics&) { return price * double(p.replicas()); };
  return s;
}

// System A: 1 ms a token, $2 a replica-hour. A request is 110 tokens: its prompt in one 100 ms
// iteration (its first token), then 9 decodes of 1 ms, 109 ms in all. Dealt in turn to n
// replicas, each gets one every n x 44 ms: 3 replicas (132 ms) finish each before the next
// comes (TTFT 100 ms, TPOT 1 ms); 2 (88 ms) fall behind, and a new prompt joins every decode,
// making its steps 101 ms. Load / capacity = (1/0.044) / (1/0.109) = 2.48: 3 replicas.
// System B: 2 ms a token, $1 a replica-hour: 218 ms a request, 5 replicas (220 ms) keep up, so
// on throughput alone B costs $5/h to A's $6/h; but its prompt alone takes 200 ms.
TEST(Plan, ReplicasAreLoadOverCapacityAndACheaperChipMissingTtftLoses) {
  LinearCost a(1e-3), b(2e-3);
  const std::vector<Request> traffic = steady();

  const Slo loose{1.0, 10e-3};  // TTFT 1 s: B's 200 ms prompts meet it
  const FleetPlan pa = plan_fleet(traffic, spec_of(a, 2.0), loose, 0.99, false, 64);
  const FleetPlan pb = plan_fleet(traffic, spec_of(b, 1.0), loose, 0.99, false, 64);
  ASSERT_TRUE(pa.feasible);
  ASSERT_TRUE(pb.feasible);
  EXPECT_EQ(pa.pools.colocated, 3);
  EXPECT_EQ(pb.pools.colocated, 5);
  EXPECT_DOUBLE_EQ(pa.usd_per_hour, 6.0);
  EXPECT_DOUBLE_EQ(pb.usd_per_hour, 5.0);
  EXPECT_NEAR(pa.metrics.ttft.p99, 0.100, 1e-12);
  EXPECT_NEAR(pa.metrics.tpot.p99, 1e-3, 1e-12);
  EXPECT_EQ(cheapest({pa, pb}), 1);

  const Slo tight{0.150, 10e-3};  // B's prompts take 200 ms on any number of replicas
  const FleetPlan ta = plan_fleet(traffic, spec_of(a, 2.0), tight, 0.99, false, 64);
  const FleetPlan tb = plan_fleet(traffic, spec_of(b, 1.0), tight, 0.99, false, 64);
  EXPECT_TRUE(ta.feasible);
  EXPECT_EQ(ta.pools.colocated, 3);
  EXPECT_FALSE(tb.feasible);
  EXPECT_EQ(tb.metrics.ttft_attainment, 0.0);
  // 1, 2, 4, 8 replicas cut the queueing; 8 to 16 left every TTFT at 200 ms: more do not help.
  EXPECT_EQ(tb.pools.colocated, 16);
  EXPECT_EQ(tb.replays, 5);
  EXPECT_EQ(cheapest({ta, tb}), 0);
  FleetPlan unpriced = pb;
  unpriced.usd_per_hour = std::nan("");  // cloud pricing of a chip without a cloud price
  EXPECT_EQ(cheapest({unpriced, pa}), 1);
}

// The search itself: fewest n meeting a monotone predicate, with few evaluations.
TEST(Plan, FewestDoublesThenBisects) {
  std::vector<int64_t> tried;
  auto at_least = [&](int64_t k) {
    return [&tried, k](int64_t n) {
      tried.push_back(n);
      return n >= k;
    };
  };
  EXPECT_EQ(fewest(at_least(1), 64), 1);
  EXPECT_EQ(fewest(at_least(37), 64), 37);
  tried.clear();
  EXPECT_EQ(fewest(at_least(5), 64), 5);
  EXPECT_EQ(tried, (std::vector<int64_t>{1, 2, 4, 8, 6, 5}));
  EXPECT_EQ(fewest(at_least(65), 64), 0);
  EXPECT_EQ(fewest(at_least(65), 64, [](int64_t, int64_t) { return false; }), 0);
}

// Disaggregated, one prefill and one decode replica, 1 ms a token, a transfer of 5 ms plus
// 10 us a token. A (t = 0, prompt 100, output 10) and B (t = 0, prompt 50, output 3) are
// prefilled in one iteration of 150 tokens, [0, 150 ms): both first tokens at 150 ms. Their
// caches leave the prefill replica one after the other: A [150, 156), B [156, 161.5).
// Decode replica: A alone [156, 162) (tokens 2-7; B arrives during the last step), A and B
// [162, 164) and [164, 166) (A's 8 and 9, B's 2 and 3: B done at 166), A's 10th [166, 167).
TEST(Disaggregation, KvTransferTimesAddUpByHand) {
  LinearCost cost(1e-3);
  const KvTransfer transfer = [](int64_t tokens) { return IterationCostResult{5e-3 + 1e-5 * double(tokens), 0.5}; };
  const FleetResult f = serve_fleet({{0, 0.0, 100, 10}, {1, 0.0, 50, 3}}, roomy(), Pools{0, 1, 1}, cost, transfer);
  const RequestResult &a = f.all.requests[0], &b = f.all.requests[1];
  EXPECT_DOUBLE_EQ(a.first_token, 0.150);
  EXPECT_DOUBLE_EQ(b.first_token, 0.150);
  EXPECT_NEAR(f.transfer_seconds, 0.006 + 0.0055, 1e-12);
  EXPECT_DOUBLE_EQ(f.transfer_joules, 1.0);
  EXPECT_NEAR(b.finished, 0.166, 1e-12);
  EXPECT_NEAR(a.finished, 0.167, 1e-12);
  EXPECT_EQ(f.replica_of[0], 1);  // the decode replica
  EXPECT_DOUBLE_EQ(f.all.joules, 150.0 + 9.0 + 2.0 + 1.0);  // tokens (1 J each) and transfers
}

// Prefix caching: requests far apart (no overlap), prompts of 100 tokens whose first 64 are
// group 0's prefix, blocks of 16 tokens. The first computes all 100 and caches 4 blocks; each
// later one finds them and computes 36 tokens after a context of 64.
TEST(PrefixCaching, SavedPrefillTokensAreTheCachedFullBlocks) {
  LinearCost cost(1e-3);
  SchedulerConfig c = roomy();
  c.prefix_caching = true;
  std::vector<Request> r;
  for (int64_t i = 0; i < 5; ++i) r.push_back({i, double(i), 100, 2, 0, 64});
  const ServeResult s = serve(r, c, cost);
  EXPECT_EQ(s.requests[0].cached_tokens, 0);
  for (size_t i = 1; i < 5; ++i) EXPECT_EQ(s.requests[i].cached_tokens, 64);
  int64_t prefill = 0;
  for (const IterationRecord& it : s.iterations) prefill += it.prefill_tokens;
  EXPECT_EQ(prefill, 100 + 4 * 36);
  EXPECT_EQ(cost.batches[2][0].context, 64);  // the second request's prompt
  EXPECT_EQ(cost.batches[2][0].tokens, 36);

  // A prefix shorter than a block, or a prompt that is all prefix: at most full blocks, never
  // the prompt's last token.
  LinearCost c2(1e-3);
  const ServeResult whole = serve({{0, 0.0, 64, 2, 3, 64}, {1, 1.0, 64, 2, 3, 64}}, c, c2);
  EXPECT_EQ(whole.requests[1].cached_tokens, 48);

  // Without caching nothing is saved.
  LinearCost c3(1e-3);
  c.prefix_caching = false;
  EXPECT_EQ(serve(r, c, c3).requests[4].cached_tokens, 0);
}

// A cached prefix nobody uses is evicted when an admission needs its blocks.
TEST(PrefixCaching, UnusedPrefixIsEvictedForRoom) {
  LinearCost cost(1e-3);
  SchedulerConfig c = roomy();
  c.prefix_caching = true, c.blocks = 10;  // 160 tokens
  // A caches 4 blocks; B (9 blocks, no prefix) needs 3 of them; C finds nothing.
  const ServeResult s = serve({{0, 0.0, 100, 2, 0, 64}, {1, 1.0, 140, 2}, {2, 2.0, 100, 2, 0, 64}}, c, cost);
  EXPECT_EQ(s.requests[2].cached_tokens, 0);
  // With room for both, C finds A's prefix.
  LinearCost c2(1e-3);
  c.blocks = 20;
  EXPECT_EQ(serve({{0, 0.0, 100, 2, 0, 64}, {1, 1.0, 140, 2}, {2, 2.0, 100, 2, 0, 64}}, c, c2).requests[2].cached_tokens, 64);
}

// Swap preemption: 8 blocks of 16 tokens; A and B (prompts 48, outputs 40) both start; at 64
// tokens each they hold all 8 blocks, and A's next token needs a ninth: B (the later) is
// swapped out with its 4 blocks (1 ms + 4 x 1 ms over the host link), and swapped back in when
// A is done, its KV cache intact: no prompt is computed twice.
TEST(Swap, PreemptedCacheGoesToHostAndBack) {
  SchedulerConfig c = roomy();
  c.blocks = 8;
  c.preemption = SchedulerConfig::Preemption::Swap;
  c.swap = {1000.0, 1e6, 1e-3, 1e-6, 100};  // a block: 1000 B, 1 ms at 1 MB/s
  LinearCost cost(1e-3);
  const std::vector<Request> r{{0, 0.0, 48, 40}, {1, 0.0, 48, 40}};
  const ServeResult s = serve(r, c, cost);
  int64_t prefill = 0, out = 0, in = 0;
  for (size_t i = 0; i < s.iterations.size(); ++i) {
    const IterationRecord& it = s.iterations[i];
    prefill += it.prefill_tokens, out += it.swapped_out, in += it.swapped_in;
    const double compute = 1e-3 * double(it.prefill_tokens + it.decode_tokens);
    const double copies = (it.swapped_out ? 1e-3 + 1e-3 * double(it.swapped_out) : 0.0) +
                          (it.swapped_in ? 1e-3 + 1e-3 * double(it.swapped_in) : 0.0);
    EXPECT_NEAR(it.seconds, compute + copies, 1e-12) << "iteration " << i;
  }
  EXPECT_EQ(prefill, 96);
  EXPECT_EQ(out, 4);
  EXPECT_EQ(in, 4);
  EXPECT_EQ(s.requests[1].swaps, 1);
  EXPECT_EQ(s.requests[1].preemptions, 1);
  EXPECT_NEAR(s.joules, 96.0 + 78.0 + 8000.0 * 1e-6, 1e-9);  // tokens and 8 kB over the link

  // By recompute instead, B's prompt and output so far are prefilled again.
  LinearCost c2(1e-3);
  c.preemption = SchedulerConfig::Preemption::Recompute;
  const ServeResult re = serve(r, c, c2);
  int64_t again = 0;
  for (const IterationRecord& it : re.iterations) again += it.prefill_tokens;
  EXPECT_GT(again, 96);
}

}  // namespace
}  // namespace tessera::sim::serving
