#include "sim/serving/bucketed_cost.hpp"

#include <algorithm>
#include <stdexcept>
#include <tuple>

namespace tessera::sim::serving {

namespace {

// The middle of v's bucket of width w, buckets [1, w], [w + 1, 2w], ...; 0 (a first prefill
// chunk's context) stays 0.
int64_t middle(int64_t v, int64_t w) { return v == 0 ? 0 : (v - 1) / w * w + (w + 1) / 2; }

}  // namespace

BucketedCost::BucketedCost(IterationCost& exact, Buckets buckets) : exact_(exact), buckets_(buckets) {
  if (buckets_.tokens < 1 || buckets_.context < 1) throw std::runtime_error("serving: bucket widths of at least 1");
}

std::vector<SequenceWork> BucketedCost::canonical(const std::vector<SequenceWork>& batch) const {
  std::vector<SequenceWork> out;
  int64_t decodes = 0, context = 0;
  for (const SequenceWork& w : batch) {
    if (w.prefill) {
      out.push_back({0, middle(w.context, buckets_.context), middle(w.tokens, buckets_.tokens), true});
    } else {
      ++decodes, context += w.context;
    }
  }
  std::sort(out.begin(), out.end(), [](const SequenceWork& a, const SequenceWork& b) {
    return std::tie(a.tokens, a.context) < std::tie(b.tokens, b.context);
  });
  if (decodes > 0) {
    const int64_t mean = (context + decodes / 2) / decodes;
    const int64_t c = middle(mean, buckets_.context);
    for (int64_t i = 0; i < decodes; ++i) out.push_back({0, c, 1, false});
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].request = int64_t(i);
  return out;
}

IterationCostResult BucketedCost::cost(const std::vector<SequenceWork>& batch) {
  ++lookups_;
  const std::vector<SequenceWork> c = canonical(batch);
  // The prefill chunks' (tokens, context), then the decodes' count and their one context.
  std::vector<int64_t> key;
  int64_t decodes = 0, context = 0;
  for (const SequenceWork& w : c) {
    if (w.prefill) key.insert(key.end(), {w.tokens, w.context});
    else ++decodes, context = w.context;
  }
  key.insert(key.end(), {-1, decodes, context});
  const auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  const IterationCostResult r = exact_.cost(c);
  cache_.emplace(std::move(key), r);
  return r;
}

}  // namespace tessera::sim::serving
