#include "sim/serving/interpolated_cost.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace tessera::sim::serving {

std::vector<int64_t> Grid::points() const {
  if (per_octave < 1 || per_octave > 64) {
    throw std::runtime_error(fmt::format("serving: grid points per octave must be in [1, 64], got {}", per_octave));
  }
  std::vector<int64_t> p;
  for (int64_t v = 0; v <= 2 * per_octave; ++v) p.push_back(v);
  for (int64_t k = 1; p.back() < (int64_t(1) << 40); ++k) {
    const auto v = int64_t(std::llround(double(2 * per_octave) * std::exp2(double(k) / double(per_octave))));
    if (v > p.back()) p.push_back(v);
  }
  return p;
}

InterpolatedCost::InterpolatedCost(PartCosts& parts, Grid grid, double static_watts)
    : parts_(parts), points_(grid.points()), static_watts_(static_watts) {
  size_t above = 0;
  for (int64_t p : points_) {
    if (p <= 1024 || above++ % 2 == 1) token_points_.push_back(p);
  }
}

std::pair<int64_t, int64_t> InterpolatedCost::bracket(int64_t v, const std::vector<int64_t>& points) {
  if (v < 0 || v > points.back()) throw std::runtime_error(fmt::format("serving: {} is off the cost grid", v));
  const auto hi = std::lower_bound(points.begin(), points.end(), v);
  if (*hi == v) return {v, v};
  return {*(hi - 1), *hi};
}

AttentionPart InterpolatedCost::at(Part part, Point p) {
  if (part == Decodes) p[2] = p[0] == 1 ? p[1] : std::max(p[1], p[2]);  // a corner's longest >= its mean
  const auto key = std::make_pair(int(part), p);
  const auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  ++simulated_;
  auto whole = [](const IterationCostResult& r) { return AttentionPart{r.seconds, r.joules, 1.0}; };
  const AttentionPart r = part == Body      ? whole(parts_.body(p[0]))
                          : part == Head    ? whole(parts_.head(p[0]))
                          : part == Decodes ? parts_.decodes(p[0], p[1], p[2])
                                            : parts_.chunk(p[0], p[1]);
  cache_.emplace(key, r);
  return r;
}

namespace {

AttentionPart mix(const AttentionPart& lo, const AttentionPart& hi, double w) {
  return {lo.seconds + (hi.seconds - lo.seconds) * w, lo.joules + (hi.joules - lo.joules) * w,
          lo.tiles + (hi.tiles - lo.tiles) * w};
}

double weight(int64_t v, std::pair<int64_t, int64_t> b) {
  return b.first == b.second ? 0.0 : double(v - b.first) / double(b.second - b.first);
}

}  // namespace

AttentionPart InterpolatedCost::interpolate(Part part, Point p, int dims, int from) {
  if (from == dims) return at(part, p);
  const auto b = bracket(p[size_t(from)], part == Body ? token_points_ : points_);
  Point lo = p, hi = p;
  lo[size_t(from)] = b.first, hi[size_t(from)] = b.second;
  const AttentionPart low = interpolate(part, lo, dims, from + 1);
  if (b.first == b.second) return low;
  return mix(low, interpolate(part, hi, dims, from + 1), weight(p[size_t(from)], b));
}

IterationCostResult InterpolatedCost::cost(const std::vector<SequenceWork>& batch) {
  if (batch.empty()) return {};
  int64_t tokens = 0, decodes = 0, context = 0, longest = 0;
  std::vector<AttentionPart> attention;
  for (const SequenceWork& w : batch) {
    tokens += w.tokens;
    if (w.prefill) {
      attention.push_back(interpolate(Chunk, {w.tokens, w.context, 0}, 2));
    } else {
      ++decodes, context += w.context, longest = std::max(longest, w.context);
    }
  }
  if (decodes > 0) attention.push_back(interpolate(Decodes, {decodes, (context + decodes / 2) / decodes, longest}, 3));
  IterationCostResult sum;
  double path = 0, spread = 0;  // attention: the longest part; all parts' tile-time over the tiles
  for (const AttentionPart& a : attention) {
    path = std::max(path, a.seconds), spread += a.tiles * a.seconds;
    sum.joules += a.joules;
  }
  sum.seconds = std::max(path, spread);
  for (const AttentionPart& p : {interpolate(Body, {tokens, 0, 0}, 1), interpolate(Head, {int64_t(batch.size()), 0, 0}, 1)}) {
    sum.seconds += p.seconds, sum.joules += p.joules;
  }
  sum.joules += static_watts_ * sum.seconds;
  return sum;
}

}  // namespace tessera::sim::serving
