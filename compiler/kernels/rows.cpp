#include "compiler/kernels/rows.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace tessera::compiler {
namespace {

using isa::Bcast;
using isa::Opcode;

bool reducing(OpKind k) { return k == OpKind::RmsNorm || k == OpKind::LayerNorm || k == OpKind::Softmax; }
bool elementwise(OpKind k) { return !reducing(k) && k != OpKind::Rope; }

// Inputs read row by row (the rest are loaded whole, once per tile).
bool per_row(const RowsSpec& s, size_t i) {
  switch (s.kind) {
    case OpKind::Add:
    case OpKind::Mul: return !s.in[i].broadcast;
    case OpKind::RmsNorm:
    case OpKind::LayerNorm: return i == 0;
    case OpKind::Rope: return i == 0 || s.seq > 1;  // decode: every token at one position
    default: return true;
  }
}

// Elements of input i's buffer row for a block of w output columns.
int64_t in_cols(const RowsSpec& s, size_t i, int64_t w) {
  if (s.kind == OpKind::SwiGlu) return 2 * w;
  if (s.kind == OpKind::Rope && i > 0) return s.head_dim / 2;  // a table row
  return w;
}

// fp32 temporaries, each [rows, temp_cols].
int temps(OpKind k) {
  switch (k) {
    case OpKind::LayerNorm:
    case OpKind::Rope: return 2;
    case OpKind::RmsNorm:
    case OpKind::Softmax:
    case OpKind::SwiGlu: return 1;
    default: return 0;
  }
}
int64_t temp_cols(const RowsSpec& s, int64_t w) { return s.kind == OpKind::Rope ? w / 2 : w; }

constexpr int64_t kStatBytes = 4 * 4;  // four fp32 statistics per row

// SRAM bytes per row of a chunk, for blocks of w columns.
int64_t row_bytes(const RowsSpec& s, int64_t w, int64_t buffers) {
  int64_t set = w * esize(s.out.dtype);
  for (size_t i = 0; i < s.in.size(); ++i) {
    if (per_row(s, i)) set += in_cols(s, i, w) * esize(s.in[i].dtype);
  }
  return buffers * set + temps(s.kind) * temp_cols(s, w) * 4 + kStatBytes;
}

// SRAM bytes of the inputs loaded whole, for a tile's range of w columns.
int64_t whole_bytes(const RowsSpec& s, int64_t w) {
  int64_t n = 4096;
  for (size_t i = 0; i < s.in.size(); ++i) {
    if (!per_row(s, i)) n += in_cols(s, i, w) * esize(s.in[i].dtype);
  }
  return n;
}

// Columns of each tile's range when `col_tiles` tiles share the rows (multiples of 64).
int64_t cols_per_tile(const RowsSpec& s, int64_t col_tiles) {
  return col_tiles > 1 ? ceil_div(ceil_div(s.cols, col_tiles), 64) * 64 : s.cols;
}

}  // namespace

RowsPlan plan_rows(const arch::Arch& a, const RowsSpec& s, uint64_t budget) {
  RowsPlan p;
  const int64_t tiles = a.tiles();
  // Element-wise ops on fewer rows than tiles spread columns over the idle tiles too.
  if (elementwise(s.kind) && s.rows < tiles) {
    const int64_t split = std::clamp<int64_t>(tiles / s.rows, 1, std::max<int64_t>(1, s.cols / 256));
    p.col_tiles = ceil_div(s.cols, cols_per_tile(s, split));
  }
  const int64_t cpt = cols_per_tile(s, p.col_tiles);
  p.per_tile = ceil_div(s.rows, std::max<int64_t>(1, tiles / p.col_tiles));
  p.tiles = ceil_div(s.rows, p.per_tile) * p.col_tiles;
  const int64_t room = int64_t(budget) - whole_bytes(s, cpt);
  auto chunk_for = [&](int64_t w, int64_t buffers) {
    return room <= 0 ? 0 : std::min(p.per_tile, room / row_bytes(s, w, buffers));
  };
  // Whole rows, double-buffered if they fit, then single; else column blocks (whole heads for
  // RoPE), double-buffered, halved until a row fits.
  const int64_t grain = s.kind == OpKind::Rope ? s.head_dim : 64;
  for (int64_t buffers : {2, 1}) {
    if (chunk_for(cpt, buffers) >= 1) {
      p.buffers = buffers, p.chunk = chunk_for(cpt, buffers);
      return p;
    }
  }
  p.buffers = 2;
  for (int64_t w = ceil_div(ceil_div(cpt, 2), grain) * grain; w >= grain;
       w = ceil_div(w / 2, grain) * grain) {
    if (chunk_for(w, 2) >= 1) {
      p.cb = w, p.chunk = chunk_for(w, 2);
      p.two_pass = reducing(s.kind);
      return p;
    }
    if (w == grain) break;
  }
  throw CompileError(fmt::format("a {}-column block of a {} op does not fit the tile SRAM of {}",
                                 grain, op_kind_name(s.kind), a.name));
}

