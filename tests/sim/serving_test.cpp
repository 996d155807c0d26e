// The serving scheduler against schedules worked out by hand, with iteration costs that make
// the arithmetic easy (a fixed time per iteration, or one linear in the tokens).
#include "sim/serving/scheduler.hpp"
#include "sim/serving/bucketed_cost.hpp"
#include "sim/serving/metrics.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tessera::sim::serving {
namespace {

using workloads::Request;

// Every iteration takes `seconds` and 2 J; the batches are kept for inspection.
struct FixedCost : IterationCost {
  double seconds = 1.0;
  std::vector<std::vector<SequenceWork>> batches;
  IterationCostResult cost(const std::vector<SequenceWork>& batch) override {
    batches.push_back(batch);
    return {seconds, 2.0};
  }
};

SchedulerConfig roomy() {
  SchedulerConfig c;
  c.max_running = 8, c.max_batched_tokens = 100, c.block_tokens = 4, c.blocks = 100;
  return c;
}

// A (t = 0, prompt 4, output 3) and B (t = 0.5, prompt 2, output 2), 1 s per iteration:
//   [0, 1) A's prompt: A's first token at 1.  B arrives at 0.5 and waits.
//   [1, 2) A decodes (token 2), B's prompt joins: B's first token at 2.
//   [2, 3) both decode: A's token 3 and B's token 2, both done at 3.
TEST(Serving, TimesOfTwoRequestsByHand) {
  FixedCost cost;
  const ServeResult r = serve({{0, 0.0, 4, 3}, {1, 0.5, 2, 2}}, roomy(), cost);
  ASSERT_EQ(r.iterations.size(), 3u);
  const RequestResult &a = r.requests[0], &b = r.requests[1];
  EXPECT_DOUBLE_EQ(a.ttft(), 1.0);
  EXPECT_DOUBLE_EQ(a.latency(), 3.0);
  EXPECT_DOUBLE_EQ(a.tpot(), 1.0);  // (3 - 1) s over 2 tokens
  EXPECT_DOUBLE_EQ(a.queueing(), 0.0);
  EXPECT_DOUBLE_EQ(b.ttft(), 1.5);
  EXPECT_DOUBLE_EQ(b.latency(), 2.5);
  EXPECT_DOUBLE_EQ(b.tpot(), 1.0);
  EXPECT_DOUBLE_EQ(b.queueing(), 0.5);
  EXPECT_DOUBLE_EQ(r.seconds, 3.0);
  EXPECT_DOUBLE_EQ(r.joules, 6.0);
  // The second iteration mixes A's decode (context 4) with B's prompt.
  ASSERT_EQ(cost.batches[1].size(), 2u);
  EXPECT_FALSE(cost.batches[1][0].prefill);
  EXPECT_EQ(cost.batches[1][0].context, 4);
  EXPECT_EQ(cost.batches[1][0].tokens, 1);
  EXPECT_TRUE(cost.batches[1][1].prefill);
  EXPECT_EQ(cost.batches[1][1].tokens, 2);
  EXPECT_EQ(r.iterations[1].prefill_tokens, 2);
  EXPECT_EQ(r.iterations[1].decode_tokens, 1);
}

// Idle time: a request arriving later starts at its arrival.
TEST(Serving, AnIdleReplicaWaitsForTheNextArrival) {
  FixedCost cost;
  cost.seconds = 0.25;
  const ServeResult r = serve({{0, 0.0, 4, 1}, {1, 10.0, 4, 2}}, roomy(), cost);
  EXPECT_DOUBLE_EQ(r.requests[0].finished, 0.25);
  EXPECT_DOUBLE_EQ(r.requests[1].first_token, 10.25);
  EXPECT_DOUBLE_EQ(r.requests[1].finished, 10.5);
  EXPECT_DOUBLE_EQ(r.iterations[1].start, 10.0);
}

// A prompt of 7 tokens under a budget of 3 batched tokens: chunks of 3, 3 and 1 at contexts 0,
// 3 and 6; its first token comes with the last chunk. Without chunking it is an error.
TEST(Serving, ChunkedPrefillSplitsAsConfigured) {
  FixedCost cost;
  SchedulerConfig c = roomy();
  c.max_batched_tokens = 3;
  const ServeResult r = serve({{0, 0.0, 7, 2}}, c, cost);
  ASSERT_EQ(cost.batches.size(), 4u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(cost.batches[i].size(), 1u);
    EXPECT_TRUE(cost.batches[i][0].prefill);
    EXPECT_EQ(cost.batches[i][0].context, int64_t(3 * i));
    EXPECT_EQ(cost.batches[i][0].tokens, i < 2 ? 3 : 1);
  }
  EXPECT_FALSE(cost.batches[3][0].prefill);
  EXPECT_DOUBLE_EQ(r.requests[0].first_token, 3.0);
  EXPECT_DOUBLE_EQ(r.requests[0].finished, 4.0);
  c.chunked_prefill = false;
  EXPECT_THROW(serve({{0, 0.0, 7, 2}}, c, cost), std::runtime_error);
}

// A KV cache of 3 blocks of 4 tokens. A (prompt 4, output 6) and B (prompt 4, output 2) arrive
// together; each prompt takes a block. In iteration 2 A's fifth token needs a second block
// (the last free one) and B's its second too: none left, so B, admitted last, is preempted.
// B's prompt and first token (5 tokens, 2 blocks) wait for A to finish (A's 9th KV token takes
// the freed block in iteration 6), then B recomputes them and yields its second token.
TEST(Serving, KvExhaustionPreemptsTheLatestAdmittedWhenTheBlocksRunOut) {
  FixedCost cost;
  SchedulerConfig c = roomy();
  c.blocks = 3;
  const ServeResult r = serve({{0, 0.0, 4, 6}, {1, 0.0, 4, 2}}, c, cost);
  ASSERT_EQ(r.iterations.size(), 7u);
  EXPECT_EQ(r.iterations[0].preempted, 0);
  EXPECT_EQ(r.iterations[1].preempted, 1);
  EXPECT_EQ(r.iterations[0].blocks_used, 2);
  EXPECT_EQ(r.iterations[1].blocks_used, 2);  // A's two
  EXPECT_EQ(r.iterations[4].blocks_used, 2);
  EXPECT_EQ(r.requests[1].preemptions, 1);
  EXPECT_EQ(r.requests[0].preemptions, 0);
  EXPECT_DOUBLE_EQ(r.requests[0].finished, 6.0);
  EXPECT_DOUBLE_EQ(r.requests[1].first_token, 1.0);  // delivered before the preemption
  EXPECT_DOUBLE_EQ(r.requests[1].finished, 7.0);
  ASSERT_EQ(cost.batches[6].size(), 1u);
  EXPECT_TRUE(cost.batches[6][0].prefill);  // the recompute: prompt and the token out
  EXPECT_EQ(cost.batches[6][0].tokens, 5);
  for (size_t i = 1; i < 6; ++i) EXPECT_EQ(cost.batches[i].size(), 1u) << i;  // A alone
}

TEST(Serving, RunningSequencesAreLimited) {
  FixedCost cost;
  SchedulerConfig c = roomy();
  c.max_running = 2;
  const ServeResult r = serve({{0, 0.0, 4, 2}, {1, 0.0, 4, 2}, {2, 0.0, 4, 2}}, c, cost);
  EXPECT_DOUBLE_EQ(r.requests[0].finished, 2.0);
  EXPECT_DOUBLE_EQ(r.requests[1].finished, 2.0);
  EXPECT_DOUBLE_EQ(r.requests[2].scheduled, 2.0);
  EXPECT_DOUBLE_EQ(r.requests[2].finished, 4.0);
  EXPECT_EQ(r.iterations[0].waiting, 1);
}

TEST(Serving, BadInputIsAClearError) {
  FixedCost cost;
  SchedulerConfig c = roomy();
  c.blocks = 2;
  try {
    serve({{0, 0.0, 4, 2}, {41, 0.5, 8, 4}}, c, cost);
    ADD_FAILURE() << "a request larger than the KV cache was served";
  } catch (const std::exception& e) {
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("request 41 (8 prompt and 4 output tokens) needs 3 KV-cache blocks of 4 tokens; the replica has 2"));
  }
  EXPECT_THROW(serve({{0, 1.0, 4, 2}, {1, 0.5, 4, 2}}, roomy(), cost), std::runtime_error);  // unsorted
  c = roomy();
  c.max_running = 0;
  EXPECT_THROW(serve({{0, 0.0, 4, 2}}, c, cost), std::runtime_error);
}

