// How a model step is mapped onto a system's chips (tensor parallelism within groups of `tp`
// chips, a pipeline of `pp` groups), the pipeline's schedule composed from its stages' times,
// and the analytic estimate that prunes the search for the fastest mapping.
//
// Pipeline. The batch is cut into m microbatches (the largest divisor of the batch that is at
// most pp); stage s takes t_s per microbatch, and its output crosses to stage s + 1 in c_s.
// Sends do not hold up the sender, and a boundary carries one microbatch at a time. A prefill is
// one pass: microbatch j's input reaches stage s at A[s][j] (0 at the first stage) and
//   F[s][j]   = max(A[s][j], F[s][j-1]) + t_s
//   A[s+1][j] = max(F[s][j], A[s+1][j-1]) + c_s
// and the step ends at F[last][m-1]. A decode step is one of a steady stream: every microbatch's next
// token needs its last one, so the period of the batch is
//   max(sum_s t_s + sum_s c_s, m x max_s t_s)
// (one microbatch's trip through the pipeline, or the busiest stage's m microbatches).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "compiler/hf_frontend.hpp"

namespace tessera::api {

struct Mapping {
  int64_t tp = 1, pp = 1;
  int64_t ep = 1;  // MoE: groups of a stage's tp chips the experts are dealt over
  bool operator==(const Mapping&) const = default;
};

// Microbatches of a pipeline of `pp` stages: the largest divisor of the batch that is at most pp.
int64_t microbatches(int64_t batch, int64_t pp);

// The step's seconds from each stage's seconds per microbatch and each boundary's transfer.
double pipeline_seconds(const std::vector<double>& stage, const std::vector<double>& transfer, int64_t microbatches,
                        compiler::Phase phase);

// A first-order step time of a mapping: per stage, the larger of its FLOPs over the peak and its
// bytes (weights, KV cache) over HBM bandwidth (an MoE's experts: those some token chose under
// uniform routing, on the chips of the group with the most of them), plus its all-reduces on the formulas of the
// algorithms the compiler picks (direct, ring, by torus dimensions, hierarchical), composed by
// pipeline_seconds. Only for ranking mappings, never reported as a result.
double estimate_seconds(const arch::Arch& a, const compiler::ModelConfig& m, const compiler::Workload& w,
                        const Mapping& mapping, double dtype_bytes);

// The mappings to simulate: the system's `system.parallelism` when it fixes one; otherwise every
// tp x pp = chips the model splits over (its heads and features over tp, its layers over pp; an
// MoE's experts over each ep dividing tp and the experts, unless ep is given),
// ranked by estimate and kept while within kSearchSlack of the best, at most kSearchMax. Throws
// when no mapping exists, naming why.
struct Candidate {
  Mapping mapping;
  double estimate = 0;
};
inline constexpr double kSearchSlack = 1.3;
inline constexpr size_t kSearchMax = 8;
std::vector<Candidate> candidate_mappings(const arch::Arch& a, const compiler::ModelConfig& m,
                                          const compiler::Workload& w, double dtype_bytes);

}  // namespace tessera::api
