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
//
// Through shared memory (chips whose shared memory is chip-wide, like a GPU's L2): K is cut
// into panels that fit the shared memory twice. All tiles stage a pass's panel of A rows and
// B columns from HBM into shared memory together and meet at a barrier; each then loads its own
// blocks of the panel chunk by chunk (two or three SRAM buffers) while the next panel is staged.
// A tile's chunk loads run ahead into the next panel once that one is staged, so the arrays do
// not drain at panel and pass boundaries. So A and B leave HBM once per pass column / pass row,
// and the tiles reuse them from shared memory, as GPU GEMMs reuse data through L2. The grid is
// the one whose estimated time (staged_cost) is least, block padding on the arrays included.
#pragma once

#include <cstdint>

#include "compiler/kernels/kernel.hpp"

namespace tessera::compiler {

struct GemmSpec {
  int64_t m = 0, k = 0, n = 0;
  Dtype dtype = Dtype::Bf16;  // of B, and of A in SRAM (the arrays' input dtype)
  Dtype a_dtype = Dtype::None;  // A's dtype in HBM when it differs (converted as it is loaded)
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
  int64_t panel = 0;           // > 0: through shared memory, K in panels of this many
  int64_t buffers = 2;         // SRAM chunk buffers (through shared memory: 3 when they fit)
  bool b_direct = false;       // through shared memory: B straight from HBM (no reuse to gain)
  bool a_resident = false;     // through shared memory: A rows kept across a pass row's passes
};
// `shared_budget` > 0 lets the GEMM stage panels in a chip-wide shared memory of that size.
GemmPlan plan_gemm(const arch::Arch& arch, const GemmSpec& s, uint64_t sram_budget, uint64_t shared_budget = 0);

// The estimated time of a plan through shared memory (panel > 0), that of the slowest of: HBM
// traffic (A once per pass column unless resident, B once per pass row), shared-memory traffic
// (what is staged, and every working tile's blocks over all of K in every pass) and a tile's
// arrays over its blocks (padding included). plan_gemm takes the grid costing least.
double staged_cost(const arch::Arch& a, const GemmSpec& s, const GemmPlan& p);

// Emits the GEMM on every tile with the given plan (from plan_gemm with ctx's SRAM budget).
void emit_gemm(KernelContext& ctx, const GemmSpec& s, const GemmPlan& plan);

}  // namespace tessera::compiler
