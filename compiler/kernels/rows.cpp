#include "compiler/kernels/rows.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace tessera::compiler {
namespace {

using isa::Bcast;
using isa::Opcode;


// Inputs read row by row (the rest are loaded whole, once per tile).
bool per_row(const RowsSpec& s, size_t i) {
  switch (s.kind) {
    case OpKind::Add:
    case OpKind::Mul: return !s.in[i].broadcast;
    case OpKind::RmsNorm:
    case OpKind::LayerNorm: return i == 0;
    default: return true;  // Rope: x and the table rows of its tokens' positions
  }
}

int64_t in_cols(const RowsSpec& s, size_t i) {
  if (s.kind == OpKind::SwiGlu) return 2 * s.cols;
  if (s.kind == OpKind::Rope && i > 0) return s.head_dim / 2;  // a table row
  return s.cols;
}

int64_t temp_cols(const RowsSpec& s) { return s.kind == OpKind::Rope ? s.cols / 2 : s.cols; }

}  // namespace

RowsPlan plan_rows(const arch::Arch& a, const RowsSpec& s, uint64_t budget) {
  RowsPlan p;
  p.per_tile = ceil_div(s.rows, a.tiles());
  p.tiles = ceil_div(s.rows, p.per_tile);
  int64_t row = s.cols * esize(s.out.dtype) + 2 * temp_cols(s) * 4 + 16;
  int64_t fixed = 4096;
  for (size_t i = 0; i < s.in.size(); ++i) {
    (per_row(s, i) ? row : fixed) += in_cols(s, i) * esize(s.in[i].dtype);
  }
  if (uint64_t(fixed + row) > budget) {
    throw CompileError(fmt::format("one {}-column row of a {} op does not fit the tile SRAM of {}", s.cols,
                                   op_kind_name(s.kind), a.name));
  }
  p.chunk = std::min(p.per_tile, (int64_t(budget) - fixed) / row);
  return p;
}

