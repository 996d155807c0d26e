// Mixture-of-experts (Mixtral): sparse routing and the experts.
//
// Routing: each tile runs moe.route on its own copy of a token block's router logits [rows,
// R] (every tile gets the same tables, so the loops they steer run alike on every tile and
// barriers stay matched): softmax, the top k (ties to the lower expert), renormalised. This
// chip's experts (first .. first + experts - 1 of R; expert parallelism gives each chip a
// share) get the tokens routed to them in token order, up to a capacity (all of the block's
// tokens unless a capacity factor is set: Mixtral is dropless); a token's other experts are on
// other chips, whose parts the all-reduce after the op adds.
//
// Few tokens (split-K stream; decode): the experts x inter intermediate columns of this chip
// are dealt to the tiles in contiguous runs. A run whose expert has no token is skipped (ld of
// its count, a loop of 0 or 1 trips): its weights are never read. For a run that runs, a tile
// streams W1/W3 rows (gate and up side by side in one chunk), applies silu(g) * u * w[:, e]
// with the vector unit (w: the token's routing weight, 0 for tokens routed elsewhere: decode
// is bound by the weights, so every token row of the block is computed), and multiplies the
// result at once by its columns of W2, accumulating a partial y [T, H] in fp32 in its SRAM. A
// barrier, then every tile reduces a column slice of y over the tiles' partials (SRAM-to-SRAM
// DMA) and stores it. Where the partials do not fit a tile's SRAM (GPU SMs) but all tiles share
// one memory (L2), two passes instead: h goes to the shared memory, and after a barrier every
// tile computes its output columns over the experts that have tokens. Otherwise tokens are cut
// into blocks (the weights are then read once per block).
//
// Many tokens (GEMM; prefill): tokens are routed in blocks of route_rows. For each expert, its
// tokens are gathered (DMA gather by the dispatch table) mb rows at a time; for each block of
// mb slots that holds tokens (a loop of ceil(count / mb) trips): the multicast GEMM [g | u] =
// x_e [W1_e; W3_e]^T, a rows kernel h = silu(g) * u, the GEMM h W2_e^T into the expert's slot
// rows in HBM. Then every token's output is the weighted sum of its k slot rows, gathered back.
// FLOPs are the routed tokens' (each expert's rounded up to mb); an expert's weights are read
// once per block of mb of its tokens.
#pragma once

#include <cstdint>
#include <string>

#include "compiler/kernels/gemm.hpp"
#include "compiler/kernels/rows.hpp"

namespace tessera::compiler {

struct MoeSpec {
  int64_t t = 0, hidden = 0, inter = 0;
  int64_t experts = 0;  // this chip's
  int64_t routed = 0;   // the experts the router picks among
  int64_t first = 0;    // this chip's first expert among them
  int64_t top_k = 0;
  double capacity_factor = 0.0;  // > 0: an expert takes at most factor x rows x k / routed tokens of a block
  Operand2 x;       // [t, hidden]
  Operand2 logits;  // [t, routed] fp32
  Addr w13;        // [experts * 2 * inter, hidden]: expert e's W1 (gate) rows, then its W3 (up) rows
  Addr w2;         // [experts * hidden, inter]: expert e's W2 (down)
  Dtype wdt = Dtype::Bf16;
  Operand2 y;      // [t, hidden]
};

// Slots per expert of a routed block of `rows` tokens.
int64_t moe_capacity(const MoeSpec& s, int64_t rows);

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
  int64_t route_rows = 0;            // tokens routed at once
  int64_t mb = 0;                    // slot rows of one expert GEMM block
  GemmPlan gate_up, down;
  RowsPlan act;
  int64_t combine_per_tile = 0, combine_chunk = 0;  // token rows a tile combines, rows at a time
  // HBM scratch: x_e [mb, H], [g | u] [mb, 2I], h [mb, I], every expert's slot rows y_e.
  uint64_t scratch_bytes = 0;
  uint64_t scratch = 0;              // its address (memory planning)
};

MoePlan plan_moe(const arch::Arch& a, const MoeSpec& s, uint64_t sram_budget, uint64_t shared_budget, bool gemm);
// Emits the whole op in `ctx` (the op's: its tiles are `half`'s); barriers between its internal
// steps, none after the last.
void emit_moe(KernelContext& ctx, int half, const MoeSpec& s, const MoePlan& p);

// Readable summary of the plan and of the work routing leaves, for `--emit tiled`.
std::string moe_tiles_note(const MoeSpec& s, const MoePlan& p);
std::string moe_flops_note(const MoeSpec& s, const MoePlan& p);

}  // namespace tessera::compiler
