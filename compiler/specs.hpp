// The kernel specification of each op, from its values' shapes, dtypes and placements. tile()
// plans with them (addresses do not matter then); codegen() emits with them.
#pragma once

#include <cstdint>

#include "compiler/kernels/attention.hpp"
#include "compiler/kernels/gemm.hpp"
#include "compiler/kernels/moe.hpp"
#include "compiler/kernels/rows.hpp"
#include "compiler/kernels/stream.hpp"
#include "compiler/lowering.hpp"

namespace tessera::compiler {

// Base registers of per-layer addresses inside the layer loop (0: absolute).
struct LayerRegs {
  uint8_t weights = 0;
  uint8_t kv = 0;
};

Operand2 operand(const Lowering& l, int value, LayerRegs regs = {});
GemmSpec gemm_spec(const Lowering& l, const Op& op, LayerRegs regs = {});
StreamSpec stream_spec(const Lowering& l, const Op& op, LayerRegs regs = {});
RowsSpec rows_spec(const Lowering& l, const Op& op, LayerRegs regs = {});
AttentionSpec attention_spec(const Lowering& l, const Op& op, LayerRegs regs = {});
MoeSpec moe_spec(const Lowering& l, const Op& op, LayerRegs regs = {});

}  // namespace tessera::compiler
