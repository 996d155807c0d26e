#include "compiler/kernels/moe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace tessera::compiler {
namespace {

using isa::Bcast;
using isa::Opcode;

uint64_t align4k(uint64_t v) {
  return (v + 4095) / 4096 * 4096;
}
constexpr int64_t kTargetChunkBytes = 512 << 10;
constexpr int64_t kSelf = int64_t(isa::kTileSelf);

Tensor2 f32(uint64_t addr, int64_t ld = 0) {
  return Tensor2{sram(int64_t(addr)), ld, Dtype::Fp32};
}

// Routing tables of a block of `rows` tokens in a tile's SRAM (see moe.route): the logits, which
// moe.route overwrites with the kept weights, and the dispatch.
struct RouteTables {
  uint64_t weights = 0, counts = 0, dispatch = 0, combine = 0, combine_weights = 0;
};
// Entries per expert in the dispatch table: its capacity in whole blocks.
int64_t dispatch_stride(const MoeSpec& s, int64_t rows, int64_t block) {
  return ceil_div(moe_capacity(s, rows), block) * block;
}
uint64_t route_bytes(const MoeSpec& s, int64_t rows, int64_t block) {
  return uint64_t(4 * (rows * s.routed + s.experts + s.experts * dispatch_stride(s, rows, block) + 2 * s.top_k * rows) +
                  5 * 64);
}
RouteTables route_tables(KernelContext& ctx, const MoeSpec& s, int64_t rows, int64_t block) {
  RouteTables r;
  r.weights = ctx.sram(uint64_t(rows * s.routed * 4));
  r.counts = ctx.sram(uint64_t(s.experts * 4));
  r.dispatch = ctx.sram(uint64_t(s.experts * dispatch_stride(s, rows, block) * 4));
  r.combine = ctx.sram(uint64_t(s.top_k * rows * 4));
  r.combine_weights = ctx.sram(uint64_t(s.top_k * rows * 4));
  return r;
}

// On tile t: the logits of token rows r0.. into its tables, then moe.route with counts of
// blocks of `block` slots.
void emit_route(ProgramBuilder& pb, int t, const MoeSpec& s, const RouteTables& r, int64_t r0, int64_t rows,
                int64_t block, int sem) {
  const int64_t ldl = s.logits.ld ? s.logits.ld : s.routed * 4;
  Block b;
  b.d0 = s.routed, b.d1 = rows, b.src_strides = {ldl, 0, 0}, b.dst_strides = {s.routed * 4, 0, 0};
  pb.emit(t, dma(sram(int64_t(r.weights)), advance(s.logits.addr, r0 * ldl), b, Dtype::Fp32, Dtype::None,
                 {sem, kSelf}));
  pb.emit(t, sem_wait(sem));
  RouteOperands o;
  o.weights = o.logits = sram(int64_t(r.weights));
  o.rows = rows, o.experts = s.routed, o.top_k = s.top_k;
  o.first = s.first, o.local = s.experts;
  o.capacity = moe_capacity(s, rows), o.block = block;
  o.counts = sram(int64_t(r.counts)), o.dispatch = sram(int64_t(r.dispatch));
  o.combine = sram(int64_t(r.combine)), o.combine_weights = sram(int64_t(r.combine_weights));
  pb.emit(t, moe_route(o));
}

struct Arrays {
  int64_t width = 1;  // output columns the arrays take at once
  int64_t kq = 1;     // reduction rows of one array tile
};
Arrays arrays(const arch::Arch& a, Dtype wdt) {
  const arch::SystolicParams& sa = a.chip.tile.systolic;
  const std::string_view cls = isa::array_dtype_class(wdt);
  const int64_t pack =
      sa.macs_per_cycle.has(cls) ? int64_t(sa.macs_per_cycle.at(cls)) / (sa.rows * sa.cols) : 1;
  return {sa.cols * sa.count,
          sa.dataflow == arch::Dataflow::WeightStationary ? sa.rows * pack : 8 * pack};
}

// A tile's share of the experts x inter intermediate columns, as runs within one expert.
struct Segment {
  int64_t e = 0, i0 = 0, n = 0;  // expert, its first column, columns
};
std::vector<Segment> segments(const MoeSpec& s, const MoePlan& p, int64_t tile) {
  std::vector<Segment> out;
  const int64_t total = s.experts * s.inter;
  int64_t c = tile * p.per_tile;
  const int64_t end = std::min(total, c + p.per_tile);
  while (c < end) {
    const int64_t e = c / s.inter, i0 = c % s.inter, n = std::min(s.inter - i0, end - c);
    out.push_back({e, i0, n});
    c += n;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Weight streaming for few tokens: split-K with a cross-tile reduction, or two passes.

class MoeStream {
 public:
  MoeStream(KernelContext& ctx, const MoeSpec& s, const MoePlan& p)
      : pb_(ctx.pb), s_(s), p_(p), we_(esize(s.wdt)), xe_(esize(s.x.dtype)) {
    const int64_t tb = p.tb, H = s.hidden;
    x_ = ctx.sram(uint64_t(tb * H * we_));
    route_ = route_tables(ctx, s, tb, moe_capacity(s, tb));
    const uint64_t chunk = uint64_t(chunk_bytes(p, we_));
    const uint64_t slot = uint64_t(tb * p.out_cols * 4);
    const uint64_t recv =
        p.two_pass ? uint64_t(p.buffers) * chunk : std::max(uint64_t(p.buffers) * chunk, slot);
    recv_ = ctx.sram(recv);  // the weight buffers; the reduction's receive slots afterwards
    for (int64_t b = 0; b < p.buffers; ++b)
      wbuf_.push_back(recv_ + uint64_t(b) * chunk), wsem_.push_back(ctx.sem());
    slots_ = int64_t(recv / slot);
    for (int i = 0; i < 2; ++i) acc_gu_[i] = ctx.sram(uint64_t(tb * 2 * p.cb * 4));
    tmp_ = ctx.sram(uint64_t(tb * p.cb * 4));
    for (int i = 0; i < 2; ++i)
      hseg_[i] = ctx.sram(uint64_t(tb * (p.two_pass ? p.cb : p.seg) * we_));
    if (p.two_pass) {
      acc_out_ = ctx.sram(uint64_t(tb * p.out_cols * 4));
      for (int64_t b = 0; b < p.buffers; ++b) xbuf_.push_back(ctx.sram(uint64_t(tb * p.kd2 * we_)));
      hall_ = ctx.shared(uint64_t(tb * s.experts * s.inter * we_));
    } else {
      acc_out_ = ctx.sram(uint64_t(tb * H * 4));
      sum_ = ctx.sram(slot);
    }
    xsem_ = ctx.sem(), stage_sem_ = ctx.sem(), peers_sem_ = ctx.sem(), rsem_ = ctx.sem();
    done_ = ctx.sem(), red_sem_ = ctx.sem(), out_sem_ = ctx.sem(), hsem_ = ctx.sem();
    const arch::Arch& a = ctx.arch();
    group_ =
        a.chip.shared_memory.scope == arch::SharedScope::Cluster ? a.chip.cluster_size : a.tiles();
    const uint64_t xbytes = uint64_t(tb * H * xe_);
    if (group_ > 1 && p.tiles > 1 && ctx.shared_left() >= xbytes) staged_ = ctx.shared(xbytes);
  }

  static int64_t chunk_bytes(const MoePlan& p, int64_t we) {
    return std::max({2 * p.cb * p.k_chunk, p.hrows * p.kd, p.out_cols * p.kd2}) * we;
  }

  void emit() {
    reg_ = pb_.reg_alloc();
    for (int64_t b = 0; b < p_.blocks; ++b) {
      const int64_t r0 = b * p_.tb, rows = std::min(p_.tb, s_.t - r0);
      compute_block(r0, rows);
      // Every partial (split-K) or every slice of h (two passes) is complete before any tile reads
      // it.
      pb_.barrier_all();
      for (int t = 0; t < pb_.tiles(); ++t) {
        if (p_.two_pass) {
          down_pass(t, r0, rows);
        } else {
          reduce(t, r0, rows);
        }
      }
      if (b + 1 < p_.blocks) pb_.barrier_all();
    }
    pb_.reg_release(reg_);
  }

 private:
  enum class Kind { GateUp, Down, Down2 };
  struct Chunk {
    Kind kind = Kind::GateUp;
    size_t seg = 0;             // GateUp, Down: the run of one expert's columns; Down2: the expert
    int64_t c0 = 0, cols = 0;   // GateUp: columns c0.. of the run; Down, Down2: rows c0.. of W2_e
    int64_t k0 = 0, kcols = 0;  // reduction range: hidden (GateUp), the run's columns (Down), the
                                // expert's (Down2)
    int64_t block = 0;          // GateUp: the column block's index on this tile
  };

  // Pass one: gate/up of every column block (and, split-K, the down projection of every run).
  std::vector<Chunk> chunks(const std::vector<Segment>& segs) const {
    std::vector<Chunk> out;
    int64_t block = 0;
    for (size_t si = 0; si < segs.size(); ++si) {
      const int64_t n = segs[si].n;
      for (int64_t c0 = 0; c0 < n; c0 += p_.cb, ++block) {
        for (int64_t k0 = 0; k0 < s_.hidden; k0 += p_.k_chunk) {
          out.push_back({Kind::GateUp, si, c0, std::min(p_.cb, n - c0), k0,
                         std::min(p_.k_chunk, s_.hidden - k0), block});
        }
      }
      if (p_.two_pass) continue;
      for (int64_t h0 = 0; h0 < s_.hidden; h0 += p_.hrows) {
        for (int64_t k0 = 0; k0 < n; k0 += p_.kd) {
          out.push_back({Kind::Down, si, h0, std::min(p_.hrows, s_.hidden - h0), k0,
                         std::min(p_.kd, n - k0), 0});
        }
      }
    }
    return out;
  }

  // Pass two: tile t's output columns over every expert's intermediate columns.
  std::vector<Chunk> down_chunks(int t) const {
    std::vector<Chunk> out;
    const int64_t c0 = t * p_.out_cols, w = std::min(p_.out_cols, s_.hidden - c0);
    if (w <= 0) return out;
    for (int64_t e = 0; e < s_.experts; ++e) {
      for (int64_t k0 = 0; k0 < s_.inter; k0 += p_.kd2) {
        out.push_back({Kind::Down2, size_t(e), c0, w, k0, std::min(p_.kd2, s_.inter - k0), 0});
      }
    }
    return out;
  }

  void load(int tile, const std::vector<Segment>& segs, const Chunk& c, int64_t i) {
    const int64_t H = s_.hidden, I = s_.inter;
    const int b = int(i % p_.buffers);
    Block blk;
    Addr src;
    if (c.kind == Kind::GateUp) {
      // W1 rows, then the same W3 rows (I rows further on): dimension 2 picks the matrix.
      const Segment& sg = segs[c.seg];
      src = advance(s_.w13, ((sg.e * 2 * I + sg.i0 + c.c0) * H + c.k0) * we_);
      if (c.kcols == H) {
        blk.d0 = c.cols * H, blk.d1 = 2;
        blk.src_strides = {I * H * we_, 0, 0}, blk.dst_strides = {c.cols * H * we_, 0, 0};
      } else {
        blk.d0 = c.kcols, blk.d1 = c.cols, blk.d2 = 2;
        blk.src_strides = {H * we_, I * H * we_, 0},
        blk.dst_strides = {c.kcols * we_, c.cols * c.kcols * we_, 0};
      }
    } else {
      const int64_t e = c.kind == Kind::Down ? segs[c.seg].e : int64_t(c.seg);
      const int64_t i0 = c.kind == Kind::Down ? segs[c.seg].i0 : 0;
      src = advance(s_.w2, ((e * H + c.c0) * I + i0 + c.k0) * we_);
      if (c.kcols == I) {
        blk.d0 = c.cols * I;
      } else {
        blk.d0 = c.kcols, blk.d1 = c.cols;
        blk.src_strides = {I * we_, 0, 0}, blk.dst_strides = {c.kcols * we_, 0, 0};
      }
    }
    pb_.emit(tile, dma(sram(int64_t(wbuf_[size_t(b)])), src, blk, s_.wdt, Dtype::None,
                       {wsem_[size_t(b)], kSelf}));
  }

  // Pass two: the slice of h (all token rows) that chunk i multiplies, from the shared memory.
  void load_h(int tile, const Chunk& c, int64_t i, int64_t rows) {
    const int b = int(i % p_.buffers);
    Block blk;
    blk.d0 = c.kcols, blk.d1 = rows;
    blk.src_strides = {s_.experts * s_.inter * we_, 0, 0}, blk.dst_strides = {c.kcols * we_, 0, 0};
    const int64_t col = int64_t(c.seg) * s_.inter + c.k0;
    pb_.emit(tile, dma(sram(int64_t(xbuf_[size_t(b)])), shared(int64_t(hall_) + col * we_), blk,
                       s_.wdt, Dtype::None, {wsem_[size_t(b)], kSelf}));
  }

  // Returns the DMAs it issued that signal hsem_ (pass one of two: h written to shared memory).
  int64_t compute(int tile, const std::vector<Segment>& segs, const Chunk& c, int64_t i,
                  int64_t rows) {
    const int b = int(i % p_.buffers);
    pb_.emit(tile, sem_wait(wsem_[size_t(b)]));
    MatmulOperands mm;
    mm.b = sram(int64_t(wbuf_[size_t(b)])), mm.ldb = c.kcols * we_, mm.tb = true;
    mm.m = rows, mm.k = c.kcols, mm.dtype = s_.wdt;
    const Segment& sg = segs[c.seg];
    const uint64_t hseg = hseg_[c.seg % 2];
    if (c.kind == Kind::GateUp) {
      const uint64_t acc = acc_gu_[c.block % 2];
      const int64_t ldc = 2 * p_.cb * 4;
      mm.acc = sram(int64_t(acc)), mm.ldc = ldc;
      mm.a = sram(int64_t(x_) + c.k0 * we_), mm.lda = s_.hidden * we_;
      mm.n = 2 * c.cols;
      mm.accumulate = c.k0 > 0;
      pb_.emit(tile, matmul(mm));
      if (c.k0 + c.kcols < s_.hidden) return 0;
      // g and u complete: h = silu(g) * u * w[:, e]
      const Tensor2 g = f32(acc, ldc), u = f32(acc + uint64_t(c.cols * 4), ldc),
                    t = f32(tmp_, p_.cb * 4);
      const Tensor2 w{sram(int64_t(route_.weights) + (s_.first + sg.e) * 4), s_.routed * 4, Dtype::Fp32};
      const uint64_t hblock = p_.two_pass ? hseg_[c.block % 2] : hseg + uint64_t(c.c0 * we_);
      const Tensor2 h{sram(int64_t(hblock)), (p_.two_pass ? p_.cb : p_.seg) * we_, s_.wdt};
      pb_.emit(tile, vec_unary(Opcode::VSilu, t, g, rows, c.cols));
      pb_.emit(tile, vec_binary(Opcode::VMul, t, t, u, rows, c.cols));
      pb_.emit(tile, vec_binary(Opcode::VMul, h, t, w, rows, c.cols, Bcast::Col));
      if (!p_.two_pass) return 0;
      Block blk;
      blk.d0 = c.cols, blk.d1 = rows;
      blk.src_strides = {h.ld, 0, 0}, blk.dst_strides = {s_.experts * s_.inter * we_, 0, 0};
      const int64_t col = sg.e * s_.inter + sg.i0 + c.c0;
      pb_.emit(tile, dma(shared(int64_t(hall_) + col * we_), h.addr, blk, s_.wdt, Dtype::None,
                         {hsem_, kSelf}));
      return 1;
    }
    mm.acc = sram(int64_t(acc_out_) + c.c0 * 4), mm.ldc = s_.hidden * 4;
    mm.a = sram(int64_t(hseg) + c.k0 * we_), mm.lda = p_.seg * we_;
    mm.n = c.cols;
    mm.accumulate = true;  // onto the zeroed partial: the tile's first runs may be skipped
    pb_.emit(tile, matmul(mm));
    return 0;
  }

  // x's token rows r0.. into every working tile's SRAM (as the weight stream does: staged once per
  // shared-memory instance when it fits there), converted to the weights' dtype.
  void load_x(int64_t r0, int64_t rows) {
    const int64_t H = s_.hidden;
    const int64_t ldx = s_.x.ld ? s_.x.ld : H * xe_;
    Block blk;
    blk.d0 = H, blk.d1 = rows, blk.src_strides = {ldx, 0, 0}, blk.dst_strides = {H * we_, 0, 0};
    const Addr base = advance(s_.x.addr, r0 * ldx);
    if (!staged_) {
      for (int t = 0; t < p_.tiles; ++t) {
        pb_.emit(t, dma(sram(int64_t(x_)), base, blk, s_.x.dtype, s_.wdt, {xsem_, kSelf}));
      }
      return;
    }
    const int64_t row_bytes = H * xe_;
    Block packed;
    packed.d0 = H * rows;
    for (int64_t first = 0; first < p_.tiles; first += group_) {
      const int64_t last = std::min<int64_t>(first + group_, p_.tiles);
      const int64_t loaders = std::min<int64_t>(last - first, rows);
      for (int64_t j = 0; j < loaders; ++j) {
        const int t = int(first + j);
        const int64_t a = j * rows / loaders, z = (j + 1) * rows / loaders;
        Block part = blk;
        part.d1 = z - a;
        part.dst_strides = {row_bytes, 0, 0};
        pb_.emit(t, dma(shared(int64_t(*staged_ + uint64_t(a * row_bytes))), advance(base, a * ldx),
                        part, s_.x.dtype, Dtype::None, {stage_sem_, kSelf}));
        pb_.emit(t, sem_wait(stage_sem_));
        for (int64_t u = first; u < last; ++u) {
          if (u != t) pb_.emit(t, sem_signal(u, peers_sem_, 1, isa::After::None));
        }
      }
      for (int64_t u = first; u < last; ++u) {
        const int64_t from_others = loaders - (u - first < loaders ? 1 : 0);
        if (from_others > 0) pb_.emit(int(u), sem_wait(peers_sem_, from_others));
        pb_.emit(int(u), dma(sram(int64_t(x_)), shared(int64_t(*staged_)), packed, s_.x.dtype,
                             s_.wdt, {xsem_, kSelf}));
      }
    }
  }

  // The chunks of `w` that belong to run `seg` (consecutive).
  static std::pair<size_t, size_t> run_chunks(const std::vector<Chunk>& w, size_t seg) {
    size_t a = 0;
    while (a < w.size() && w[a].seg != seg) ++a;
    size_t b = a;
    while (b < w.size() && w[b].seg == seg) ++b;
    return {a, b};
  }

  // On tile t: `body` only when local expert e has tokens in the block.
  template <class Body>
  void if_routed(int t, int64_t e, Body&& body) {
    pb_.emit(t, ld(reg_, sram(int64_t(route_.counts) + e * 4), 1));
    pb_.emit(t, loop(0, reg_));
    body();
    pb_.emit(t, end_loop());
  }

  void compute_block(int64_t r0, int64_t rows) {
    // Counts of blocks of `cap` slots: 1 for an expert with tokens. The tiles that read them: those
    // with runs, and with two passes every tile (each streams its columns of W2 per expert).
    const int64_t cap = moe_capacity(s_, rows);
    const int routing_tiles = p_.two_pass ? pb_.tiles() : int(p_.tiles);
    for (int t = 0; t < routing_tiles; ++t) emit_route(pb_, t, s_, route_, r0, rows, cap, rsem_);
    load_x(r0, rows);
    for (int t = 0; t < p_.tiles; ++t) {
      const std::vector<Segment> segs = segments(s_, p_, t);
      const std::vector<Chunk> w = chunks(segs);
      pb_.emit(t, sem_wait(xsem_));
      if (!p_.two_pass) pb_.emit(t, vec_fill(f32(acc_out_), rows, s_.hidden, 0.0f));
      for (size_t si = 0; si < segs.size(); ++si) {
        if_routed(t, segs[si].e, [&] {
          // Each run's pipeline starts and drains inside its loop.
          const auto [first, end] = run_chunks(w, si);
          const int64_t n = int64_t(end - first);
          for (int64_t i = 0; i < std::min(n, p_.buffers); ++i) load(t, segs, w[first + size_t(i)], i);
          int64_t h_stores = 0;
          for (int64_t i = 0; i < n; ++i) {
            h_stores += compute(t, segs, w[first + size_t(i)], i, rows);
            if (i + p_.buffers < n) load(t, segs, w[first + size_t(i + p_.buffers)], i + p_.buffers);
          }
          if (h_stores > 0) pb_.emit(t, sem_wait(hsem_, h_stores));
        });
      }
      // The partial is written before the barrier lets other tiles read it.
      pb_.emit(t, sem_signal(kSelf, done_, 1, isa::After::All));
      pb_.emit(t, sem_wait(done_));
    }
  }

  // Pass two of two: tile t's output columns = h [rows, E*I] (shared memory) x their W2 rows,
  // over the experts with tokens.
  void down_pass(int t, int64_t r0, int64_t rows) {
    const std::vector<Chunk> d = down_chunks(t);
    if (d.empty()) return;
    pb_.emit(t, vec_fill(f32(acc_out_, p_.out_cols * 4), rows, d[0].cols, 0.0f));
    for (int64_t e = 0; e < s_.experts; ++e) {
      if_routed(t, e, [&] {
        const auto [first, end] = run_chunks(d, size_t(e));
        const int64_t n = int64_t(end - first);
        for (int64_t i = 0; i < std::min(n, p_.buffers); ++i) {
          load(t, {}, d[first + size_t(i)], i);
          load_h(t, d[first + size_t(i)], i, rows);
        }
        for (int64_t i = 0; i < n; ++i) {
          const Chunk& c = d[first + size_t(i)];
          const int b = int(i % p_.buffers);
          pb_.emit(t, sem_wait(wsem_[size_t(b)], 2));
          MatmulOperands mm;
          mm.acc = sram(int64_t(acc_out_)), mm.ldc = p_.out_cols * 4;
          mm.a = sram(int64_t(xbuf_[size_t(b)])), mm.lda = c.kcols * we_;
          mm.b = sram(int64_t(wbuf_[size_t(b)])), mm.ldb = c.kcols * we_, mm.tb = true;
          mm.m = rows, mm.k = c.kcols, mm.n = c.cols, mm.dtype = s_.wdt;
          mm.accumulate = true;
          pb_.emit(t, matmul(mm));
          if (i + p_.buffers < n) {
            load(t, {}, d[first + size_t(i + p_.buffers)], i + p_.buffers);
            load_h(t, d[first + size_t(i + p_.buffers)], i + p_.buffers, rows);
          }
        }
      });
    }
    store(t, r0, rows, d[0].c0, d[0].cols, f32(acc_out_, p_.out_cols * 4));
  }

  void store(int t, int64_t r0, int64_t rows, int64_t c0, int64_t w, const Tensor2& from) {
    const int64_t ye = esize(s_.y.dtype), ldy = s_.y.ld ? s_.y.ld : s_.hidden * ye;
    Block out;
    out.d0 = w, out.d1 = rows, out.src_strides = {from.ld, 0, 0}, out.dst_strides = {ldy, 0, 0};
    pb_.emit(t, dma(advance(s_.y.addr, r0 * ldy + c0 * ye), from.addr, out, Dtype::Fp32, s_.y.dtype,
                    {out_sem_, kSelf}));
    pb_.emit(t, sem_wait(out_sem_));
  }

  // Split-K: tile t sums its column slice of y over every working tile's partial and stores it.
  void reduce(int t, int64_t r0, int64_t rows) {
    const int64_t c0 = t * p_.out_cols, w = std::min(p_.out_cols, s_.hidden - c0);
    if (w <= 0) return;
    const int64_t P = pb_.tiles();
    const Tensor2 sum = f32(sum_, w * 4);
    std::optional<Tensor2> cur;
    std::vector<int64_t> remote;
    for (int64_t j = 0; j < P; ++j) {
      const int64_t u = (t + j) % P;
      if (u >= p_.tiles) continue;
      if (u == t) {
        cur = f32(acc_out_ + uint64_t(c0 * 4), s_.hidden * 4);
      } else {
        remote.push_back(u);
      }
    }
    const int64_t slot = p_.tb * p_.out_cols * 4;
    for (size_t first = 0; first < remote.size(); first += size_t(slots_)) {
      const size_t last = std::min(remote.size(), first + size_t(slots_));
      Block blk;
      blk.d0 = w, blk.d1 = rows, blk.src_strides = {s_.hidden * 4, 0, 0},
      blk.dst_strides = {w * 4, 0, 0};
      for (size_t k = first; k < last; ++k) {
        const uint64_t dst = recv_ + uint64_t(int64_t(k - first) * slot);
        pb_.emit(t, dma(sram(int64_t(dst)), sram_of(remote[k], int64_t(acc_out_) + c0 * 4), blk,
                        Dtype::Fp32, Dtype::None, {red_sem_, kSelf}));
      }
      pb_.emit(t, sem_wait(red_sem_, int64_t(last - first)));
      for (size_t k = first; k < last; ++k) {
        const Tensor2 in = f32(recv_ + uint64_t(int64_t(k - first) * slot), w * 4);
        if (!cur) {
          pb_.emit(t, vec_unary(Opcode::VCast, sum, in, rows, w));  // the slot is reused next round
        } else {
          pb_.emit(t, vec_binary(Opcode::VAdd, sum, *cur, in, rows, w));
        }
        cur = sum;
      }
    }
    store(t, r0, rows, c0, w, *cur);
  }

  ProgramBuilder& pb_;
  MoeSpec s_;
  MoePlan p_;
  int64_t we_, xe_;
  uint64_t x_ = 0, recv_ = 0, tmp_ = 0, acc_out_ = 0, sum_ = 0, hall_ = 0;
  RouteTables route_;
  uint8_t reg_ = 0;  // an expert's count of blocks
  uint64_t acc_gu_[2] = {}, hseg_[2] = {};
  std::optional<uint64_t> staged_;
  std::vector<uint64_t> wbuf_, xbuf_;
  std::vector<int> wsem_;
  int64_t slots_ = 1, group_ = 1;
  int xsem_ = 0, stage_sem_ = 0, peers_sem_ = 0, rsem_ = 0, done_ = 0, red_sem_ = 0, out_sem_ = 0,
      hsem_ = 0;
};

// ---------------------------------------------------------------------------------------------
// GEMM path: many tokens.

struct Scratch {
  uint64_t x = 0, gu = 0, h = 0, y = 0;
};
Scratch scratch_of(const MoeSpec& s, const MoePlan& p, uint64_t base) {
  const int64_t xe = esize(s.x.dtype);
  Scratch r;
  r.x = base;
  r.gu = r.x + align4k(uint64_t(p.mb * s.hidden * xe));
  r.h = r.gu + align4k(uint64_t(p.mb * 2 * s.inter * xe));
  r.y = r.h + align4k(uint64_t(p.mb * s.inter * xe));
  return r;
}
uint64_t scratch_bytes(const MoeSpec& s, const MoePlan& p) {
  const Scratch sc = scratch_of(s, p, 0);
  // y_e: each expert's slot rows, its capacity in whole GEMM blocks (a shorter last routed block
  // lays them closer).
  return sc.y + align4k(uint64_t(s.experts * dispatch_stride(s, p.route_rows, p.mb) * s.hidden * esize(s.y.dtype)));
}

// h = silu(g) * u over one block's mb rows: [g | u] [mb, 2I] and h [mb, I] in the x dtype.
int64_t act_row_bytes(const MoeSpec& s) {
  const int64_t xe = esize(s.x.dtype), I = s.inter;
  return 2 * I * xe + I * 4 + I * xe;
}

void emit_act(KernelContext& ctx, const MoeSpec& s, const MoePlan& plan, const Scratch& sc) {
  ProgramBuilder& pb = ctx.pb;
  const RowsPlan& p = plan.act;
  const int64_t I = s.inter, xe = esize(s.x.dtype);
  const Dtype xdt = s.x.dtype;
  const uint64_t gbuf = ctx.sram(uint64_t(p.chunk * 2 * I * xe)), tmp = ctx.sram(uint64_t(p.chunk * I * 4)),
                 obuf = ctx.sram(uint64_t(p.chunk * I * xe));
  const int in_sem = ctx.sem(), out_sem = ctx.sem();
  for (int t = 0; t < p.tiles; ++t) {
    const int64_t r0 = t * p.per_tile, r1 = std::min(plan.mb, r0 + p.per_tile);
    int64_t n = 0;
    for (int64_t a = r0; a < r1; a += p.chunk, ++n) {
      const int64_t r = std::min(p.chunk, r1 - a);
      Block g;
      g.d0 = 2 * I * r;
      pb.emit(t, dma(sram(int64_t(gbuf)), hbm(int64_t(sc.gu) + a * 2 * I * xe), g, xdt, Dtype::None,
                     {in_sem, kSelf}));
      pb.emit(t, sem_wait(in_sem));
      const Tensor2 gate{sram(int64_t(gbuf)), 2 * I * xe, xdt}, up{sram(int64_t(gbuf) + I * xe), 2 * I * xe, xdt};
      const Tensor2 tt = f32(tmp, I * 4), h{sram(int64_t(obuf)), I * xe, xdt};
      pb.emit(t, vec_unary(Opcode::VSilu, tt, gate, r, I));
      pb.emit(t, vec_binary(Opcode::VMul, h, tt, up, r, I));
      Block o;
      o.d0 = I * r;
      pb.emit(t, dma(hbm(int64_t(sc.h) + a * I * xe), sram(int64_t(obuf)), o, xdt, Dtype::None, {out_sem, kSelf}));
    }
    if (n > 0) pb.emit(t, sem_wait(out_sem, n));
  }
}

GemmSpec gate_up_gemm(const MoeSpec& s, const MoePlan& p, int64_t e, const Scratch& sc) {
  GemmSpec g;
  g.m = p.mb, g.k = s.hidden, g.n = 2 * s.inter;
  g.dtype = s.wdt, g.out = s.x.dtype;
  g.a_dtype = s.x.dtype;  // x converted to the weights' dtype on load
  g.a = hbm(int64_t(sc.x));
  g.b = advance(s.w13, e * 2 * s.inter * s.hidden * esize(s.wdt));
  g.c = hbm(int64_t(sc.gu));
  g.b_transposed = true;
  return g;
}

// Into block j of expert e's slot rows (a routed block of `rows` tokens): `row` holds j * mb
// rows' bytes.
GemmSpec down_gemm(const MoeSpec& s, const MoePlan& p, int64_t e, int64_t rows, const Scratch& sc, uint8_t row) {
  GemmSpec g;
  g.m = p.mb, g.k = s.inter, g.n = s.hidden;
  g.dtype = s.wdt, g.out = s.y.dtype, g.a_dtype = s.x.dtype;
  g.a = hbm(int64_t(sc.h));
  g.b = advance(s.w2, e * s.hidden * s.inter * esize(s.wdt));
  g.c = hbm(int64_t(sc.y) + e * dispatch_stride(s, rows, p.mb) * s.hidden * esize(s.y.dtype), row);
  g.b_transposed = true;
  return g;
}

// Expert e's tokens in block j (`slot` holds j * mb * 4, the dispatch table's offset) into x_e:
// the tiles share the block's rows.
void emit_dispatch(KernelContext& ctx, const MoeSpec& s, const MoePlan& p, const RouteTables& rt, int64_t e,
                   int64_t r0, int64_t rows, const Scratch& sc, uint8_t slot) {
  ProgramBuilder& pb = ctx.pb;
  const int64_t xe = esize(s.x.dtype), ldx = s.x.ld ? s.x.ld : s.hidden * xe;
  const int64_t per_tile = ceil_div(p.mb, pb.tiles()), stride = dispatch_stride(s, rows, p.mb);
  const int sem = ctx.sem();
  for (int t = 0; t * per_tile < p.mb; ++t) {
    const int64_t a = t * per_tile, n = std::min(per_tile, p.mb - a);
    pb.emit(t, gather(hbm(int64_t(sc.x) + a * s.hidden * xe), s.hidden * xe, advance(s.x.addr, r0 * ldx), ldx,
                      rows, sram(int64_t(rt.dispatch) + (e * stride + a) * 4, slot), n, s.hidden, s.x.dtype,
                      s.x.dtype, {sem, kSelf}));
    pb.emit(t, sem_wait(sem));
  }
}

// y rows r0.. = sum over j of combine weight j x the slot row token r's j-th expert filled.
void emit_combine(KernelContext& ctx, const MoeSpec& s, const MoePlan& p, const RouteTables& rt, int64_t r0,
                  int64_t rows, const Scratch& sc) {
  ProgramBuilder& pb = ctx.pb;
  const int64_t H = s.hidden, k = s.top_k, ye = esize(s.y.dtype), ldy = s.y.ld ? s.y.ld : H * ye;
  const int64_t chunk = p.combine_chunk, per_tile = ceil_div(rows, pb.tiles());
  const uint64_t acc = ctx.sram(uint64_t(chunk * H * 4)), in = ctx.sram(uint64_t(k * chunk * H * 4));
  const int in_sem = ctx.sem(), out_sem = ctx.sem();
  for (int t = 0; t * per_tile < rows; ++t) {
    const int64_t first = t * per_tile, last = std::min(rows, first + per_tile);
    int64_t stores = 0;
    for (int64_t a = first; a < last; a += chunk, ++stores) {
      const int64_t r = std::min(chunk, last - a);
      for (int64_t j = 0; j < k; ++j) {
        pb.emit(t, gather(sram(int64_t(in) + j * chunk * H * 4), H * 4, hbm(int64_t(sc.y)), H * ye,
                          s.experts * dispatch_stride(s, rows, p.mb), sram(int64_t(rt.combine) + (j * rows + a) * 4), r, H,
                          s.y.dtype, Dtype::Fp32, {in_sem, kSelf}));
      }
      pb.emit(t, sem_wait(in_sem, k));
      for (int64_t j = 0; j < k; ++j) {
        const Tensor2 w{sram(int64_t(rt.combine_weights) + (j * rows + a) * 4), 4, Dtype::Fp32};
        const Tensor2 x = f32(in + uint64_t(j * chunk * H * 4));
        if (j == 0) {
          pb.emit(t, vec_binary(Opcode::VMul, f32(acc), x, w, r, H, Bcast::Col));
        } else {
          pb.emit(t, vec_binary(Opcode::VMul, x, x, w, r, H, Bcast::Col));
          pb.emit(t, vec_binary(Opcode::VAdd, f32(acc), f32(acc), x, r, H));
        }
      }
      Block out;
      out.d0 = H, out.d1 = r, out.src_strides = {H * 4, 0, 0}, out.dst_strides = {ldy, 0, 0};
      pb.emit(t, dma(advance(s.y.addr, (r0 + a) * ldy), sram(int64_t(acc)), out, Dtype::Fp32, s.y.dtype,
                     {out_sem, kSelf}));
      pb.emit(t, sem_wait(out_sem));  // acc is reused by the next chunk
    }
  }
}

// Every expert is a round: a sampled run simulates four (KernelContext::sample_rounds), each
// standing for its share of the others; within each, the GEMMs' passes are sampled in turn.
void emit_moe_gemm(KernelContext& op, int half, const MoeSpec& s, const MoePlan& p) {
  ProgramBuilder& pb = op.pb;
  const Scratch sc = scratch_of(s, p, p.scratch);
  const RouteTables rt = route_tables(op, s, p.route_rows, p.mb);
  const int route_sem = op.sem();
  const uint8_t count = pb.reg_alloc(), slot = pb.reg_alloc(), row = pb.reg_alloc();
  const int64_t rounds = op.plan_rounds(s.experts);
  for (int64_t r0 = 0; r0 < s.t; r0 += p.route_rows) {
    const int64_t rows = std::min(p.route_rows, s.t - r0), cap = moe_capacity(s, rows);
    if (r0 > 0) pb.barrier_all();  // the last block's combine has read its tables
    for (int t = 0; t < pb.tiles(); ++t) emit_route(pb, t, s, rt, r0, rows, p.mb, route_sem);
    for (int64_t k = 0; k < rounds; ++k) {
      const int64_t e = op.round_at(k);
      if (k > 0) pb.barrier_all();
      for (int t = 0; t < pb.tiles(); ++t) {
        op.begin_round(t, k);
        // One trip per block of mb slots that holds tokens of expert e.
        pb.emit(t, ld(count, sram(int64_t(rt.counts) + e * 4), ceil_div(cap, p.mb)));
        pb.emit(t, li(slot, 0));
        pb.emit(t, li(row, 0));
        pb.emit(t, loop(0, count));
      }
      auto in_expert = [&] {
        KernelContext ctx(pb, half);
        ctx.nest_in(op, k);
        return ctx;
      };
      {
        KernelContext ctx = in_expert();
        emit_dispatch(ctx, s, p, rt, e, r0, rows, sc, slot);
      }
      pb.barrier_all();
      {
        KernelContext ctx = in_expert();
        emit_gemm(ctx, gate_up_gemm(s, p, e, sc), p.gate_up);
      }
      pb.barrier_all();
      {
        KernelContext ctx = in_expert();
        emit_act(ctx, s, p, sc);
      }
      pb.barrier_all();
      {
        KernelContext ctx = in_expert();
        emit_gemm(ctx, down_gemm(s, p, e, rows, sc, row), p.down);
      }
      pb.barrier_all();  // x_e and h are rewritten by the next block
      for (int t = 0; t < pb.tiles(); ++t) {
        pb.emit(t, addi(slot, slot, p.mb * 4));
        pb.emit(t, addi(row, row, p.mb * s.hidden * esize(s.y.dtype)));
        pb.emit(t, end_loop());
      }
    }
    pb.barrier_all();
    KernelContext ctx(pb, half);
    ctx.nest_in(op, rounds - 1);
    emit_combine(ctx, s, p, rt, r0, rows, sc);
  }
  pb.reg_release(count);
  pb.reg_release(slot);
  pb.reg_release(row);
}

}  // namespace

int64_t moe_capacity(const MoeSpec& s, int64_t rows) {
  if (s.capacity_factor <= 0.0) return rows;  // dropless
  const double fair = double(rows) * double(s.top_k) / double(s.routed);
  return std::clamp<int64_t>(int64_t(std::ceil(s.capacity_factor * fair)), 1, rows);
}

// ---------------------------------------------------------------------------------------------
// Experts

MoePlan plan_moe(const arch::Arch& a, const MoeSpec& s, uint64_t budget, uint64_t shared_budget,
                 bool gemm) {
  MoePlan p;
  p.gemm = gemm;
  const int64_t T = s.t, H = s.hidden, I = s.inter, E = s.experts;
  const int64_t we = esize(s.wdt);
  if (gemm) {
    // Route as many tokens at once as leave three quarters of the SRAM to the experts' kernels.
    p.route_rows = T;
    while (p.route_rows > 1 && route_bytes(s, p.route_rows, moe_capacity(s, p.route_rows)) * 4 > budget) {
      p.route_rows = ceil_div(p.route_rows, 2);
    }
    const int64_t cap = moe_capacity(s, p.route_rows);
    // An expert's tokens go through its GEMMs in blocks: each block reads the expert's weights
    // and its last one is padded. Blocks hold a quarter more than an even share of the tokens
    // (in whole array rows, within one GEMM pass): one block an expert under uniform routing,
    // more for the experts a skewed routing favours.
    p.mb = cap;
    const uint64_t route = route_bytes(s, p.route_rows, cap);
    if (route * 2 > budget) {
      throw CompileError(fmt::format("the routing of one token over {} experts does not fit the tile SRAM of {}",
                                     s.routed, a.name));
    }
    const uint64_t left = budget - route - 64;
    const Scratch sc = scratch_of(s, p, 0);
    const GemmPlan whole = plan_gemm(a, gate_up_gemm(s, p, 0, sc), left, shared_budget);
    const int64_t rows_unit = a.chip.tile.systolic.rows;
    const double even = double(p.route_rows) * double(s.top_k) / double(s.routed);
    const int64_t share = ceil_div(int64_t(std::ceil(1.25 * even)), rows_unit) * rows_unit;
    p.mb = std::clamp<int64_t>(share, std::min(cap, rows_unit), std::min(cap, int64_t(whole.gr) * whole.bm));
    p.gate_up = plan_gemm(a, gate_up_gemm(s, p, 0, sc), left, shared_budget);
    p.down = plan_gemm(a, down_gemm(s, p, 0, p.route_rows, sc, 0), left, shared_budget);
    p.act.per_tile = ceil_div(p.mb, a.tiles());
    p.act.tiles = ceil_div(p.mb, p.act.per_tile);
    const int64_t row = act_row_bytes(s);
    if (uint64_t(row + 4096) > left) {
      throw CompileError(fmt::format(
          "one {}-column row of the experts' activation does not fit the tile SRAM of {}", I, a.name));
    }
    p.act.chunk = std::min(p.act.per_tile, (int64_t(left) - 4096) / row);
    const int64_t combine_row = (s.top_k + 1) * H * 4;
    p.combine_per_tile = ceil_div(p.route_rows, a.tiles());
    p.combine_chunk = std::min(p.combine_per_tile, (int64_t(left) - 4096) / combine_row);
    if (p.combine_chunk < 1) {
      throw CompileError(fmt::format("combining a token's {} expert outputs of {} features does not fit the tile SRAM of {}",
                                     s.top_k, H, a.name));
    }
    p.scratch_bytes = scratch_bytes(s, p);
    return p;
  }

  const Arrays arr = arrays(a, s.wdt);
  const int64_t tiles = a.tiles();
  const int64_t target = std::min<int64_t>(kTargetChunkBytes, int64_t(budget) / 8);
  p.per_tile = ceil_div(E * I, tiles);
  p.tiles = ceil_div(E * I, p.per_tile);
  for (int64_t t = 0; t < p.tiles; ++t) {
    for (const Segment& sg : segments(s, p, t)) p.seg = std::max(p.seg, sg.n);
  }
  p.out_cols = ceil_div(H, tiles);
  // Gate/up chunks: cb columns of W1 and W3, near the target size; down chunks about as large.
  const int64_t width = std::min(arr.width, p.seg);
  p.cb = std::min(p.seg, std::max(width, target / (2 * H * we)));
  if (p.cb > width) p.cb = p.cb / width * width;
  p.k_chunk = H;
  const MoePlan first = p;
  auto shape_down = [&] {
    const int64_t chunk = std::max<int64_t>(2 * p.cb * p.k_chunk * we, 1);
    const int64_t hw = std::min(H, arr.width);
    p.kd = std::min(p.seg, std::max(arr.kq, chunk / (hw * we)));
    if (p.kd < p.seg) p.kd = std::max<int64_t>(1, p.kd / arr.kq * arr.kq);
    p.hrows = std::min(H, std::max(hw, chunk / (p.kd * we)));
    if (p.hrows > hw && p.hrows < H) p.hrows = p.hrows / hw * hw;
  };
  auto fixed = [&](int64_t tb) {
    return tb * H * we + int64_t(route_bytes(s, tb, moe_capacity(s, tb))) + 2 * tb * 2 * p.cb * 4 + tb * p.cb * 4 + 2 * tb * p.seg * we +
           tb * H * 4 + tb * p.out_cols * 4 + 4096;
  };
  auto need = [&](int64_t tb) {
    const int64_t chunk = MoeStream::chunk_bytes(p, we);
    return uint64_t(fixed(tb) + std::max(p.buffers * chunk, 2 * tb * p.out_cols * 4));
  };
  // Tokens first: a token block smaller than the batch re-reads every weight. Blocks as large as
  // fit with the smallest sensible chunks, then chunks as large as fit.
  p.cb = std::min(p.seg, width);
  p.k_chunk = std::min(H, arr.kq);
  shape_down();
  p.tb = T;
  while (p.tb > 1 && need(p.tb) > budget) p.tb = ceil_div(p.tb, 2);
  const int64_t tb = p.tb;
  p = first;
  p.tb = tb;
  shape_down();
  while (need(p.tb) > budget) {
    if (p.k_chunk > arr.kq && p.k_chunk >= p.cb) {
      p.k_chunk = std::max(arr.kq, ceil_div(p.k_chunk, 2 * arr.kq) * arr.kq);
    } else if (p.cb > 1) {
      p.cb = ceil_div(p.cb, 2);
    } else if (p.buffers > 2) {
      p.buffers = 2;
    } else {
      throw CompileError(fmt::format(
          "the experts of a {}-token step do not fit the tile SRAM of {} ({} bytes needed, {} "
          "available)",
          T, a.name, need(p.tb), budget));
    }
    shape_down();
  }
  p.blocks = ceil_div(T, p.tb);
  if (p.blocks == 1) return p;

  // The split-K partials [T, H] do not fit with all the tokens. Where every tile sees one shared
  // memory (a GPU's L2), two passes read the weights once instead: h [T, E*I] goes to the shared
  // memory, then every tile computes its output columns from it.
  const bool one_shared =
      a.chip.shared_memory.scope == arch::SharedScope::Chip || a.chip.cluster_size >= a.tiles();
  // Where two passes do not fit either, per-expert GEMMs read each weight once per pass row
  // instead of once per token block.
  if (tiles < 2) return p;
  const MoePlan gemm_plan = plan_moe(a, s, budget, shared_budget, true);
  if (!one_shared || uint64_t(T * (E * I * we + H * esize(s.x.dtype))) > shared_budget) return gemm_plan;
  MoePlan q = first;
  q.two_pass = true;
  q.tb = T, q.blocks = 1;
  q.hrows = q.kd = 0;
  q.kd2 = std::min(I, std::max(arr.kq, target / (q.out_cols * we)));
  if (q.kd2 < I) q.kd2 = q.kd2 / arr.kq * arr.kq;
  auto need2 = [&] {
    return uint64_t(T * H * we + int64_t(route_bytes(s, T, moe_capacity(s, T))) + 2 * T * 2 * q.cb * 4 + T * q.cb * 4 +
                    2 * T * q.cb * we + T * q.out_cols * 4 + 4096 +
                    q.buffers * (T * q.kd2 * we + MoeStream::chunk_bytes(q, we)));
  };
  // Chunks no narrower than the arrays (narrower ones would leave them idle and take an
  // instruction stream far longer than the GEMMs'), and K chunks of at least 128 (shorter ones
  // spend their MATMULs filling and draining the arrays), else chunks of half the arrays' width;
  // below that, per-expert GEMMs.
  const int64_t min_cb = std::min(q.seg, arr.width), min_k = std::max<int64_t>(arr.kq, 128);
  auto halve_k = [&](int64_t floor) { q.k_chunk = std::max(floor, ceil_div(q.k_chunk, 2 * arr.kq) * arr.kq); };
  while (need2() > budget) {
    // Halve the larger of the two kinds of weight chunk (with its slices of x or h).
    const bool gate_up_larger = 2 * q.cb * q.k_chunk >= (q.out_cols + T) * q.kd2;
    if (gate_up_larger && q.k_chunk > min_k && q.k_chunk >= q.cb) {
      halve_k(min_k);
    } else if (gate_up_larger && q.cb > min_cb) {
      q.cb = std::max(min_cb, ceil_div(q.cb, 2));
    } else if (q.kd2 > min_k) {
      q.kd2 = std::max(min_k, ceil_div(q.kd2, 2 * arr.kq) * arr.kq);
    } else if (q.k_chunk > min_k) {
      halve_k(min_k);
    } else if (q.cb > std::max<int64_t>(1, min_cb / 2)) {
      q.cb = std::max<int64_t>(std::max<int64_t>(1, min_cb / 2), ceil_div(q.cb, 2));
    } else {
      return gemm_plan;  // not even two passes fit
    }
  }
  return q;
}

void emit_moe(KernelContext& ctx, int half, const MoeSpec& s, const MoePlan& p) {
  if (p.gemm) {
    emit_moe_gemm(ctx, half, s, p);
    return;
  }
  MoeStream(ctx, s, p).emit();
}

std::string moe_tiles_note(const MoeSpec& s, const MoePlan& p) {
  const std::string experts =
      s.experts == s.routed ? fmt::format("{} experts", s.experts)
                            : fmt::format("experts {}..{} of {}", s.first, s.first + s.experts - 1, s.routed);
  if (p.gemm) {
    return fmt::format(
        "{}; tokens routed {} at a time, {} slots an expert; per expert, per block of {} slots with tokens: "
        "gather, GEMM [g|u] blocks {}x{}, k chunks of {}; rows h = silu(g) * u, {} rows a tile; GEMM down "
        "blocks {}x{}, k chunks of {}; then each token's {} slot rows weighted and summed, {} rows at a time; "
        "HBM scratch {} bytes",
        experts, p.route_rows, moe_capacity(s, p.route_rows), p.mb, p.gate_up.bm, p.gate_up.bn, p.gate_up.bk,
        p.act.per_tile, p.down.bm, p.down.bn, p.down.bk, s.top_k, p.combine_chunk, p.scratch_bytes);
  }
  if (p.two_pass) {
    return fmt::format(
        "two passes: {} x {} intermediate columns, {} a tile on {} tiles (experts without tokens skipped); "
        "gate/up chunks {}+{} x {}, h = silu(g) * u * w_e to shared memory [{}, {}]; then {} output columns a "
        "tile over the experts with tokens, W2 chunks {} x {} with the matching h slices, {} buffers",
        experts, s.inter, p.per_tile, p.tiles, p.cb, p.cb, p.k_chunk, p.tb, s.experts * s.inter, p.out_cols,
        p.out_cols, p.kd2, p.buffers);
  }
  return fmt::format(
      "split-K: {} x {} intermediate columns, {} a tile on {} tiles (expert runs up to {}; runs of experts "
      "without tokens skipped); gate/up chunks {}+{} x {}, down chunks {} x {}, {} buffers; {} token block{} of "
      "{}; fp32 partials [{}, {}] reduced over tiles, {} columns a tile",
      experts, s.inter, p.per_tile, p.tiles, p.seg, p.cb, p.cb, p.k_chunk, p.hrows, p.kd, p.buffers, p.blocks,
      p.blocks == 1 ? "" : "s", p.tb, p.tb, s.hidden, p.out_cols);
}

std::string moe_flops_note(const MoeSpec& s, const MoePlan& p) {
  const double per_token = 2.0 * 3.0 * double(s.hidden) * double(s.inter);
  const double routed = per_token * double(s.t) * double(s.top_k) * double(s.experts) / double(s.routed);
  const std::string capacity =
      s.capacity_factor > 0.0 ? fmt::format("at most {} tokens an expert per block (capacity factor {})",
                                            moe_capacity(s, p.gemm ? p.route_rows : p.tb), s.capacity_factor)
                              : std::string("dropless");
  if (p.gemm) {
    return fmt::format(
        "top-{} routing, {}: about {:.4g} GFLOP on this chip with uniform routing, plus padding of each "
        "expert's last block to {} rows; an expert's weights are read once per block of its tokens",
        s.top_k, capacity, routed / 1e9, p.mb);
  }
  return fmt::format(
      "top-{} routing, {}: every token row of a block runs through each expert that has tokens ({:.4g} GFLOP "
      "if all {} do, where the routed tokens need {:.4g}); decode reads the weights of the experts with tokens, "
      "{} time{}",
      s.top_k, capacity, per_token * double(s.t) * double(s.experts) / 1e9, s.experts, routed / 1e9, p.blocks,
      p.blocks == 1 ? "" : "s");
}

}  // namespace tessera::compiler
