// Latency of a MATMUL on the systolic arrays, in closed form (the simulator's timing, and what
// the compiler's planners estimate with). The cycle-by-cycle
// processing-element grid in tests/sim/pe_grid_reference.hpp is the golden reference.
//
// Weight-stationary (ws), R x C array, packing p (MACs per PE per cycle for the dtype):
//   weight tiles are (R*p) x C slices of B, T = ceil(k / (R*p)) * ceil(n / C), walked n-tile
//   by n-tile with k innermost. Loading a tile's weights shifts R rows in from the top
//   (R cycles) into shadow registers while the previous tile streams; streaming a tile feeds
//   the m rows of A in, one per cycle, skewed by row. Partial sums flow down the columns
//   and leave the bottom R rows later, column j another j cycles later.
//     tile j streams from s_j = R + j * max(m, R)
//     latency   = R + (T - 1) * max(m, R) + m + R + C - 2
//     occupancy = T * max(m, R)   (the next MATMUL, started this much later, has its first
//                                  tile streaming R cycles after that: nothing waits)
// Output-stationary (os): outputs are R x C blocks, B = ceil(m / R) * ceil(n / C); A rows
//   enter from the left and B columns from the top, skewed; PE (i, j) does its kk-th MAC at
//   base + i + j + kk for kk < Ks = ceil(k / p). Each PE moves its result to a shadow
//   accumulator after its last MAC; a column drains out of the bottom in R cycles while the
//   next block computes.
//     block b starts at b * max(Ks, R)
//     latency   = (B - 1) * max(Ks, R) + Ks + (R - 1) + (C - 1) + R
//     occupancy = B * max(Ks, R)
// With several arrays per tile, the n-tiles (ws) or output blocks (os) are dealt round robin
// to the arrays, which run in parallel; the MATMUL takes as long as the busiest array.
// Unused rows and columns of a partial tile still pass data, so R and C enter every formula.
#pragma once

#include <cstdint>

#include "arch/arch.hpp"

namespace tessera::arch {

struct ArrayShape {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t count = 1;
  Dataflow dataflow = Dataflow::WeightStationary;
};

struct MatmulTiming {
  int64_t latency = 0;    // cycles from start to the last result written
  int64_t occupancy = 0;  // cycles before the arrays accept the next MATMUL
};

// MACs per PE per cycle of a tile's arrays for the dtype class `cls` ("bf16", "fp8", ...).
int64_t array_pack(const SystolicParams& s, std::string_view cls);
// `pack`: array_pack of the input dtype.
MatmulTiming matmul_timing(const ArrayShape& a, int64_t pack, int64_t m, int64_t k, int64_t n);
// The same for a tile's arrays multiplying the dtype class `cls` ("bf16", "fp8", ...).
MatmulTiming matmul_timing(const SystolicParams& s, std::string_view cls, int64_t m, int64_t k, int64_t n);

}  // namespace tessera::arch
