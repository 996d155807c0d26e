// Row-wise ops on [rows, cols] activations: residual adds and products, activations, SwiGLU,
// RMSNorm, LayerNorm, softmax and rotary embeddings. Rows are dealt to tiles in contiguous
// blocks (and, for element-wise ops with fewer rows than tiles, columns too); a tile brings a
// chunk of rows into SRAM, computes with the vector unit and writes the chunk back, loading the
// next chunk while it computes. Per-feature parameters (norm weights, a broadcast row, decode's
// RoPE table row) are loaded once per tile.
//
// A tile with many chunks (long prefills) takes them in rounds, a barrier between rounds; a
// sampled run simulates the first two and the last two (KernelContext::sample_rounds).
//
// Rows too wide for the SRAM are cut into column blocks. Element-wise ops treat each block on
// its own. Norms and softmax walk a row's blocks twice: the first pass accumulates the row's
// statistics (sum and sum of squares; softmax's running max m and sum l, rescaled by exp(m - m')
// as the max grows), the second normalises each block and stores it.
#pragma once

#include <cstdint>
#include <vector>

#include "compiler/graph.hpp"
#include "compiler/kernels/kernel.hpp"

namespace tessera::compiler {

struct Operand2 {
  Addr addr;
  int64_t ld = 0;  // bytes between rows; 0: packed
  Dtype dtype = Dtype::Bf16;
  bool broadcast = false;  // one row used for every row (Add/Mul's second input)
};

struct RowsSpec {
  OpKind kind = OpKind::Add;
  int64_t rows = 0, cols = 0;  // of the output
  // Inputs in the op's order. Add/Mul: a second input of one row is broadcast over the rows.
  // RmsNorm (x, w), LayerNorm (x, w, b), Rope (x, cos, sin), SwiGlu (gate_up [rows, 2 * cols]).
  std::vector<Operand2> in;
  Operand2 out;
  double eps = 0;
  int64_t heads = 0, head_dim = 0, seq = 1;  // Rope: token t uses table row t % seq
};

// How the rows kernel cuts an op (also the layout of the MoE row kernels, which use only the
// row fields).
struct RowsPlan {
  int64_t per_tile = 0, chunk = 0, tiles = 0;  // rows per tile, rows per chunk, tiles used
  int64_t col_tiles = 1;   // tiles that share a row range, each with its own column range
  int64_t cb = 0;          // columns per block (0: whole rows)
  int64_t buffers = 1;     // 2: the next block loads while this one computes
  bool two_pass = false;   // norms and softmax over several column blocks
  // > 0: a tile's chunks go in rounds of this many, with a barrier between rounds, so that a
  // sampled run can simulate a few of them (KernelContext::sample_rounds): long prefills.
  int64_t round_chunks = 0;
};
RowsPlan plan_rows(const arch::Arch& a, const RowsSpec& s, uint64_t sram_budget);
// Rounds for a rows op of many chunks a tile (20 or more): up to 16 rounds of at least 4
// chunks. Only where the op is a kernel of its own (its rounds are the op's).
int64_t rows_round_chunks(const RowsPlan& p);

void emit_rows(KernelContext& ctx, const RowsSpec& s, const RowsPlan& p);

}  // namespace tessera::compiler
