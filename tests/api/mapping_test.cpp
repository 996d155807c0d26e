// Mappings onto chips: microbatches, the pipeline schedule against hand-worked timelines, and
// the candidates the search keeps (expert parallelism among them).
#include "tools/api/mapping.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "arch/derived.hpp"
#include "arch/loader.hpp"

namespace tessera::api {
namespace {

using compiler::Phase;

TEST(Mapping, MicrobatchesAreTheLargestDivisorOfTheBatchUpToTheStages) {
  EXPECT_EQ(microbatches(32, 2), 2);
  EXPECT_EQ(microbatches(1, 4), 1);
  EXPECT_EQ(microbatches(6, 4), 3);
  EXPECT_EQ(microbatches(7, 4), 1);
  EXPECT_EQ(microbatches(8, 1), 1);
}

TEST(Mapping, DecodeIsTheSlowerOfOneTripAndTheBusiestStage) {
  EXPECT_DOUBLE_EQ(pipeline_seconds({1, 2, 1}, {0.1, 0.1}, 1, Phase::Decode), 4.2);
  EXPECT_DOUBLE_EQ(pipeline_seconds({1, 2, 1}, {0.1, 0.1}, 3, Phase::Decode), 6.0);
  EXPECT_DOUBLE_EQ(pipeline_seconds({3}, {}, 1, Phase::Decode), 3.0);
}

TEST(Mapping, PrefillFillsAndDrainsThePipeline) {
  // p equal stages, m microbatches, free transfers: (p + m - 1) t.
  EXPECT_DOUBLE_EQ(pipeline_seconds({1, 1, 1, 1}, {0, 0, 0}, 3, Phase::Prefill), 6.0);
  // A transfer shorter than a stage hides behind the next microbatch: t + c + m t.
  EXPECT_DOUBLE_EQ(pipeline_seconds({1, 1}, {0.5}, 2, Phase::Prefill), 3.5);
  // A slower link carries one microbatch at a time: t + m c + t.
  EXPECT_DOUBLE_EQ(pipeline_seconds({1, 1}, {3}, 2, Phase::Prefill), 8.0);
  // Unequal stages: the slow one sets the pace once filled: 1 + 2 + 2 + 2 + 1.
  EXPECT_DOUBLE_EQ(pipeline_seconds({1, 2, 1}, {0, 0}, 3, Phase::Prefill), 8.0);
}

TEST(Mapping, CandidatesSplitTheModelAndStayNearTheBestEstimate) {
  const compiler::ModelConfig qwen = compiler::load_model_config("qwen2-7b");  // 28 heads
  compiler::Workload w;
  w.phase = compiler::Phase::Decode, w.batch = 8, w.context = 256;
  const std::vector<Candidate> c = candidate_mappings(arch::load_arch("hgx-h100x8"), qwen, w, 2);
  ASSERT_FALSE(c.empty());
  EXPECT_LE(c.size(), kSearchMax);
  for (const Candidate& x : c) {
    EXPECT_EQ(x.mapping.tp * x.mapping.pp, 8);
    EXPECT_NE(x.mapping.tp, 8);  // 28 heads do not split over 8
    EXPECT_LE(x.estimate, kSearchSlack * c.front().estimate);
  }
  // A system that fixes the mapping has one candidate; a stage count above the layers has none.
  EXPECT_EQ(candidate_mappings(arch::load_arch("hgx-h100x8", {"system.parallelism.pp=2"}), qwen, w, 2).size(), 1u);
  compiler::ModelConfig shallow = qwen;
  shallow.layers = 2;
  EXPECT_THROW(candidate_mappings(arch::load_arch("hgx-h100x8", {"system.parallelism.tp=1"}), shallow, w, 2),
               std::runtime_error);
}

// Expert parallelism in the search: an MoE's candidates include each ep dividing tp and the
// experts. With one token, 2 of Mixtral's 8 experts are chosen (each with probability 1/4):
// over tp 8, ep 1 reads a quarter of an expert a chip per layer, ep 8 reads a whole expert on the
// chips that hold a chosen one, and the step waits for them: E[max of 8 Bernoulli(1/4)] =
// 1 - (3/4)^8. With 64 tokens every expert is chosen and the two read alike.
TEST(Mapping, ExpertParallelismIsSearchedAndPaysForIdleGroups) {
  const compiler::ModelConfig mixtral = compiler::load_model_config("mixtral-8x7b");
  const arch::Arch a = arch::load_arch("hgx-h100x8", {"system.parallelism.tp=8"});
  compiler::Workload w;
  w.phase = compiler::Phase::Decode, w.batch = 1, w.context = 256;
  std::set<int64_t> eps;
  for (const Candidate& c : candidate_mappings(a, mixtral, w, 2)) eps.insert(c.mapping.ep);
  EXPECT_TRUE(eps.count(1) && !eps.count(8));  // ep 8 is estimated 3x slower: pruned
  const arch::Arch given = arch::load_arch("hgx-h100x8", {"system.parallelism.tp=8", "system.parallelism.ep=2"});
  ASSERT_EQ(candidate_mappings(given, mixtral, w, 2).size(), 1u);
  EXPECT_EQ(candidate_mappings(given, mixtral, w, 2).front().mapping, (Mapping{8, 1, 2}));
  const double expert_bytes = 3.0 * 4096 * 14336 * 2, layers = 32, bandwidth = arch::derive(a).hbm_bandwidth;
  const double ep1 = estimate_seconds(a, mixtral, w, {8, 1, 1}, 2), ep8 = estimate_seconds(a, mixtral, w, {8, 1, 8}, 2);
  EXPECT_NEAR((ep8 - ep1) * bandwidth, layers * ((1 - std::pow(0.75, 8)) - 0.25) * expert_bytes, 1e-6 * layers * expert_bytes);
  w.batch = 64;
  EXPECT_NEAR(estimate_seconds(a, mixtral, w, {8, 1, 8}, 2) / estimate_seconds(a, mixtral, w, {8, 1, 1}, 2), 1.0, 1e-3);
}

}  // namespace
}  // namespace tessera::api
