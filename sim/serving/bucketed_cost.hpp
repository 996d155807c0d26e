// Iteration costs cached by shape buckets, so that an hour of traffic (hundreds of thousands of
// iterations) needs a few thousand simulations. An iteration maps to a canonical one: its
// decodes all at their mean context, each prefill chunk's tokens and context, every length
// moved to the middle of its bucket; iterations with the same canonical form share its cost.
// Attention's work grows linearly with the context, so the mean keeps the decodes' total; the
// token-parallel work (projections, MLP) sees the same token count within a bucket's width.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "sim/serving/scheduler.hpp"

namespace tessera::sim::serving {

struct Buckets {
  int64_t tokens = 64;    // width of a prefill chunk's token buckets
  int64_t context = 256;  // width of the context buckets
};

class BucketedCost : public IterationCost {
 public:
  BucketedCost(IterationCost& exact, Buckets buckets);
  IterationCostResult cost(const std::vector<SequenceWork>& batch) override;

  // The canonical iteration `batch` is costed as.
  std::vector<SequenceWork> canonical(const std::vector<SequenceWork>& batch) const;
  int64_t simulated() const { return int64_t(cache_.size()); }  // distinct canonical iterations
  int64_t lookups() const { return lookups_; }

 private:
  IterationCost& exact_;
  Buckets buckets_;
  std::map<std::vector<int64_t>, IterationCostResult> cache_;
  int64_t lookups_ = 0;
};

}  // namespace tessera::sim::serving
