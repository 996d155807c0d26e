// Iteration costs from a few hundred simulations, so that an hour of traffic (hundreds of
// thousands of iterations, thousands of distinct shapes) replays in about a minute.
//
// An iteration's operators run one after another (each ends with a kernel barrier), so its
// time and energy are the sums of its operators'. Of those, the layers' operators other than
// attention (projections, MLP, norms, collectives) and the embedding see only the iteration's
// tokens T; the ones after the last layer (final norm, LM head) only its sequences n; attention
// sees every sequence's tokens and past. So an iteration costs
//   body(T) + head(n) + decodes(d, mean context, longest context) + sum over chunks chunk(t, c)
// Attention's work grows linearly with each decode's context, so the decodes' mean stands for
// their total; the longest sets the kernel's critical path and how many units share a tile's
// buffers, so it is kept too (simulated as d - 1 decodes at one context and one at the longest,
// with the mean's total). The parts are simulated at points of a grid and interpolated between
// them (multilinearly): exact at the points, within the curvature of the part between them.
// The body's whole-model steps cost the most to simulate, and above 1,024 tokens their GEMMs
// are bound by the arrays, linear in the tokens: there the body takes every other grid point.
// The attention parts, simulated apart, run as one kernel in the iteration, sharing the chip's
// tiles: a chunk of a few query blocks keeps a share u of the tiles busy for its time t alone,
// and leaves the rest to the others. So attention takes max(longest t, sum of u x t): the
// critical path, or the work spread over all tiles (tests/api/serve_test.cpp holds iterations
// costed so against simulating them whole).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "sim/serving/scheduler.hpp"

namespace tessera::sim::serving {

// The parts' costs where the simulator evaluates them. Joules: the operators' events and active
// power, without the static power (InterpolatedCost adds it over the whole iteration's time).
// An attention part alone: time, energy and the share of the tiles it keeps busy (0, 1].
struct AttentionPart {
  double seconds = 0, joules = 0, tiles = 1;
};

class PartCosts {
 public:
  virtual ~PartCosts() = default;
  virtual IterationCostResult body(int64_t tokens) = 0;
  virtual IterationCostResult head(int64_t sequences) = 0;
  virtual AttentionPart decodes(int64_t count, int64_t mean, int64_t longest) = 0;  // count >= 1
  virtual AttentionPart chunk(int64_t tokens, int64_t context) = 0;   // a prefill chunk
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
  // The grid points below and above v (equal when v is one); of the body's, token counts.
  std::pair<int64_t, int64_t> bracket(int64_t v) const { return bracket(v, points_); }
  std::pair<int64_t, int64_t> bracket_tokens(int64_t v) const { return bracket(v, token_points_); }

 private:
  enum Part { Body, Head, Decodes, Chunk };
  using Point = std::array<int64_t, 3>;
  AttentionPart at(Part part, Point p);
  // Multilinear in the first `dims` coordinates of p.
  AttentionPart interpolate(Part part, Point p, int dims, int from = 0);

  PartCosts& parts_;
  static std::pair<int64_t, int64_t> bracket(int64_t v, const std::vector<int64_t>& points);
  std::vector<int64_t> points_, token_points_;
  double static_watts_;
  std::map<std::pair<int, Point>, AttentionPart> cache_;
  int64_t simulated_ = 0;
};

}  // namespace tessera::sim::serving
