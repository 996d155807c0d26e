// The serving scheduler against schedules worked out by hand, with iteration costs that make
// the arithmetic easy (a fixed time per iteration, or one linear in the tokens).
#include "sim/serving/scheduler.hpp"
#include "sim/serving/interpolated_cost.hpp"
#include "sim/serving/metrics.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

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

// A model of 12 positions: B (10 + 5) is rejected on arrival and served by no iteration; A
// runs as alone (prompt at 1, tokens at 2 and 3). The metrics count B apart.
TEST(Serving, RequestsLongerThanTheModelAreRejected) {
  FixedCost cost;
  SchedulerConfig c = roomy();
  c.max_context = 12;
  const ServeResult r = serve({{0, 0.0, 4, 3}, {1, 0.5, 10, 5}}, c, cost);
  ASSERT_EQ(r.iterations.size(), 3u);
  EXPECT_FALSE(r.requests[0].rejected);
  EXPECT_TRUE(r.requests[1].rejected);
  EXPECT_DOUBLE_EQ(r.requests[0].finished, 3.0);
  EXPECT_DOUBLE_EQ(r.requests[1].scheduled, -1.0);
  const ServeMetrics m = summarize(r, c, Slo{}, 0.0);
  EXPECT_EQ(m.requests, 2);
  EXPECT_EQ(m.rejected, 1);
  EXPECT_DOUBLE_EQ(m.requests_per_s, 1.0 / 3.0);  // A alone, over [0, 3]
  EXPECT_DOUBLE_EQ(m.slo_attainment, 0.5);        // B missed it
  EXPECT_DOUBLE_EQ(m.ttft.p99, 1.0);
}

TEST(InterpolatedCost, GridHasEveryIntegerToTwoOctavesThenFourPerOctave) {
  const std::vector<int64_t> p = Grid{4}.points();
  const std::vector<int64_t> first(p.begin(), p.begin() + 22);
  EXPECT_EQ(first, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 23, 27, 32, 38, 45, 54, 64, 76}));
  EXPECT_THAT([] { Grid{0}.points(); }, ::testing::ThrowsMessage<std::runtime_error>(::testing::HasSubstr("per octave")));
  // The body's token counts take every other point above 1,024.
  struct None : PartCosts {
    IterationCostResult body(int64_t) override { return {}; }
    IterationCostResult head(int64_t) override { return {}; }
    AttentionPart decodes(int64_t, int64_t, int64_t) override { return {}; }
    AttentionPart chunk(int64_t, int64_t) override { return {}; }
  } none;
  const InterpolatedCost cost(none, Grid{4}, 0.0);
  EXPECT_EQ(cost.bracket(1500), (std::pair<int64_t, int64_t>{1448, 1722}));
  EXPECT_EQ(cost.bracket_tokens(1500), (std::pair<int64_t, int64_t>{1448, 2048}));
  EXPECT_EQ(cost.bracket_tokens(900), (std::pair<int64_t, int64_t>{861, 1024}));
}

// Parts with costs worked out by hand: body T^2 ms, head 1 ms per sequence, decodes d x c us,
// a chunk t x (c + 1) us keeping `chunk_tiles` of the tiles busy; each 3 J a second of its time.
// Evaluations are recorded.
struct HandParts : PartCosts {
  std::vector<std::string> calls;
  double chunk_tiles = 1.0;
  static IterationCostResult of(double seconds) { return {seconds, 3 * seconds}; }
  IterationCostResult body(int64_t t) override {
    calls.push_back(fmt::format("body {}", t));
    return of(double(t * t) * 1e-3);
  }
  IterationCostResult head(int64_t n) override {
    calls.push_back(fmt::format("head {}", n));
    return of(double(n) * 1e-3);
  }
  AttentionPart decodes(int64_t d, int64_t c, int64_t longest) override {
    calls.push_back(fmt::format("decodes {} {} {}", d, c, longest));
    return {double(d * c) * 1e-6, 3 * double(d * c) * 1e-6, 1.0};
  }
  AttentionPart chunk(int64_t t, int64_t c) override {
    calls.push_back(fmt::format("chunk {} {}", t, c));
    return {double(t * (c + 1)) * 1e-6, 3 * double(t * (c + 1)) * 1e-6, chunk_tiles};
  }
};