int64_t rows_round_chunks(const RowsPlan& p) {
  const int64_t chunks = p.chunk > 0 ? ceil_div(p.per_tile, p.chunk) : 0;
  return chunks < 20 ? 0 : std::max<int64_t>(4, ceil_div(chunks, 16));
}

void emit_rows(KernelContext& ctx, const RowsSpec& s, const RowsPlan& p) {
  ProgramBuilder& pb = ctx.pb;
  const Dtype od = s.out.dtype;
  const int64_t oe = esize(od);
  const int64_t cpt = cols_per_tile(s, p.col_tiles);
  const int64_t W = p.cb > 0 ? p.cb : cpt;  // columns of a block's buffers
  // Buffers, the same on every tile.
  std::vector<uint64_t> buf[2], whole(s.in.size());
  int whole_inputs = 0;
  for (size_t i = 0; i < s.in.size(); ++i) {
    if (!per_row(s, i)) {
      whole[i] = ctx.sram(uint64_t(in_cols(s, i, cpt) * esize(s.in[i].dtype)));
      ++whole_inputs;
    }
  }
  uint64_t out[2];
  for (int64_t b = 0; b < p.buffers; ++b) {
    for (size_t i = 0; i < s.in.size(); ++i) {
      buf[b].push_back(per_row(s, i) ? ctx.sram(uint64_t(p.chunk * in_cols(s, i, W) * esize(s.in[i].dtype))) : 0);
    }
    out[b] = ctx.sram(uint64_t(p.chunk * W * oe));
  }
  const uint64_t temp_bytes = uint64_t(p.chunk * temp_cols(s, W) * 4);
  const uint64_t tmp1 = temps(s.kind) > 0 ? ctx.sram(temp_bytes) : 0;
  const uint64_t tmp2 = temps(s.kind) > 1 ? ctx.sram(temp_bytes) : 0;
  uint64_t stat[4];
  for (uint64_t& st : stat) st = ctx.sram(uint64_t(p.chunk * 4));
  const int in_sem[2] = {ctx.sem(), ctx.sem()}, whole_sem = ctx.sem(), out_sem = ctx.sem();

  const float inv_cols = 1.0f / float(s.cols);
  auto f32 = [](uint64_t at) { return Tensor2{sram(int64_t(at)), 0, Dtype::Fp32}; };
  const Tensor2 t1 = f32(tmp1), t2 = f32(tmp2);

  // One step: rows [a, a + r) by columns [c0, c0 + w) in buffer set b; pass 1 of a two-pass
  // op only accumulates statistics (block index j of the row's blocks); emitted round e.
  struct Step {
    int64_t a, r, c0, w, j;
    int pass;  // 0: the only pass, 1 or 2
    int b;
    int64_t e;
  };

  // Rounds of chunks (p.round_chunks), a barrier between emitted rounds on every tile of the chip.
  const int64_t emitted = p.round_chunks > 0 ? ctx.plan_rounds(ceil_div(ceil_div(p.per_tile, p.chunk), p.round_chunks)) : 1;
  std::vector<int> round_barrier(size_t(emitted), -1);
  for (int64_t e = 1; e < emitted; ++e) round_barrier[size_t(e)] = pb.barrier_id();
  // Tile t enters emitted round e (e >= 1): waits for every tile, then marks the round.
  auto enter_round = [&](int t, int64_t e) {
    pb.emit(t, barrier(round_barrier[size_t(e)], ctx.tiles()));
    ctx.begin_round(t, e);
  };

  for (int t = 0; t < ctx.tiles(); ++t) {
    auto e = [&](const Instr& i) { pb.emit(t, i); };
    const int64_t ri = t / p.col_tiles, ci = t % p.col_tiles;
    const int64_t r0 = ri * p.per_tile, r1 = std::min(s.rows, r0 + p.per_tile);
    const int64_t cl = ci * cpt, ch = std::min(s.cols, cl + cpt);
    if (t >= p.tiles || r0 >= r1 || cl >= ch) {  // no rows here: only the rounds' barriers
      for (int64_t k = 1; k < emitted; ++k) enter_round(t, k);
      continue;
    }
    const int64_t bw = p.cb > 0 ? p.cb : ch - cl;
    std::vector<Step> steps;
    for (int64_t a = r0; a < r1; a += p.chunk) {
      const int64_t round = p.round_chunks > 0 ? ctx.emitted_index((a - r0) / p.chunk / p.round_chunks) : 0;
      if (round < 0) continue;  // a round a sampled run does not simulate
      const int64_t r = std::min(p.chunk, r1 - a);
      for (int pass : p.two_pass ? std::vector<int>{1, 2} : std::vector<int>{0}) {
        int64_t j = 0;
        for (int64_t c0 = cl; c0 < ch; c0 += bw, ++j) {
          steps.push_back(
              {a, r, c0, std::min(bw, ch - c0), j, pass, int(steps.size() % size_t(p.buffers)), round});
        }
      }
    }
    for (size_t i = 0; i < s.in.size(); ++i) {
      if (per_row(s, i)) continue;
      Block blk;
      blk.d0 = in_cols(s, i, ch - cl);
      const int64_t from = s.kind == OpKind::Rope ? 0 : cl;  // decode's one table row
      e(dma(sram(int64_t(whole[i])), advance(s.in[i].addr, from * esize(s.in[i].dtype)), blk,
            s.in[i].dtype, Dtype::None, {whole_sem, int64_t(isa::kTileSelf)}));
    }

    // Loads the step's rows and columns of every per-row input; returns the DMAs issued.
    auto load = [&](const Step& x) {
      int loads = 0;
      auto rows_of = [&](size_t i, int64_t first, int64_t n, int64_t at, int64_t col, int64_t width,
                         int64_t dst_col) {
        const int64_t ie = esize(s.in[i].dtype), ld = in_cols(s, i, x.w) * ie;
        const int64_t src_ld = s.in[i].ld ? s.in[i].ld : (s.kind == OpKind::SwiGlu ? 2 * s.cols : in_cols(s, i, s.cols)) * ie;
        Block blk;
        blk.d0 = width, blk.d1 = n, blk.src_strides = {src_ld, 0, 0}, blk.dst_strides = {ld, 0, 0};
        e(dma(sram(int64_t(buf[x.b][i]) + at * ld + dst_col * ie), advance(s.in[i].addr, first * src_ld + col * ie), blk,
              s.in[i].dtype, Dtype::None, {in_sem[x.b], int64_t(isa::kTileSelf)}));
        ++loads;
      };
      for (size_t i = 0; i < s.in.size(); ++i) {
        if (!per_row(s, i)) continue;
        if (s.kind == OpKind::SwiGlu) {  // gate and up halves side by side
          rows_of(i, x.a, x.r, 0, x.c0, x.w, 0);
          rows_of(i, x.a, x.r, 0, s.cols + x.c0, x.w, x.w);
        } else if (s.kind == OpKind::Rope && i > 0) {
          // Token a + j sits at position (a + j) % seq: runs that wrap at sequence ends.
          for (int64_t j = 0; j < x.r;) {
            const int64_t pos = (x.a + j) % s.seq, n = std::min(x.r - j, s.seq - pos);
            rows_of(i, pos, n, j, 0, s.head_dim / 2, 0);
            j += n;
          }
        } else {
          rows_of(i, x.a, x.r, 0, x.c0, x.w, 0);
        }
      }
      return loads;
    };

    // Input i of step x from column `col` of the block on (a RoPE table: element `col` of it).
    auto in = [&](const Step& x, size_t i, int64_t col = 0) {
      const int64_t ie = esize(s.in[i].dtype);
      if (!per_row(s, i)) {
        const int64_t at = s.kind == OpKind::Rope ? col : x.c0 - cl + col;
        return Tensor2{sram(int64_t(whole[i]) + at * ie), 0, s.in[i].dtype};
      }
      return Tensor2{sram(int64_t(buf[x.b][i]) + col * ie), in_cols(s, i, x.w) * ie, s.in[i].dtype};
    };
    auto compute = [&](const Step& x) {
      const int64_t r = x.r, w = x.w;
      const Tensor2 o{sram(int64_t(out[x.b])), w * oe, od};
      const Tensor2 st = f32(stat[0]), st2 = f32(stat[1]), st3 = f32(stat[2]), st4 = f32(stat[3]);
      const Bcast bc1 = s.in.size() > 1 && per_row(s, 1) ? Bcast::None : Bcast::Row;
      switch (s.kind) {
        case OpKind::Add:
        case OpKind::Mul:
          e(vec_binary(s.kind == OpKind::Add ? Opcode::VAdd : Opcode::VMul, o, in(x, 0), in(x, 1), r, w, bc1));
          break;
        case OpKind::Silu: e(vec_unary(Opcode::VSilu, o, in(x, 0), r, w)); break;
        case OpKind::Gelu: e(vec_unary(Opcode::VGelu, o, in(x, 0), r, w)); break;
        case OpKind::Relu: e(vec_scalar(Opcode::VMax, o, in(x, 0), 0.0f, r, w)); break;
        case OpKind::SwiGlu:
          e(vec_unary(Opcode::VSilu, t1, in(x, 0), r, w));
          e(vec_binary(Opcode::VMul, o, t1, in(x, 0, w), r, w));
          break;
        case OpKind::Softmax:
          if (x.pass == 0) {
            e(vec_reduce(Opcode::VRmax, st, in(x, 0), r, w));
            e(vec_binary(Opcode::VSub, t1, in(x, 0), st, r, w, Bcast::Col));
            e(vec_unary(Opcode::VExp, t1, t1, r, w));
            e(vec_reduce(Opcode::VRsum, st, t1, r, w));
            e(vec_unary(Opcode::VRecip, st, st, r, 1));
            e(vec_binary(Opcode::VMul, o, t1, st, r, w, Bcast::Col));
          } else if (x.pass == 1) {
            // Running sum in st2; the running max moves between st and st3: block 0 writes
            // st, odd blocks st3, even ones st again.
            const Tensor2 m = x.j % 2 ? st : st3, mn = x.j % 2 ? st3 : st;
            if (x.j == 0) {
              e(vec_reduce(Opcode::VRmax, st, in(x, 0), r, w));
              e(vec_binary(Opcode::VSub, t1, in(x, 0), st, r, w, Bcast::Col));
              e(vec_unary(Opcode::VExp, t1, t1, r, w));
              e(vec_reduce(Opcode::VRsum, st2, t1, r, w));
              break;
            }
            e(vec_reduce(Opcode::VRmax, mn, in(x, 0), r, w));
            e(vec_binary(Opcode::VMax, mn, mn, m, r, 1));
            e(vec_binary(Opcode::VSub, st4, m, mn, r, 1));
            e(vec_unary(Opcode::VExp, st4, st4, r, 1));
            e(vec_binary(Opcode::VMul, st2, st2, st4, r, 1));
            e(vec_binary(Opcode::VSub, t1, in(x, 0), mn, r, w, Bcast::Col));
            e(vec_unary(Opcode::VExp, t1, t1, r, w));
            e(vec_reduce(Opcode::VRsum, st4, t1, r, w));
            e(vec_binary(Opcode::VAdd, st2, st2, st4, r, 1));
          } else {
            const int64_t blocks = ceil_div(ch - cl, p.cb);
            const Tensor2 m = (blocks - 1) % 2 ? st3 : st;  // where pass 1 left the max
            if (x.j == 0) e(vec_unary(Opcode::VRecip, st2, st2, r, 1));
            e(vec_binary(Opcode::VSub, t1, in(x, 0), m, r, w, Bcast::Col));
            e(vec_unary(Opcode::VExp, t1, t1, r, w));
            e(vec_binary(Opcode::VMul, o, t1, st2, r, w, Bcast::Col));
          }
          break;
        case OpKind::RmsNorm:
          if (x.pass != 2) {
            e(vec_binary(Opcode::VMul, t1, in(x, 0), in(x, 0), r, w));
            if (x.pass == 0 || x.j == 0) {
              e(vec_reduce(Opcode::VRsum, st, t1, r, w, inv_cols));
            } else {
              e(vec_reduce(Opcode::VRsum, st2, t1, r, w, inv_cols));
              e(vec_binary(Opcode::VAdd, st, st, st2, r, 1));
            }
            if (x.pass == 1) break;
          }
          if (x.pass == 0 || x.j == 0) {
            e(vec_scale(st, st, r, 1, 1.0f, float(s.eps)));
            e(vec_unary(Opcode::VRsqrt, st, st, r, 1));
          }
          e(vec_binary(Opcode::VMul, t1, in(x, 0), st, r, w, Bcast::Col));
          e(vec_binary(Opcode::VMul, o, t1, in(x, 1), r, w, Bcast::Row));
          break;
        case OpKind::LayerNorm:
          if (x.pass == 0) {
            e(vec_reduce(Opcode::VRsum, st, in(x, 0), r, w, inv_cols));
            e(vec_binary(Opcode::VSub, t1, in(x, 0), st, r, w, Bcast::Col));
            e(vec_binary(Opcode::VMul, t2, t1, t1, r, w));
            e(vec_reduce(Opcode::VRsum, st2, t2, r, w, inv_cols));
          } else if (x.pass == 1) {
            // Mean in st, mean of squares in st2.
            e(vec_binary(Opcode::VMul, t1, in(x, 0), in(x, 0), r, w));
            e(vec_reduce(Opcode::VRsum, x.j == 0 ? st : st3, in(x, 0), r, w, inv_cols));
            e(vec_reduce(Opcode::VRsum, x.j == 0 ? st2 : st4, t1, r, w, inv_cols));
            if (x.j > 0) {
              e(vec_binary(Opcode::VAdd, st, st, st3, r, 1));
              e(vec_binary(Opcode::VAdd, st2, st2, st4, r, 1));
            }
            break;
          } else {
            if (x.j == 0) {  // variance = E[x^2] - mean^2
              e(vec_binary(Opcode::VMul, st3, st, st, r, 1));
              e(vec_binary(Opcode::VSub, st2, st2, st3, r, 1));
            }
            e(vec_binary(Opcode::VSub, t1, in(x, 0), st, r, w, Bcast::Col));
          }
          if (x.pass == 0 || x.j == 0) {
            e(vec_scale(st2, st2, r, 1, 1.0f, float(s.eps)));
            e(vec_unary(Opcode::VRsqrt, st2, st2, r, 1));
          }
          e(vec_binary(Opcode::VMul, t1, t1, st2, r, w, Bcast::Col));
          e(vec_binary(Opcode::VMul, t1, t1, in(x, 1), r, w, Bcast::Row));
          e(vec_binary(Opcode::VAdd, o, t1, in(x, 2), r, w, Bcast::Row));
          break;
        case OpKind::Rope: {
          // x1, x2: the halves of a head's head_dim values. Decode: every token is at one
          // position, so one table row serves the rows (token, head) of the whole chunk. Prefill:
          // head by head, the chunk's tokens against their own table rows, element-wise; or,
          // when the chunk has fewer tokens than heads, token by token, the token's heads
          // against its table row (6 instructions a token rather than 6 a head).
          const int64_t half = s.head_dim / 2, xe = esize(s.in[0].dtype), heads = w / s.head_dim;
          // Rows `rows` of x1/x2 from element `at` of the chunk's row 0, against the table from
          // row `table_row` of the chunk's.
          auto rotate = [&](int64_t at, int64_t rows, int64_t ld_in, int64_t ld_out, int64_t table_row, Bcast table) {
            const int64_t base_in = int64_t(buf[x.b][0]) + at * xe, base_out = int64_t(out[x.b]) + at * oe;
            const Tensor2 x1{sram(base_in), ld_in, s.in[0].dtype}, x2{sram(base_in + half * xe), ld_in, s.in[0].dtype};
            const Tensor2 o1{sram(base_out), ld_out, od}, o2{sram(base_out + half * oe), ld_out, od};
            Tensor2 c = in(x, 1), sn = in(x, 2);
            c.ld = sn.ld = half * 4;
            c.addr = advance(c.addr, table_row * half * 4), sn.addr = advance(sn.addr, table_row * half * 4);
            e(vec_binary(Opcode::VMul, t1, x1, c, rows, half, table));
            e(vec_binary(Opcode::VMul, t2, x2, sn, rows, half, table));
            e(vec_binary(Opcode::VSub, o1, t1, t2, rows, half));
            e(vec_binary(Opcode::VMul, t1, x2, c, rows, half, table));
            e(vec_binary(Opcode::VMul, t2, x1, sn, rows, half, table));
            e(vec_binary(Opcode::VAdd, o2, t1, t2, rows, half));
          };
          if (s.seq == 1) {
            rotate(0, r * heads, s.head_dim * xe, s.head_dim * oe, 0, Bcast::Row);
          } else if (r < heads) {
            for (int64_t k = 0; k < r; ++k) rotate(k * w, heads, s.head_dim * xe, s.head_dim * oe, k, Bcast::Row);
          } else {
            for (int64_t h = 0; h < heads; ++h) rotate(h * s.head_dim, r, w * xe, w * oe, 0, Bcast::None);
          }
          break;
        }
        default: throw CompileError(fmt::format("no row kernel for {}", op_kind_name(s.kind)));
      }
    };

    int64_t stores = 0, round = 0;
    std::vector<int> issued(steps.size(), 0);
    if (!steps.empty()) issued[0] = load(steps[0]);
    for (size_t k = 0; k < steps.size(); ++k) {
      const Step& x = steps[k];
      while (round < x.e) enter_round(t, ++round);
      if (p.buffers == 2 && k + 1 < steps.size()) issued[k + 1] = load(steps[k + 1]);
      e(sem_wait(in_sem[x.b], issued[k]));
      if (k == 0 && whole_inputs > 0) e(sem_wait(whole_sem, whole_inputs));
      compute(x);
      if (x.pass != 1) {
        Block blk;
        blk.d0 = x.w, blk.d1 = x.r;
        blk.src_strides = {x.w * oe, 0, 0};
        blk.dst_strides = {s.out.ld ? s.out.ld : s.cols * oe, 0, 0};
        const Addr dst = advance(s.out.addr, x.a * blk.dst_strides[0] + x.c0 * oe);
        e(dma(dst, sram(int64_t(out[x.b])), blk, od, Dtype::None, {out_sem, int64_t(isa::kTileSelf)}));
        ++stores;
      }
      if (p.buffers == 1 && k + 1 < steps.size()) issued[k + 1] = load(steps[k + 1]);
    }
    if (stores > 0) e(sem_wait(out_sem, stores));
    while (round + 1 < emitted) enter_round(t, ++round);
  }
}

}  // namespace tessera::compiler
