// Where a run's time goes: per operator and per layer, the simulated time, the work and the
// traffic, from the simulator's accounting of the regions the compiler marks (one per
// operator; instance n of a layer-loop operator is layer n); and the extrapolation of a run
// that simulated K of a model's L layers to all of them.
//
// Time. Operators run one after another (a barrier ends each), so each region instance is
// given the time from the end of the one before it (by completion) to its own end: the shares
// add up to the run. Work and traffic are charged to the operator that issued them (a weight
// prefetch to the operator it loads for), and utilisation is over the time that work was under
// way (from the operator's first mark to its end).
//
// Sampling. With K simulated layers (K >= 2), layer 0 is taken as simulated and every layer
// from K on as the mean of layers 1 .. K-1 (layer 0 differs: it starts cold), per operator:
//   x(L) = x_end + (L - K) * mean(x of layers 1 .. K-1)
// for time and every counter, and for the raw stats from their values at the layer boundaries.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "arch/derived.hpp"
#include "compiler/compile.hpp"
#include "sim/simulation.hpp"

namespace tessera::api {

// An operator (over every layer it runs in) or a layer (over its operators).
struct Share {
  std::string name;   // the operator ("attention", "lm_head") or "layer 3"
  std::string kind;   // the operator's kind; "layer" for a layer
  int64_t layers = 0;  // layers an operator runs in (0: outside the layer loop)
  bool extrapolated = false;  // a layer that was not simulated
  double seconds = 0;         // its share of the run's time
  double active = 0;          // the time its work was under way (from its first mark, which
                              // for a prefetching operator overlaps the one before)
  sim::Activity activity;
};

struct Breakdown {
  std::vector<Share> ops, layers;
  // Each simulated region instance's share of the timeline: [start, end), region index.
  struct Span {
    size_t region;
    sim::Tick start, end;
  };
  std::vector<Span> spans;
  double seconds = 0;       // the whole run
  sim::Activity total;      // the whole run's
};

// `layers`: the model's layers in the loop (L); `simulated`: how many ran (K; equal to L, or 0
// without a layer loop, when nothing is extrapolated).
Breakdown attribute(const sim::RunResult& run, const std::vector<compiler::MarkedOp>& marks, int64_t layers,
                    int64_t simulated);

// Perfetto: a slice per operator instance on an "operators" track, named by operator and
// layer ("l3.attention"), with its figures as arguments; a slice per simulated layer on a
// "layers" track, and the extrapolated layers as one slice after the run, named as such.
void trace_operators(sim::Trace& trace, const sim::RunResult& run, const Breakdown& b,
                     const std::vector<compiler::MarkedOp>& marks, const arch::Derived& d, int64_t layers,
                     int64_t simulated);

// The regions whose first instances bound the layers: the loop's first operator and the first
// after the loop (-1 if none).
std::pair<int64_t, int64_t> layer_bounds(const std::vector<compiler::MarkedOp>& marks);

// The run's stats extrapolated from K to L layers with the snapshots at layer boundaries.
sim::Stats extrapolate_stats(const sim::RunResult& run, const std::vector<compiler::MarkedOp>& marks,
                             int64_t layers, int64_t simulated);

// Utilisation of each resource over `seconds`: compute (MACs against the peak of their dtype),
// hbm_bandwidth, interconnect (chip links), and the busiest instance of the NoC links, DMA
// engines, vector units, SRAM ports and shared memory.
std::map<std::string, double> utilization(const sim::Activity& a, double seconds, const arch::Derived& d,
                                          const sim::Slots& slots);
// The most utilised resource if it is saturated (busy at least kSaturated of the time), else
// "latency" (the time goes to dependencies, pipeline fill and synchronisation). `capacity` is
// not a rate and never bounds.
inline constexpr double kSaturated = 0.7;
std::string bound_of(const std::map<std::string, double>& utilization);

}  // namespace tessera::api
