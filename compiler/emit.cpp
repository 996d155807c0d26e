#include "compiler/emit.hpp"

namespace tessera::compiler {
namespace {

void set_addr(Instr& in, int field, const Addr& a) {
  in.f[size_t(field)] = a.offset;
  in.base[size_t(field)] = a.reg;
}

}  // namespace

Instr dma(Addr dst, Addr src, const Block& b, Dtype sdt, Dtype ddt, Signal done, bool transpose) {
  constexpr Opcode D = Opcode::Dma;
  Instr in = Instr::make(D);
  set_addr(in, isa::field_index(D, "dst"), dst);
  set_addr(in, isa::field_index(D, "src"), src);
  in.f[isa::field_index(D, "dst_space")] = int64_t(dst.space);
  in.f[isa::field_index(D, "dst_tile")] = dst.tile;
  in.f[isa::field_index(D, "src_space")] = int64_t(src.space);
  in.f[isa::field_index(D, "src_tile")] = src.tile;
  in.f[isa::field_index(D, "d0")] = b.d0;
  in.f[isa::field_index(D, "d1")] = b.d1;
  in.f[isa::field_index(D, "d2")] = b.d2;
  in.f[isa::field_index(D, "d3")] = b.d3;
  for (int i = 0; i < 3; ++i) {
    in.f[size_t(isa::field_index(D, "ss1") + i)] = b.src_strides[size_t(i)];
    in.f[size_t(isa::field_index(D, "ds1") + i)] = b.dst_strides[size_t(i)];
  }
  in.f[isa::field_index(D, "sdt")] = int64_t(sdt);
  in.f[isa::field_index(D, "ddt")] = ddt == sdt ? int64_t(Dtype::None) : int64_t(ddt);
  in.f[isa::field_index(D, "transpose")] = transpose ? 1 : 0;
  in.f[isa::field_index(D, "sem")] = done.sem;
  in.f[isa::field_index(D, "sem_tile")] = done.tile;
  return in;
}

Instr matmul(const MatmulOperands& m) {
  constexpr Opcode M = Opcode::Matmul;
  Instr in = Instr::make(M);
  set_addr(in, isa::field_index(M, "acc"), m.acc);
  set_addr(in, isa::field_index(M, "a"), m.a);
  set_addr(in, isa::field_index(M, "b"), m.b);
  in.f[isa::field_index(M, "m")] = m.m;
  in.f[isa::field_index(M, "k")] = m.k;
  in.f[isa::field_index(M, "n")] = m.n;
  in.f[isa::field_index(M, "lda")] = m.lda;
  in.f[isa::field_index(M, "ldb")] = m.ldb;
  in.f[isa::field_index(M, "ldc")] = m.ldc;
  in.f[isa::field_index(M, "dtype")] = int64_t(m.dtype);
  in.f[isa::field_index(M, "accumulate")] = m.accumulate;
  in.f[isa::field_index(M, "tb")] = m.tb;
  set_addr(in, isa::field_index(M, "as"), m.a_scales);
  set_addr(in, isa::field_index(M, "bs"), m.b_scales);
  set_addr(in, isa::field_index(M, "out"), m.out);
  in.f[isa::field_index(M, "ldo")] = m.ldo;
  in.f[isa::field_index(M, "odt")] = int64_t(m.odt);
  set_addr(in, isa::field_index(M, "bias"), m.bias);
  in.f[isa::field_index(M, "has_bias")] = m.has_bias;
  in.f[isa::field_index(M, "act")] = int64_t(m.act);
  return in;
}

namespace {
// Fields every vector instruction has, at the same indices (checked in isa/operands.cpp).
constexpr int kDst = isa::field_index(Opcode::VAdd, "dst"), kRows = isa::field_index(Opcode::VAdd, "rows");
constexpr int kCols = isa::field_index(Opcode::VAdd, "cols"), kLdd = isa::field_index(Opcode::VAdd, "ldd");
constexpr int kDdt = isa::field_index(Opcode::VAdd, "ddt"), kSrc0 = isa::field_index(Opcode::VAdd, "src0");
constexpr int kLds0 = isa::field_index(Opcode::VAdd, "lds0"), kS0dt = isa::field_index(Opcode::VAdd, "s0dt");

Instr vector_base(Opcode op, const Tensor2& dst, int64_t rows, int64_t cols) {
  Instr in = Instr::make(op);
  set_addr(in, kDst, dst.addr);
  in.f[kRows] = rows;
  in.f[kCols] = cols;
  in.f[kLdd] = dst.ld;
  in.f[kDdt] = int64_t(dst.dtype);
  return in;
}

void set_src0(Instr& in, const Tensor2& s) {
  set_addr(in, kSrc0, s.addr);
  in.f[kLds0] = s.ld;
  in.f[kS0dt] = int64_t(s.dtype);
}
}  // namespace

Instr vec_binary(Opcode op, Tensor2 dst, Tensor2 src0, Tensor2 src1, int64_t rows, int64_t cols, isa::Bcast bcast) {
  Instr in = vector_base(op, dst, rows, cols);
  set_src0(in, src0);
  set_addr(in, isa::field_index(Opcode::VAdd, "src1"), src1.addr);
  in.f[isa::field_index(Opcode::VAdd, "lds1")] = src1.ld;
  in.f[isa::field_index(Opcode::VAdd, "s1dt")] = int64_t(src1.dtype);
  in.f[isa::field_index(Opcode::VAdd, "bcast")] = int64_t(bcast);
  return in;
}

Instr vec_scalar(Opcode op, Tensor2 dst, Tensor2 src0, float value, int64_t rows, int64_t cols) {
  Instr in = vector_base(op, dst, rows, cols);
  set_src0(in, src0);
  in.f[isa::field_index(Opcode::VAdd, "bcast")] = int64_t(isa::Bcast::Scalar);
  in.set_f32(isa::field_index(Opcode::VAdd, "imm"), value);
  return in;
}

Instr vec_unary(Opcode op, Tensor2 dst, Tensor2 src0, int64_t rows, int64_t cols) {
  Instr in = vector_base(op, dst, rows, cols);
  set_src0(in, src0);
  return in;
}

Instr vec_scale(Tensor2 dst, Tensor2 src0, int64_t rows, int64_t cols, float scale, float shift) {
  Instr in = vector_base(Opcode::VScale, dst, rows, cols);
  set_src0(in, src0);
  in.set_f32(isa::field_index(Opcode::VScale, "scale"), scale);
  in.set_f32(isa::field_index(Opcode::VScale, "shift"), shift);
  return in;
}

Instr vec_reduce(Opcode op, Tensor2 dst, Tensor2 src0, int64_t rows, int64_t cols, float scale) {
  Instr in = vector_base(op, dst, rows, cols);
  set_src0(in, src0);
  in.set_f32(isa::field_index(Opcode::VRsum, "scale"), scale);
  return in;
}

Instr vec_fill(Tensor2 dst, int64_t rows, int64_t cols, float value) {
  Instr in = vector_base(Opcode::VFill, dst, rows, cols);
  in.set_f32(isa::field_index(Opcode::VFill, "value"), value);
  return in;
}

Instr vec_mask(Tensor2 dst, Tensor2 src0, int64_t rows, int64_t cols, int64_t diag, float value) {
  Instr in = vector_base(Opcode::VMask, dst, rows, cols);
  set_src0(in, src0);
  in.f[isa::field_index(Opcode::VMask, "diag")] = diag;
  in.set_f32(isa::field_index(Opcode::VMask, "value"), value);
  return in;
}

Instr moe_route(const RouteOperands& r) {
  constexpr Opcode R = Opcode::MoeRoute;
  Instr in = vector_base(R, {r.weights, 0, Dtype::Fp32}, r.rows, r.experts);
  set_src0(in, {r.logits, 0, Dtype::Fp32});
  in.f[isa::field_index(R, "k")] = r.top_k;
  in.f[isa::field_index(R, "renorm")] = r.renormalise;
  in.f[isa::field_index(R, "e0")] = r.first;
  in.f[isa::field_index(R, "ne")] = r.local;
  in.f[isa::field_index(R, "cap")] = r.capacity;
  in.f[isa::field_index(R, "block")] = r.block;
  set_addr(in, isa::field_index(R, "cnt"), r.counts);
  set_addr(in, isa::field_index(R, "disp"), r.dispatch);
  set_addr(in, isa::field_index(R, "comb"), r.combine);
  set_addr(in, isa::field_index(R, "cw"), r.combine_weights);
  return in;
}

Instr gather(Addr dst, int64_t dst_stride, Addr src, int64_t src_stride, int64_t source_rows, Addr idx,
             int64_t rows, int64_t d0, Dtype sdt, Dtype ddt, Signal done) {
  Block b;
  b.d0 = d0, b.d1 = rows, b.src_strides = {src_stride, 0, 0}, b.dst_strides = {dst_stride, 0, 0};
  Instr in = dma(dst, src, b, sdt, ddt, done);
  in.f[isa::field_index(Opcode::Dma, "gather")] = source_rows;
  set_addr(in, isa::field_index(Opcode::Dma, "idx"), idx);
  return in;
}

Instr ld(uint8_t rd, Addr addr, int64_t max) {
  Instr in = Instr::make(Opcode::Ld);
  in.f[0] = rd;
  set_addr(in, 1, addr);
  in.f[2] = max;
  return in;
}

Instr sem_signal(int64_t tile, int64_t sem, int64_t count, isa::After after) {
  Instr in = Instr::make(Opcode::SemSignal);
  in.f[isa::field_index(Opcode::SemSignal, "tile")] = tile;
  in.f[isa::field_index(Opcode::SemSignal, "sem")] = sem;
  in.f[isa::field_index(Opcode::SemSignal, "count")] = count;
  in.f[isa::field_index(Opcode::SemSignal, "after")] = int64_t(after);
  return in;
}

Instr sem_wait(int64_t sem, int64_t count) {
  Instr in = Instr::make(Opcode::SemWait);
  in.f[0] = sem;
  in.f[1] = count;
  return in;
}

namespace {

// send and recv share their fields but for which end the address is.
template <Opcode Op>
Instr comm(Addr a, int64_t bytes, int64_t peer, int64_t tag, int64_t sem) {
  constexpr bool out = Op == Opcode::Send;
  Instr in = Instr::make(Op);
  set_addr(in, isa::field_index(Op, out ? "src" : "dst"), a);
  in.f[isa::field_index(Op, out ? "src_space" : "dst_space")] = int64_t(a.space);
  in.f[isa::field_index(Op, "bytes")] = bytes;
  in.f[isa::field_index(Op, "peer")] = peer;
  in.f[isa::field_index(Op, "tag")] = tag;
  in.f[isa::field_index(Op, "sem")] = sem;
  return in;
}

}  // namespace

Instr send(Addr src, int64_t bytes, int64_t peer, int64_t tag, int64_t sem) {
  return comm<Opcode::Send>(src, bytes, peer, tag, sem);
}

Instr recv(Addr dst, int64_t bytes, int64_t peer, int64_t tag, int64_t sem) {
  return comm<Opcode::Recv>(dst, bytes, peer, tag, sem);
}

Instr barrier(int64_t id, int64_t count, bool kernel) {
  Instr in = Instr::make(Opcode::Barrier);
  in.f[0] = id;
  in.f[1] = count;
  in.f[isa::field_index(Opcode::Barrier, "kernel")] = kernel ? 1 : 0;
  return in;
}

Instr loop(int64_t count, uint8_t reg) {
  Instr in = Instr::make(Opcode::Loop);
  in.f[0] = count;
  in.base[0] = reg;
  return in;
}

Instr end_loop() { return Instr::make(Opcode::EndLoop); }

Instr li(uint8_t rd, int64_t value) {
  Instr in = Instr::make(Opcode::Li);
  in.f[0] = rd;
  in.f[1] = value;
  return in;
}

Instr addi(uint8_t rd, uint8_t rs, int64_t value) {
  Instr in = Instr::make(Opcode::Addi);
  in.f[0] = rd;
  in.f[1] = rs;
  in.f[2] = value;
  return in;
}

Instr nop(int64_t cycles) {
  Instr in = Instr::make(Opcode::Nop);
  in.f[0] = cycles;
  return in;
}

Instr mark(int64_t id, bool resume) {
  Instr in = Instr::make(Opcode::Mark);
  in.f[isa::field_index(Opcode::Mark, "id")] = id;
  in.f[isa::field_index(Opcode::Mark, "resume")] = resume ? 1 : 0;
  return in;
}

Instr halt() { return Instr::make(Opcode::Halt); }

}  // namespace tessera::compiler
