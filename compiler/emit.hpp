// Typed constructors for instructions, so code generation reads like the assembly it emits.
// Field indices come from the ISA table at compile time.
#pragma once

#include <array>
#include <cstdint>

#include "isa/instr.hpp"

namespace tessera::compiler {

using isa::Dtype;
using isa::Instr;
using isa::Opcode;
using isa::Space;

// An address operand: space, owning tile (SRAM), base register and offset.
struct Addr {
  Space space = Space::Sram;
  int64_t tile = int64_t(isa::kTileSelf);
  uint8_t reg = 0;
  int64_t offset = 0;
};
inline Addr hbm(int64_t offset, uint8_t reg = 0) { return {Space::Hbm, int64_t(isa::kTileSelf), reg, offset}; }
inline Addr sram(int64_t offset, uint8_t reg = 0) { return {Space::Sram, int64_t(isa::kTileSelf), reg, offset}; }
inline Addr sram_of(int64_t tile, int64_t offset) { return {Space::Sram, tile, 0, offset}; }
// The operand `bytes` past `base` (same space, tile and base register).
inline Addr advance(Addr base, int64_t bytes) {
  base.offset += bytes;
  return base;
}
inline Addr shared(int64_t offset, uint8_t reg = 0) { return {Space::Shared, int64_t(isa::kTileSelf), reg, offset}; }

// A DMA's block shape (innermost d0 elements) and byte strides of dims 1..3 on each side.
struct Block {
  int64_t d0 = 1, d1 = 1, d2 = 1, d3 = 1;
  std::array<int64_t, 3> src_strides{};
  std::array<int64_t, 3> dst_strides{};
};

struct Signal {
  int64_t sem = int64_t(isa::kSemNone);
  int64_t tile = int64_t(isa::kTileSelf);
};

Instr dma(Addr dst, Addr src, const Block& b, Dtype sdt, Dtype ddt = Dtype::None, Signal done = {},
          bool transpose = false);

struct MatmulOperands {
  Addr acc, a, b;
  int64_t m = 1, k = 1, n = 1;
  int64_t lda = 0, ldb = 0, ldc = 0;
  Dtype dtype = Dtype::Bf16;
  bool accumulate = false;
  bool tb = false;
  Addr a_scales{}, b_scales{};
  Addr out{};
  int64_t ldo = 0;
  Dtype odt = Dtype::None;
  Addr bias{};
  bool has_bias = false;
  isa::Act act = isa::Act::None;
};
Instr matmul(const MatmulOperands& m);

// A rows x cols operand of a vector instruction.
struct Tensor2 {
  Addr addr;
  int64_t ld = 0;  // byte stride between rows; 0: packed
  Dtype dtype = Dtype::Fp32;
};

// dst = op(src0, src1) for vec.add/sub/mul/max; src1 read per `bcast`.
Instr vec_binary(Opcode op, Tensor2 dst, Tensor2 src0, Tensor2 src1, int64_t rows, int64_t cols,
                 isa::Bcast bcast = isa::Bcast::None);
Instr vec_scalar(Opcode op, Tensor2 dst, Tensor2 src0, float value, int64_t rows, int64_t cols);
Instr vec_unary(Opcode op, Tensor2 dst, Tensor2 src0, int64_t rows, int64_t cols);
Instr vec_scale(Tensor2 dst, Tensor2 src0, int64_t rows, int64_t cols, float scale, float shift);
Instr vec_reduce(Opcode op, Tensor2 dst, Tensor2 src0, int64_t rows, int64_t cols, float scale = 1.0f);
Instr vec_fill(Tensor2 dst, int64_t rows, int64_t cols, float value);
Instr vec_mask(Tensor2 dst, Tensor2 src0, int64_t rows, int64_t cols, int64_t diag, float value);

// The tables of one moe.route (all in the issuing tile's SRAM; see the ISA reference).
struct RouteOperands {
  Addr weights, logits;  // [rows, experts] fp32: the kept weights (in place over the logits is fine)
  int64_t rows = 1, experts = 1, top_k = 1;
  bool renormalise = true;
  int64_t first = 0, local = 0;  // experts dispatched here: first.. first + local - 1 (0: all)
  int64_t capacity = 1, block = 1;  // counts are of blocks of `block` slots
  Addr counts, dispatch, combine, combine_weights;
};
Instr moe_route(const RouteOperands& r);
// `rows` rows of d0 elements: row i from source row idx[i] (of `source_rows`, src_stride apart).
Instr gather(Addr dst, int64_t dst_stride, Addr src, int64_t src_stride, int64_t source_rows, Addr idx,
             int64_t rows, int64_t d0, Dtype sdt, Dtype ddt, Signal done);
// rd = the int32 at addr (own SRAM), clamped to 0..max.
Instr ld(uint8_t rd, Addr addr, int64_t max);

Instr sem_signal(int64_t tile, int64_t sem, int64_t count = 1, isa::After after = isa::After::All);
// `bytes` from src to chip `peer` (its recv of the same tag); `sem` (own) when they have left.
Instr send(Addr src, int64_t bytes, int64_t peer, int64_t tag, int64_t sem = int64_t(isa::kSemNone));
// `bytes` from chip `peer` (its send of the same tag) into dst; `sem` (own) when they are written.
Instr recv(Addr dst, int64_t bytes, int64_t peer, int64_t tag, int64_t sem = int64_t(isa::kSemNone));
Instr sem_wait(int64_t sem, int64_t count = 1);
Instr barrier(int64_t id, int64_t count, bool kernel = false);
Instr loop(int64_t count, uint8_t reg = 0);
Instr end_loop();
Instr li(uint8_t rd, int64_t value);
Instr addi(uint8_t rd, uint8_t rs, int64_t value);
Instr nop(int64_t cycles);
// The following work belongs to region `id` (a new instance of it, or with `resume` the
// tile's current one).
Instr mark(int64_t id, bool resume = false);
Instr halt();

}  // namespace tessera::compiler