void emit_rows(KernelContext& ctx, const RowsSpec& s, const RowsPlan& p) {
  ProgramBuilder& pb = ctx.pb;
  const Dtype od = s.out.dtype;
  const int64_t oe = esize(od);
  // Buffers, the same on every tile.
  std::vector<uint64_t> buf(s.in.size());
  int whole_inputs = 0;
  for (size_t i = 0; i < s.in.size(); ++i) {
    const bool rows = per_row(s, i);
    buf[i] = ctx.sram(uint64_t((rows ? p.chunk : 1) * in_cols(s, i) * esize(s.in[i].dtype)));
    if (!rows) ++whole_inputs;
  }
  const uint64_t out = ctx.sram(uint64_t(p.chunk * s.cols * oe));
  const uint64_t tmp1 = ctx.sram(uint64_t(p.chunk * temp_cols(s) * 4));
  const uint64_t tmp2 = ctx.sram(uint64_t(p.chunk * temp_cols(s) * 4));
  const uint64_t stat = ctx.sram(uint64_t(p.chunk * 4));
  const uint64_t stat2 = ctx.sram(uint64_t(p.chunk * 4));
  const int in_sem = ctx.sem(), whole_sem = ctx.sem(), out_sem = ctx.sem();

  auto ld_of = [&](size_t i) { return in_cols(s, i) * esize(s.in[i].dtype); };  // packed in SRAM
  auto in = [&](size_t i, int64_t col = 0) { return Tensor2{sram(int64_t(buf[i]) + col * esize(s.in[i].dtype)), ld_of(i), s.in[i].dtype}; };
  const Tensor2 o{sram(int64_t(out)), s.cols * oe, od};
  const Tensor2 t1{sram(int64_t(tmp1)), 0, Dtype::Fp32}, t2{sram(int64_t(tmp2)), 0, Dtype::Fp32};
  const Tensor2 st{sram(int64_t(stat)), 0, Dtype::Fp32}, st2{sram(int64_t(stat2)), 0, Dtype::Fp32};
  const float inv_cols = 1.0f / float(s.cols);

  auto compute = [&](int tile, int64_t r) {
    auto e = [&](const Instr& i) { pb.emit(tile, i); };
    switch (s.kind) {
      case OpKind::Add:
      case OpKind::Mul: {
        const Opcode op = s.kind == OpKind::Add ? Opcode::VAdd : Opcode::VMul;
        e(vec_binary(op, o, in(0), in(1), r, s.cols, per_row(s, 1) ? Bcast::None : Bcast::Row));
        break;
      }
      case OpKind::Silu: e(vec_unary(Opcode::VSilu, o, in(0), r, s.cols)); break;
      case OpKind::Gelu: e(vec_unary(Opcode::VGelu, o, in(0), r, s.cols)); break;
      case OpKind::Relu: e(vec_scalar(Opcode::VMax, o, in(0), 0.0f, r, s.cols)); break;
      case OpKind::SwiGlu:
        e(vec_unary(Opcode::VSilu, t1, in(0), r, s.cols));
        e(vec_binary(Opcode::VMul, o, t1, in(0, s.cols), r, s.cols));
        break;
      case OpKind::Softmax:
        e(vec_reduce(Opcode::VRmax, st, in(0), r, s.cols));
        e(vec_binary(Opcode::VSub, t1, in(0), st, r, s.cols, Bcast::Col));
        e(vec_unary(Opcode::VExp, t1, t1, r, s.cols));
        e(vec_reduce(Opcode::VRsum, st, t1, r, s.cols));
        e(vec_unary(Opcode::VRecip, st, st, r, 1));
        e(vec_binary(Opcode::VMul, o, t1, st, r, s.cols, Bcast::Col));
        break;
      case OpKind::RmsNorm:
        e(vec_binary(Opcode::VMul, t1, in(0), in(0), r, s.cols));
        e(vec_reduce(Opcode::VRsum, st, t1, r, s.cols, inv_cols));
        e(vec_scale(st, st, r, 1, 1.0f, float(s.eps)));
        e(vec_unary(Opcode::VRsqrt, st, st, r, 1));
        e(vec_binary(Opcode::VMul, t1, in(0), st, r, s.cols, Bcast::Col));
        e(vec_binary(Opcode::VMul, o, t1, in(1), r, s.cols, Bcast::Row));
        break;
      case OpKind::LayerNorm:
        e(vec_reduce(Opcode::VRsum, st, in(0), r, s.cols, inv_cols));
        e(vec_binary(Opcode::VSub, t1, in(0), st, r, s.cols, Bcast::Col));
        e(vec_binary(Opcode::VMul, t2, t1, t1, r, s.cols));
        e(vec_reduce(Opcode::VRsum, st2, t2, r, s.cols, inv_cols));
        e(vec_scale(st2, st2, r, 1, 1.0f, float(s.eps)));
        e(vec_unary(Opcode::VRsqrt, st2, st2, r, 1));
        e(vec_binary(Opcode::VMul, t1, t1, st2, r, s.cols, Bcast::Col));
        e(vec_binary(Opcode::VMul, t1, t1, in(1), r, s.cols, Bcast::Row));
        e(vec_binary(Opcode::VAdd, o, t1, in(2), r, s.cols, Bcast::Row));
        break;
      case OpKind::Rope: {
        // Each head of each token is a row of head_dim values; x1, x2 its halves.
        const int64_t half = s.head_dim / 2, xe = esize(s.in[0].dtype);
        auto rotate = [&](int64_t token, int64_t count, int64_t table_row) {
          const int64_t rows = count * s.heads;
          const int64_t base_in = int64_t(buf[0]) + token * s.cols * xe, base_out = int64_t(out) + token * s.cols * oe;
          const Tensor2 x1{sram(base_in), s.head_dim * xe, s.in[0].dtype}, x2{sram(base_in + half * xe), s.head_dim * xe, s.in[0].dtype};
          const Tensor2 o1{sram(base_out), s.head_dim * oe, od}, o2{sram(base_out + half * oe), s.head_dim * oe, od};
          const Tensor2 c{sram(int64_t(buf[1]) + table_row * half * 4), 0, Dtype::Fp32};
          const Tensor2 sn{sram(int64_t(buf[2]) + table_row * half * 4), 0, Dtype::Fp32};
          e(vec_binary(Opcode::VMul, t1, x1, c, rows, half, Bcast::Row));
          e(vec_binary(Opcode::VMul, t2, x2, sn, rows, half, Bcast::Row));
          e(vec_binary(Opcode::VSub, o1, t1, t2, rows, half));
          e(vec_binary(Opcode::VMul, t1, x2, c, rows, half, Bcast::Row));
          e(vec_binary(Opcode::VMul, t2, x1, sn, rows, half, Bcast::Row));
          e(vec_binary(Opcode::VAdd, o2, t1, t2, rows, half));
        };
        if (s.seq == 1) {
          rotate(0, r, 0);  // every token is at the same position: one table row
        } else {
          for (int64_t i = 0; i < r; ++i) rotate(i, 1, i);  // the chunk's rows of the tables
        }
        break;
      }
      default: throw CompileError(fmt::format("no row kernel for {}", op_kind_name(s.kind)));
    }
  };

  for (int t = 0; t < p.tiles; ++t) {
    const int64_t r0 = t * p.per_tile, r1 = std::min(s.rows, r0 + p.per_tile);
    for (size_t i = 0; i < s.in.size(); ++i) {
      if (per_row(s, i)) continue;
      Block whole;
      whole.d0 = in_cols(s, i);
      pb.emit(t, dma(sram(int64_t(buf[i])), s.in[i].addr, whole, s.in[i].dtype, Dtype::None, {whole_sem, int64_t(isa::kTileSelf)}));
    }
    int64_t chunks = 0;
    for (int64_t a = r0; a < r1; a += p.chunk, ++chunks) {
      const int64_t r = std::min(p.chunk, r1 - a);
      int loads = 0;
      // Rows [first, first + n) of input i into its buffer from row `at` on.
      auto load = [&](size_t i, int64_t first, int64_t n, int64_t at) {
        const int64_t e = esize(s.in[i].dtype), cols = in_cols(s, i);
        Block rows;
        rows.d0 = cols, rows.d1 = n;
        rows.src_strides = {s.in[i].ld ? s.in[i].ld : cols * e, 0, 0};
        rows.dst_strides = {cols * e, 0, 0};
        const Addr src = advance(s.in[i].addr, first * rows.src_strides[0]);
        pb.emit(t, dma(sram(int64_t(buf[i]) + at * cols * e), src, rows, s.in[i].dtype, Dtype::None,
                       {in_sem, int64_t(isa::kTileSelf)}));
        ++loads;
      };
      for (size_t i = 0; i < s.in.size(); ++i) {
        if (!per_row(s, i)) continue;
        if (s.kind != OpKind::Rope || i == 0) {
          load(i, a, r, 0);
        } else if (s.seq == 1) {
          load(i, 0, 1, 0);
        } else {  // token a + j sits at position (a + j) % seq: runs that wrap at sequence ends
          for (int64_t j = 0; j < r;) {
            const int64_t pos = (a + j) % s.seq, n = std::min(r - j, s.seq - pos);
            load(i, pos, n, j);
            j += n;
          }
        }
      }
      pb.emit(t, sem_wait(in_sem, loads));
      if (a == r0 && whole_inputs > 0) pb.emit(t, sem_wait(whole_sem, whole_inputs));
      compute(t, r);
      Block rows;
      rows.d0 = s.cols, rows.d1 = r;
      rows.src_strides = {s.cols * oe, 0, 0};
      rows.dst_strides = {s.out.ld ? s.out.ld : s.cols * oe, 0, 0};
      const Addr dst = advance(s.out.addr, a * rows.dst_strides[0]);
      pb.emit(t, dma(dst, sram(int64_t(out)), rows, od, Dtype::None, {out_sem, int64_t(isa::kTileSelf)}));
    }
    if (chunks > 0) pb.emit(t, sem_wait(out_sem, chunks));
  }
}

}  // namespace tessera::compiler
