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
    : parts_(parts), points_(grid.points()), static_watts_(static_watts) {}

std::pair<int64_t, int64_t> InterpolatedCost::bracket(int64_t v) const {
  if (v < 0 || v > points_.back()) throw std::runtime_error(fmt::format("serving: {} is off the cost grid", v));
  const auto hi = std::lower_bound(points_.begin(), points_.end(), v);
  if (*hi == v) return {v, v};
  return {*(hi - 1), *hi};
}

IterationCostResult InterpolatedCost::at(Part part, int64_t a, int64_t b) {
  const auto key = std::make_tuple(int(part), a, b);
  const auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  ++simulated_;
  const IterationCostResult r = part == Body      ? parts_.body(a)
                                : part == Head    ? parts_.head(a)
                                : part == Decodes ? parts_.decodes(a, b)
                                                  : parts_.chunk(a, b);
  cache_.emplace(key, r);
  return r;
}

namespace {

IterationCostResult mix(const IterationCostResult& lo, const IterationCostResult& hi, double w) {
  return {lo.seconds + (hi.seconds - lo.seconds) * w, lo.joules + (hi.joules - lo.joules) * w};
}

double weight(int64_t v, std::pair<int64_t, int64_t> b) {
  return b.first == b.second ? 0.0 : double(v - b.first) / double(b.second - b.first);
}

}  // namespace

IterationCostResult InterpolatedCost::linear(Part part, int64_t v) {
  const auto b = bracket(v);
  return mix(at(part, b.first, 0), at(part, b.second, 0), weight(v, b));
}

IterationCostResult InterpolatedCost::bilinear(Part part, int64_t a, int64_t c) {
  const auto ba = bracket(a), bc = bracket(c);
  const double wc = weight(c, bc);
  return mix(mix(at(part, ba.first, bc.first), at(part, ba.first, bc.second), wc),
             mix(at(part, ba.second, bc.first), at(part, ba.second, bc.second), wc), weight(a, ba));
}

IterationCostResult InterpolatedCost::cost(const std::vector<SequenceWork>& batch) {
  int64_t tokens = 0, decodes = 0, context = 0;
  IterationCostResult sum;
  auto add = [&](const IterationCostResult& r) { sum.seconds += r.seconds, sum.joules += r.joules; };
  for (const SequenceWork& w : batch) {
    tokens += w.tokens;
    if (w.prefill) {
      add(bilinear(Chunk, w.tokens, w.context));
    } else {
      ++decodes, context += w.context;
    }
  }
  if (batch.empty()) return sum;
  if (decodes > 0) add(bilinear(Decodes, decodes, (context + decodes / 2) / decodes));
  add(linear(Body, tokens));
  add(linear(Head, int64_t(batch.size())));
  sum.joules += static_watts_ * sum.seconds;
  return sum;
}

}  // namespace tessera::sim::serving
