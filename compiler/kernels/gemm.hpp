// C = A x B over every tile of a chip, for matrices too large for one tile.
//
// The tiles form a gr x gc grid; in each pass tile (i, j) computes a bm x bn block of C. K is
// walked in chunks of bk. For every chunk, tile (i, j) loads from HBM only a 1/gc slice of its
// grid row's A block and a 1/gr slice of its grid column's B block, and forwards each slice to
// the other tiles of its row (A) and column (B): every byte of A and B leaves HBM once per pass
// column / pass row. Two buffers alternate: while the arrays multiply chunk c, the next chunk's
// slices are loaded and forwarded. Semaphores order it:
//   data[b]   this tile's buffer b holds a whole chunk (all slices arrived)
//   freeA[b]  every tile of my row is done with buffer b, so my A slice may overwrite it
//   freeB[b]  the same for my column and my B slice
// The last chunk's MATMUL epilogue writes C's dtype; a DMA stores the block.
#pragma once

#include <cstdint>

#include "compiler/kernels/kernel.hpp"

namespace tessera::compiler {

struct GemmSpec {
  int64_t m = 0, k = 0, n = 0;
  Dtype dtype = Dtype::Bf16;  // of A and B
  Dtype out = Dtype::Bf16;    // of C
  Addr a, b, c;               // HBM, row-major; a register base allows per-layer addressing
  int64_t lda = 0, ldb = 0, ldc = 0;  // bytes between rows; 0: packed
  bool b_transposed = false;  // B is given as [n, k] (a Linear weight in PyTorch's layout)
  isa::Act act = isa::Act::None;
  bool has_bias = false;      // C += bias [n] (of bias_dtype) before the activation
  Addr bias;
  Dtype bias_dtype = Dtype::Bf16;
};

// How emit_gemm cuts the problem (exposed for tests and reports).
struct GemmPlan {
  int gr = 1, gc = 1;          // tile grid
  int64_t bm = 0, bn = 0, bk = 0;
  int64_t passes_m = 0, passes_n = 0;
};
GemmPlan plan_gemm(const arch::Arch& arch, const GemmSpec& s, uint64_t sram_budget);

// Emits the GEMM on every tile with the given plan (from plan_gemm with ctx's SRAM budget).
void emit_gemm(KernelContext& ctx, const GemmSpec& s, const GemmPlan& plan);

}  // namespace tessera::compiler