// The metrics of the two-request schedule above, by hand: TTFTs 1.0 and 1.5 s (p50 1.25, p90
// 1.45, p99 1.495 by linear interpolation), TPOT 1 s each, 5 output and 6 prompt tokens over 3 s;
// with a 1.2 s TTFT target only A meets the SLO. KV blocks held after each iteration: A's 1;
// A's 2 and B's 1; none: a mean of 4/300 of the 100 blocks, a peak of 3/100. The replica is
// never idle: 6 J.
TEST(ServingMetrics, TwoRequestsByHand) {
  FixedCost cost;
  const ServeResult r = serve({{0, 0.0, 4, 3}, {1, 0.5, 2, 2}}, roomy(), cost);
  const ServeMetrics m = summarize(r, roomy(), parse_slo("ttft=1200ms"), 100.0);
  EXPECT_DOUBLE_EQ(m.seconds, 3.0);
  EXPECT_DOUBLE_EQ(m.ttft.p50, 1.25);
  EXPECT_DOUBLE_EQ(m.ttft.p90, 1.45);
  EXPECT_DOUBLE_EQ(m.ttft.p99, 1.495);
  EXPECT_DOUBLE_EQ(m.ttft.mean, 1.25);
  EXPECT_DOUBLE_EQ(m.tpot.p99, 1.0);
  EXPECT_DOUBLE_EQ(m.latency.p50, 2.75);
  EXPECT_DOUBLE_EQ(m.queueing.mean, 0.25);
  EXPECT_DOUBLE_EQ(m.output_tokens_per_s, 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.tokens_per_s, 11.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.slo_attainment, 0.5);
  EXPECT_DOUBLE_EQ(m.goodput, 1.0 / 3.0);
  EXPECT_NEAR(m.kv_occupancy_mean, 4.0 / 300.0, 1e-15);
  EXPECT_DOUBLE_EQ(m.kv_occupancy_peak, 0.03);
  EXPECT_DOUBLE_EQ(m.joules, 6.0);
  EXPECT_DOUBLE_EQ(m.joules_per_output_token, 6.0 / 5.0);
  // With a gap of idle time, the idle power fills it: 9 s idle at 100 W (busy 0-1 s and 10-11 s).
  const ServeResult gap = serve({{0, 0.0, 4, 1}, {1, 10.0, 4, 1}}, roomy(), cost);
  EXPECT_DOUBLE_EQ(summarize(gap, roomy(), Slo{}, 100.0).joules, 4.0 + 100.0 * 9.0);
}

