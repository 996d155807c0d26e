// Row-wise ops on [rows, cols] activations: residual adds and products, activations, SwiGLU,
// RMSNorm, LayerNorm, softmax and rotary embeddings. Rows are dealt to tiles in contiguous
// blocks; a tile brings a chunk of rows into SRAM, computes with the vector unit and writes the
// chunk back. Per-feature parameters (norm weights, RoPE tables) are loaded once per tile.
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

// Rows per tile and per chunk the kernel would use (for notes and tests).
struct RowsPlan {
  int64_t per_tile = 0, chunk = 0, tiles = 0;
};
RowsPlan plan_rows(const arch::Arch& a, const RowsSpec& s, uint64_t sram_budget);

void emit_rows(KernelContext& ctx, const RowsSpec& s, const RowsPlan& p);

}  // namespace tessera::compiler
