// Iteration costs from a few hundred simulations, so that an hour of traffic (hundreds of
// thousands of iterations, thousands of distinct shapes) replays in about a minute.
//
// An iteration's operators run one after another (each ends with a kernel barrier), so its
// time and energy are the sums of its operators'. Of those, the layers' operators other than
// attention (projections, MLP, norms, collectives) and the embedding see only the iteration's
// tokens T; the ones after the last layer (final norm, LM head) only its sequences n; attention
// sees every sequence's tokens and past. So an iteration costs
//   body(T) + head(n) + decodes(d, mean context of the d decodes) + sum over prefill chunks chunk(t, c)
// (attention's time is linear in each decode's context while the decodes are bound by reading
// the cache, so their mean stands for them). The parts are simulated at points of a grid and
// interpolated between them (linearly; bilinearly in two dimensions): exact at the points,
// within the curvature of the part between them. The attention parts, simulated apart, each
// spread their units over the whole chip; together they share it, so small chunks beside many
// decodes cost a little more here than in one kernel (the `exact` cost of a whole iteration
// measures it: tests/api/serve_test.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "sim/serving/scheduler.hpp"

namespace tessera::sim::serving {

// The parts' costs where the simulator evaluates them. Joules: the operators' events and active
// power, without the static power (InterpolatedCost adds it over the whole iteration's time).
class PartCosts {
 public:
  virtual ~PartCosts() = default;
  virtual IterationCostResult body(int64_t tokens) = 0;
  virtual IterationCostResult head(int64_t sequences) = 0;
  virtual IterationCostResult decodes(int64_t count, int64_t context) = 0;  // count >= 1
  virtual IterationCostResult chunk(int64_t tokens, int64_t context) = 0;   // a prefill chunk
};

// Grid points: every integer up to 2 x per_octave, then per_octave points per doubling
// (rounded): 4 per octave puts 1..8, 10, 11, 13, 16, 19, 23, ... (at most 19% apart).
struct Grid {
  int64_t per_octave = 4;
  std::vector<int64_t> points() const;
};

class InterpolatedCost : public IterationCost {
 public:
  // `static_watts`: the replica's static power, charged over each iteration's time.
  InterpolatedCost(PartCosts& parts, Grid grid, double static_watts);
  IterationCostResult cost(const std::vector<SequenceWork>& batch) override;
  int64_t simulated() const { return simulated_; }  // part evaluations so far
  // The grid points below and above v (equal when v is one).
  std::pair<int64_t, int64_t> bracket(int64_t v) const;

 private:
  enum Part { Body, Head, Decodes, Chunk };
  IterationCostResult at(Part part, int64_t a, int64_t b);
  IterationCostResult linear(Part part, int64_t v);
  IterationCostResult bilinear(Part part, int64_t a, int64_t b);

  PartCosts& parts_;
  std::vector<int64_t> points_;
  double static_watts_;
  std::map<std::tuple<int, int64_t, int64_t>, IterationCostResult> cache_;
  int64_t simulated_ = 0;
};

}  // namespace tessera::sim::serving