TEST(ServingMetrics, SloTargetsParseWithUnitsAndNameBadKeys) {
  const Slo s = parse_slo("ttft=0.5s,tpot=50ms");
  EXPECT_DOUBLE_EQ(s.ttft, 0.5);
  EXPECT_DOUBLE_EQ(s.tpot, 0.05);
  EXPECT_DOUBLE_EQ(parse_slo("tpot=250us").tpot, 250e-6);
  auto message = [](const std::string& spec) {
    try {
      parse_slo(spec);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message("ttft=fast"), ::testing::HasSubstr("--slo ttft: expected a quantity with a unit such as '3ns'"));
  EXPECT_THAT(message("ttft=5"), ::testing::HasSubstr("--slo ttft: missing unit"));
  EXPECT_THAT(message("tpot=2min"), ::testing::HasSubstr("--slo tpot: unknown unit 'min'"));
  EXPECT_THAT(message("itl=5ms"), ::testing::HasSubstr("--slo itl: unknown target"));
  EXPECT_THAT(message("ttft=-5ms"), ::testing::HasSubstr("--slo ttft: '-5ms' is not a time above 0"));
  EXPECT_THAT(message("ttft=0s"), ::testing::HasSubstr("--slo ttft: '0s' is not a time above 0"));
}

// Buckets of 64 tokens and 256 positions: a 100-token chunk is costed as 96 (the middle of
// [65, 128]) at context 0 (a first chunk stays at 0); decodes at contexts 300 and 500 as two at
// the middle of their mean's bucket, 400 in [257, 512]: 384. Another iteration with the same
// canonical form reuses the cost.
TEST(BucketedCost, IterationsOfOneShapeShareOneSimulation) {
  FixedCost exact;
  BucketedCost cached(exact, Buckets{64, 256});
  const std::vector<SequenceWork> a = {{0, 300, 1, false}, {1, 0, 100, true}, {2, 500, 1, false}};
  const std::vector<SequenceWork> c = cached.canonical(a);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_TRUE(c[0].prefill);
  EXPECT_EQ(c[0].tokens, 96);
  EXPECT_EQ(c[0].context, 0);
  EXPECT_FALSE(c[1].prefill);
  EXPECT_EQ(c[1].context, 384);
  EXPECT_EQ(c[2].context, 384);
  cached.cost(a);
  cached.cost({{5, 270, 1, false}, {6, 530, 1, false}, {7, 0, 70, true}});  // the same canonical form
  cached.cost({{5, 270, 1, false}, {7, 0, 70, true}});                      // one decode fewer
  EXPECT_EQ(cached.lookups(), 3);
  EXPECT_EQ(cached.simulated(), 2);
  ASSERT_EQ(exact.batches.size(), 2u);
  EXPECT_EQ(exact.batches[0].size(), 3u);
  // Widths of 1 keep every length; a lone decode is its own mean.
  BucketedCost fine(exact, Buckets{1, 1});
  const std::vector<SequenceWork> f = fine.canonical({{0, 0, 100, true}, {1, 77, 1, false}});
  EXPECT_EQ(f[0].tokens, 100);
  EXPECT_EQ(f[1].context, 77);
}

}  // namespace
}  // namespace tessera::sim::serving