// Decodes at contexts 300 and 500 and a chunk of 9 tokens after 16: T = 11, n = 3.
//   body: 11 is a grid point: 121 ms.  head: 3 ms.
//   decodes: 2 at their mean 400 (between 362 and 431), the longest 500 (between 431 and 512):
//     multilinear in (d, c, longest) of d x c is exact, 800 us.
//   chunk (9, 16): t between 8 and 10 at c = 16 (a point): 8 x 17 and 10 x 17 us, halfway: 153 us.
//   time 121 + 3 + 0.8 + 0.153 = 124.953 ms; energy 3 J/s of it plus 10 W static: 13 x 124.953 mJ.
TEST(InterpolatedCost, IterationIsTheSumOfItsPartsInterpolatedOnTheGrid) {
  HandParts parts;
  InterpolatedCost cost(parts, Grid{4}, 10.0);
  const std::vector<SequenceWork> it = {{0, 300, 1, false}, {1, 16, 9, true}, {2, 500, 1, false}};
  const IterationCostResult r = cost.cost(it);
  EXPECT_NEAR(r.seconds, 124.953e-3, 1e-12);
  EXPECT_NEAR(r.joules, 13 * 124.953e-3, 1e-12);
  EXPECT_THAT(parts.calls, ::testing::UnorderedElementsAre("chunk 8 16", "chunk 10 16", "decodes 2 362 431",
                                                           "decodes 2 362 512", "decodes 2 431 431", "decodes 2 431 512",
                                                           "body 11", "head 3"));
  // Between grid points a non-linear part is interpolated: T = 12 between 11 and 13 costs
  // (121 + 169) / 2 = 145 ms of body, not 144.
  const IterationCostResult twelve = cost.cost({{0, 0, 12, true}});
  EXPECT_NEAR(twelve.seconds, 145e-3 + 1e-3 + 12e-6, 1e-12);
  // The same points again are not evaluated again.
  const size_t calls = parts.calls.size();
  EXPECT_EQ(cost.simulated(), int64_t(calls));
  cost.cost(it);
  EXPECT_EQ(parts.calls.size(), calls);
  EXPECT_DOUBLE_EQ(cost.cost({}).seconds, 0.0);
}

// Attention parts share the tiles. A chunk of 32 after 99 (3.2 ms alone) keeping a quarter of
// the tiles busy beside 4 decodes at 100 (0.4 ms): the chunk's path is the longer, 3.2 ms (not
// 3.6). Beside 64 decodes at 100 (6.4 ms): the work over all tiles, 6.4 + 3.2 / 4 = 7.2 ms.
TEST(InterpolatedCost, AttentionPartsShareTheTiles) {
  HandParts parts;
  parts.chunk_tiles = 0.25;
  InterpolatedCost cost(parts, Grid{64}, 0.0);  // every integer to 128 is a point
  auto iteration = [](int64_t decodes) {
    std::vector<SequenceWork> b{{0, 99, 32, true}};
    for (int64_t i = 0; i < decodes; ++i) b.push_back({i + 1, 100, 1, false});
    return b;
  };
  const double body4 = 36.0 * 36.0 * 1e-3 + 5e-3, body64 = 96.0 * 96.0 * 1e-3 + 65e-3;  // and the head
  EXPECT_NEAR(cost.cost(iteration(4)).seconds, body4 + 3.2e-3, 1e-9);
  EXPECT_NEAR(cost.cost(iteration(64)).seconds, body64 + 7.2e-3, 1e-9);
  // Energy adds up: every part's.
  EXPECT_NEAR(cost.cost(iteration(4)).joules, 3 * (body4 + 3.2e-3 + 0.4e-3), 1e-9);
}

}  // namespace
}  // namespace tessera::sim::serving
