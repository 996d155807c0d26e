// Mixture-of-experts (Mixtral): the router and the experts.
//
// Router (rows kernel, token rows over tiles): routing weights from the gate logits [T, E]:
//   z = l - max(l);  p = exp(z)
//   top-k mask: the k-th largest z of the row is found by k-1 rounds of "row max, push the
//   maxima to -1e30", then ind = step(z - kth) with step(d) = clamp(d * 1e30 + 1, 0, 1)
//   (vec.scale and vec.max only; exact for distinct fp32 values: any d < 0 gives 0)
//   w = p * ind / sum(p * ind)
// which is Hugging Face's softmax -> top-k -> renormalise (the softmax denominator cancels).
// Ties at the k-th value select every tied expert (Hugging Face picks the lowest index).
//
// Experts: y[t] = sum over e of w[t, e] * W2_e (silu(W1_e x_t) * (W3_e x_t)), computed densely:
// every token runs every expert, and unselected experts get weight 0. Exact, but E / k times
// the FLOPs of top-k routing; decode is bound by reading the weights, which top-k routing also
// reads in full once batch x k >= E.
//  - Few tokens (split-K stream): the E x I intermediate columns of all experts are dealt to
//    the tiles in contiguous runs. For its run, a tile streams W1/W3 rows (gate and up side by
//    side in one chunk), applies silu(g) * u * w[:, e] with the vector unit, and multiplies the
//    result at once by its columns of W2, accumulating a partial y [T, H] in fp32 in its SRAM
//    across all its experts. No intermediate leaves the tile. A barrier, then every tile reduces
//    a column slice of y over the tiles' partials (SRAM-to-SRAM DMA) and stores it.
//    Where the partials do not fit a tile's SRAM (GPU SMs) but all tiles share one memory (L2),
//    two passes instead: h goes to the shared memory, and after a barrier every tile computes
//    its output columns over all experts from it. Otherwise tokens are cut into blocks (the
//    weights are then read once per block).
//  - Many tokens (GEMM): per expert, the multicast GEMM computes [g | u] = x [W1_e; W3_e]^T,
//    a rows kernel h = silu(g) * u * w[:, e], the GEMM h W2_e^T, and a rows kernel adds it to y.
//    Intermediates go through an HBM scratch area planned by the memory pass.
#pragma once

#include <cstdint>
#include <string>

#include "compiler/kernels/gemm.hpp"
#include "compiler/kernels/rows.hpp"

namespace tessera::compiler {

struct RouterSpec {
  int64_t rows = 0, experts = 0, top_k = 0;
  Operand2 logits;  // [rows, experts]
  Operand2 out;     // [rows, experts]: routing weights, 0 outside the top k
};
RowsPlan plan_router(const arch::Arch& a, const RouterSpec& s, uint64_t sram_budget);
void emit_router(KernelContext& ctx, const RouterSpec& s, const RowsPlan& p);

struct MoeSpec {
  int64_t t = 0, hidden = 0, inter = 0, experts = 0, top_k = 0;
  Operand2 x;      // [t, hidden]
  Operand2 route;  // [t, experts] routing weights
  Addr w13;        // [experts * 2 * inter, hidden]: expert e's W1 (gate) rows, then its W3 (up) rows
  Addr w2;         // [experts * hidden, inter]: expert e's W2 (down)
  Dtype wdt = Dtype::Bf16;
  Operand2 y;      // [t, hidden]
};

struct MoePlan {
  bool gemm = false;  // many tokens: per-expert GEMMs
  // Split-K stream.
  int64_t tb = 0, blocks = 0;        // tokens per block, token blocks
  int64_t per_tile = 0, tiles = 0;   // intermediate columns (of experts x inter) per tile; tiles with some
  int64_t cb = 0, k_chunk = 0;       // gate/up chunks: cb columns of W1 and of W3 by k_chunk of hidden
  int64_t hrows = 0, kd = 0;         // down chunks: hrows rows of W2 by kd intermediate columns
  int64_t seg = 0;                   // longest run of one expert's columns on a tile
  int64_t buffers = 3;
  int64_t out_cols = 0;              // reduction (two passes: pass two): output columns per tile
  // Two passes (the [T, H] partials do not fit, one shared memory for all tiles): pass one writes
  // h [T, E*I] to the shared memory; pass two streams W2 for each tile's output columns, in
  // chunks of kd2 intermediate columns with the matching slices of h.
  bool two_pass = false;
  int64_t kd2 = 0;
  // GEMM.
  GemmPlan gate_up, down;
  RowsPlan act, add;
  uint64_t scratch_bytes = 0;        // HBM scratch: [g | u] [t, 2I], h [t, I], one expert's y [t, H]
  uint64_t scratch = 0;              // its address (memory planning)
};

MoePlan plan_moe(const arch::Arch& a, const MoeSpec& s, uint64_t sram_budget, uint64_t shared_budget, bool gemm);
// Emits the whole op in `ctx` (the op's: its tiles are `half`'s); barriers between its internal
// steps, none after the last.
void emit_moe(KernelContext& ctx, int half, const MoeSpec& s, const MoePlan& p);

// Readable summary of the plan and of the cost of dense routing, for `--emit tiled`.
std::string moe_tiles_note(const MoeSpec& s, const MoePlan& p);
std::string moe_flops_note(const MoeSpec& s, const MoePlan& p);

}  // namespace tessera::compiler
