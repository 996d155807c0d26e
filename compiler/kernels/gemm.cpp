#include "compiler/kernels/gemm.hpp"

#include "arch/derived.hpp"
#include "arch/systolic.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace tessera::compiler {
namespace {

int64_t clamp0(int64_t v, int64_t hi) {
  return std::clamp<int64_t>(v, 0, hi);
}

// What both GEMM kernels share: operand layout, and each output block's accumulator, bias,
// MATMUL with its epilogue, and store.
class GemmBase {
 protected:
  GemmBase(KernelContext& ctx, const GemmSpec& s, const GemmPlan& plan)
      : ctx_(ctx),
        pb_(ctx.pb),
        s_(s),
        p_(plan),
        e_(esize(s.dtype)),
        eo_(esize(s.out)),
        adt_(s.a_dtype == Dtype::None ? s.dtype : s.a_dtype),
        ea_(esize(adt_)),
        lda_(s.lda ? s.lda : s.k * ea_),
        ldb_(s.ldb ? s.ldb : (s.b_transposed ? s.k : s.n) * e_),
        ldc_(s.ldc ? s.ldc : s.n * eo_) {}

  // The accumulator, output block and bias of one tile, and their semaphores.
  void alloc_output() {
    acc_ = ctx_.sram(uint64_t(p_.bm * p_.bn * 4));
    out_ = ctx_.sram(uint64_t(p_.bm * p_.bn * eo_));
    stored_ = ctx_.sem();
    if (s_.has_bias) bias_ = ctx_.sram(uint64_t(p_.bn * 4)), bias_sem_ = ctx_.sem();
  }

  // The bias of output columns [col0, col0 + n), converted to fp32 for the epilogue.
  void load_bias(int t, int64_t col0, int64_t n) {
    Block blk;
    blk.d0 = n;
    pb_.emit(t, dma(sram(int64_t(bias_)), advance(s_.bias, col0 * esize(s_.bias_dtype)), blk,
                    s_.bias_dtype, Dtype::Fp32, {bias_sem_, int64_t(isa::kTileSelf)}));
  }

  // acc (+)= A x B on buffers laid out bm x bk and bk x bn (bn x bk transposed); the last
  // chunk of K writes the output block through the epilogue (bias, activation, dtype).
  void multiply(int t, uint64_t abuf, uint64_t bbuf, int64_t m, int64_t kc, int64_t n,
                bool accumulate, bool last) {
    MatmulOperands mm;
    mm.acc = sram(int64_t(acc_)), mm.a = sram(int64_t(abuf)), mm.b = sram(int64_t(bbuf));
    mm.m = m, mm.k = kc, mm.n = n;
    mm.lda = p_.bk * e_, mm.ldb = (s_.b_transposed ? p_.bk : p_.bn) * e_, mm.ldc = p_.bn * 4;
    mm.tb = s_.b_transposed;
    mm.dtype = s_.dtype;
    mm.accumulate = accumulate;
    if (last) {
      mm.out = sram(int64_t(out_)), mm.ldo = p_.bn * eo_, mm.odt = s_.out, mm.act = s_.act;
      if (s_.has_bias) {
        pb_.emit(t, sem_wait(bias_sem_));
        mm.has_bias = true, mm.bias = sram(int64_t(bias_));
      }
    }
    pb_.emit(t, matmul(mm));
  }

  // Stores the m x n output block at (row0, col0) of C; signals `stored_`.
  void store(int t, int64_t row0, int64_t col0, int64_t m, int64_t n) {
    Block blk;
    blk.d0 = n, blk.d1 = m, blk.src_strides = {p_.bn * eo_, 0, 0}, blk.dst_strides = {ldc_, 0, 0};
    pb_.emit(t, dma(advance(s_.c, row0 * ldc_ + col0 * eo_), sram(int64_t(out_)), blk, s_.out,
                    Dtype::None, {stored_, int64_t(isa::kTileSelf)}));
  }

  KernelContext& ctx_;
  ProgramBuilder& pb_;
  const GemmSpec& s_;
  GemmPlan p_;
  int64_t e_, eo_;
  Dtype adt_;   // A in HBM
  int64_t ea_;  // its element size
  int64_t lda_, ldb_, ldc_;
  uint64_t acc_ = 0, out_ = 0, bias_ = 0;
  int stored_ = 0, bias_sem_ = 0;
};

// The whole kernel's chunk sequence: every pass walks K in chunks; chunk g of the kernel is
// chunk c of pass p.
class Gemm : GemmBase {
 public:
  Gemm(KernelContext& ctx, const GemmSpec& s, const GemmPlan& plan) : GemmBase(ctx, s, plan) {
    kchunks_ = ceil_div(s.k, p_.bk);
    ar_ = ceil_div(p_.bm, p_.gc);
    br_ = ceil_div(s.b_transposed ? p_.bn : p_.bk, p_.gr);
    passes_ = ctx.plan_rounds(p_.passes_m * p_.passes_n);  // every pass costs the same
    total_ = passes_ * kchunks_;
  }

  void emit() {
    for (int b = 0; b < 2; ++b) {
      abuf_[b] = ctx_.sram(uint64_t(p_.bm * p_.bk * e_));
      bbuf_[b] = ctx_.sram(uint64_t(p_.bk * p_.bn * e_));
    }
    alloc_output();
    for (int b = 0; b < 2; ++b)
      data_[b] = ctx_.sem(), free_a_[b] = ctx_.sem(), free_b_[b] = ctx_.sem();
    ra_ = pb_.reg_alloc();
    rb_ = pb_.reg_alloc();
    for (int t = 0; t < p_.gr * p_.gc; ++t) emit_tile(t / p_.gc, t % p_.gc);
    pb_.reg_release(ra_);
    pb_.reg_release(rb_);
  }

 private:
  struct Chunk {
    int64_t pass_m, pass_n, c;  // pass and chunk within the pass
    int64_t kc;                 // K rows in this chunk
  };
  Chunk chunk(int64_t g) const {
    const int64_t pass = ctx_.round_at(g / kchunks_), c = g % kchunks_;
    return {pass / p_.passes_n, pass % p_.passes_n, c, std::min(p_.bk, s_.k - c * p_.bk)};
  }
  int64_t row0(const Chunk& x, int i) const { return (x.pass_m * p_.gr + i) * p_.bm; }
  int64_t col0(const Chunk& x, int j) const { return (x.pass_n * p_.gc + j) * p_.bn; }
  int64_t rows(const Chunk& x, int i) const { return clamp0(s_.m - row0(x, i), p_.bm); }
  int64_t cols(const Chunk& x, int j) const { return clamp0(s_.n - col0(x, j), p_.bn); }
  // Rows of the A slice tile (i, j) loads, and of its B slice.
  int64_t a_rows(const Chunk& x, int i, int j) const { return clamp0(rows(x, i) - j * ar_, ar_); }
  // B slices split K (row-major B) or N (transposed B, whose rows are output columns).
  int64_t b_rows(const Chunk& x, int i, int j) const {
    if (s_.b_transposed) return clamp0(cols(x, j) - i * br_, br_);
    return cols(x, j) > 0 ? clamp0(x.kc - i * br_, br_) : 0;
  }
  int tile(int i, int j) const { return i * p_.gc + j; }

  // Signals a consumer (i, j) sends when done with buffer b holding chunk x.
  void signal_free(int i, int j, int b, const Chunk& x, isa::After after) {
    for (int jj = 0; jj < p_.gc; ++jj) {
      if (a_rows(x, i, jj) > 0) pb_.emit(tile(i, j), sem_signal(tile(i, jj), free_a_[b], 1, after));
    }
    for (int ii = 0; ii < p_.gr; ++ii) {
      if (b_rows(x, ii, j) > 0) pb_.emit(tile(i, j), sem_signal(tile(ii, j), free_b_[b], 1, after));
    }
  }
  // Waits of producer (i, j) for the signals consumers sent when done with chunk x.
  void wait_free(int i, int j, int b, const Chunk& x) {
    // Every tile of my row (column) got my A (B) slice and answers for it.
    if (a_rows(x, i, j) > 0) pb_.emit(tile(i, j), sem_wait(free_a_[b], p_.gc));
    if (b_rows(x, i, j) > 0) pb_.emit(tile(i, j), sem_wait(free_b_[b], p_.gr));
  }

  // Points the registers at tile (i, j)'s slices of chunk x.
  void set_registers(int i, int j, const Chunk& x) {
    const int t = tile(i, j);
    const int64_t a = (row0(x, i) + j * ar_) * lda_ + x.c * p_.bk * ea_;
    const int64_t b = s_.b_transposed ? (col0(x, j) + i * br_) * ldb_ + x.c * p_.bk * e_
                                      : (x.c * p_.bk + i * br_) * ldb_ + col0(x, j) * e_;
    pb_.emit(t, addi(ra_, s_.a.reg, s_.a.offset + a));
    pb_.emit(t, addi(rb_, s_.b.reg, s_.b.offset + b));
  }

  // Moves the registers to the next chunk of K: along A's rows, and along B's columns or,
  // transposed, its rows.
  void advance_k(int t) {
    pb_.emit(t, addi(ra_, ra_, p_.bk * ea_));
    pb_.emit(t, addi(rb_, rb_, s_.b_transposed ? p_.bk * e_ : p_.bk * ldb_));
  }

  // Loads tile (i, j)'s slices of chunk x into buffer b of every consumer.
  void load_and_forward(int i, int j, int b, const Chunk& x) {
    const int t = tile(i, j);
    const int64_t ar = a_rows(x, i, j), br = b_rows(x, i, j);
    if (ar > 0) {
      const int64_t slot = abuf_[b] + j * ar_ * p_.bk * e_;
      Block blk;
      blk.d0 = x.kc, blk.d1 = ar, blk.src_strides = {lda_, 0, 0},
      blk.dst_strides = {p_.bk * e_, 0, 0};
      pb_.emit(t, dma(sram(slot), hbm(0, ra_), blk, adt_, s_.dtype,
                      {data_[b], int64_t(isa::kTileSelf)}));
      Block fwd = blk;
      fwd.src_strides = fwd.dst_strides;
      for (int jj = 0; jj < p_.gc; ++jj) {
        if (jj != j)
          pb_.emit(t, dma(sram_of(tile(i, jj), slot), sram(slot), fwd, s_.dtype, Dtype::None,
                          {data_[b], tile(i, jj)}));
      }
    }
    if (br > 0) {
      // Row-major B: slice rows are K rows of bn columns. Transposed: rows are N rows of kc.
      const int64_t row = s_.b_transposed ? p_.bk : p_.bn;
      const int64_t slot = bbuf_[b] + i * br_ * row * e_;
      Block blk;
      blk.d0 = s_.b_transposed ? x.kc : cols(x, j), blk.d1 = br;
      blk.src_strides = {ldb_, 0, 0}, blk.dst_strides = {row * e_, 0, 0};
      pb_.emit(t, dma(sram(slot), hbm(0, rb_), blk, s_.dtype, Dtype::None,
                      {data_[b], int64_t(isa::kTileSelf)}));
      Block fwd = blk;
      fwd.src_strides = fwd.dst_strides;
      for (int ii = 0; ii < p_.gr; ++ii) {
        if (ii != i)
          pb_.emit(t, dma(sram_of(tile(ii, j), slot), sram(slot), fwd, s_.dtype, Dtype::None,
                          {data_[b], tile(ii, j)}));
      }
    }
  }

  int64_t arrivals(int i, int j, const Chunk& x) const {
    int64_t n = 0;
    for (int jj = 0; jj < p_.gc; ++jj) n += a_rows(x, i, jj) > 0;
    for (int ii = 0; ii < p_.gr; ++ii) n += b_rows(x, ii, j) > 0;
    return n;
  }

  // Chunk g on tile (i, j): wait for it, multiply, free the buffer, prepare chunk g + 1.
  void step(int i, int j, int64_t g) {
    const int t = tile(i, j);
    const int b = int(g % 2);
    const Chunk x = chunk(g);
    const int64_t m = rows(x, i), n = cols(x, j);
    if (x.c == 0 && s_.has_bias && m > 0 && n > 0) load_bias(t, col0(x, j), n);
    const int64_t n_arrive = arrivals(i, j, x);
    if (n_arrive > 0) pb_.emit(t, sem_wait(data_[b], n_arrive));
    const bool last = x.c == kchunks_ - 1;
    if (m > 0 && n > 0) multiply(t, abuf_[b], bbuf_[b], m, x.kc, n, x.c > 0, last);
    signal_free(i, j, b, x, isa::After::Matmul);
    if (g + 1 < total_) {
      // The previous user of the other buffer was chunk g - 1 (or nobody, for g = 0: the
      // initial signals stand in for it with chunk 1's pattern).
      wait_free(i, j, 1 - b, chunk(g == 0 ? 1 : g - 1));
      const Chunk next = chunk(g + 1);
      if (next.c == 0) set_registers(i, j, next);
      load_and_forward(i, j, 1 - b, next);
      if (next.c + 1 < kchunks_) advance_k(t);
    }
    if (last && m > 0 && n > 0) store(t, row0(x, i), col0(x, j), m, n);
  }

  void emit_tile(int i, int j) {
    const int t = tile(i, j);
    // Buffer 1 starts free: tell its producers (with the pattern of chunk 1, its first user).
    if (total_ > 1) signal_free(i, j, 1, chunk(1), isa::After::None);
    const Chunk first = chunk(0);
    set_registers(i, j, first);
    load_and_forward(i, j, 0, first);
    if (kchunks_ > 1) advance_k(t);
    int64_t stores = 0;
    for (int64_t pass = 0; pass < passes_; ++pass) {
      ctx_.begin_round(t, pass);
      const int64_t g0 = pass * kchunks_, g1 = g0 + kchunks_;
      // Chunks after the first and before the last two are alike in pairs: loop over them.
      int64_t g = g0;
      step(i, j, g++);
      const int64_t middle = std::max<int64_t>(0, (g1 - 2) - g);
      if (middle >= 4) {
        pb_.emit(t, loop(middle / 2));
        step(i, j, g);
        step(i, j, g + 1);
        pb_.emit(t, end_loop());
        g += middle / 2 * 2;
      }
      while (g < g1) step(i, j, g++);
      const Chunk x = chunk(g1 - 1);
      stores += rows(x, i) > 0 && cols(x, j) > 0;
    }
    // Drain what is still owed: the free signals of the last use of each buffer, and the stores.
    wait_free(i, j, int((total_ - 1) % 2), chunk(total_ - 1));
    if (total_ > 1) wait_free(i, j, int(total_ % 2), chunk(total_ - 2));
    if (stores > 0) pb_.emit(t, sem_wait(stored_, stores));
  }

  int64_t kchunks_ = 0, ar_ = 0, br_ = 0, passes_ = 0, total_ = 0;
  uint64_t abuf_[2] = {}, bbuf_[2] = {};
  int data_[2] = {}, free_a_[2] = {}, free_b_[2] = {};
  uint8_t ra_ = 0, rb_ = 0;
};

// The GEMM through shared memory (see gemm.hpp).
class GemmViaShared : GemmBase {
 public:
  GemmViaShared(KernelContext& ctx, const GemmSpec& s, const GemmPlan& plan)
      : GemmBase(ctx, s, plan) {
    arows_ = p_.gr * p_.bm;
    bcols_ = p_.gc * p_.bn;
    panels_ = ceil_div(s.k, p_.panel);
  }

  void emit() {
    // Rounds of equal cost: single passes; or, with A rows resident (loaded by a pass row's
    // first pass only) in several pass rows, pass rows, and within each the passes after the
    // first. (With one pass row only the first pass loads A, and the first round is always
    // simulated.)
    const bool by_rows = p_.a_resident && p_.passes_m > 1;
    const int64_t rounds = ctx_.plan_rounds(by_rows ? p_.passes_m : p_.passes_m * p_.passes_n);
    for (int64_t e = 0; e < rounds; ++e) {
      const int64_t r = ctx_.round_at(e);
      if (!by_rows) {
        pass_.push_back(r), round_.push_back({e, 0});
        continue;
      }
      KernelContext& row = rows_.emplace_back(ctx_.pb);
      row.nest_in(ctx_, e);
      const int64_t passes = row.plan_rounds(p_.passes_n);
      for (int64_t j = 0; j < passes; ++j) pass_.push_back(r * p_.passes_n + row.round_at(j)), round_.push_back({e, j});
    }
    const int64_t passes = int64_t(pass_.size());
    const uint64_t a_bytes = uint64_t(arows_ * s_.k * e_), b_panel = uint64_t((p_.b_direct ? 0 : bcols_) * p_.panel * e_);
    for (int64_t e = 0, slot = -1; e < passes; ++e) {
      const int64_t pm = pass_[size_t(e)] / p_.passes_n;
      const bool first = e == 0 || pm != pass_[size_t(e - 1)] / p_.passes_n;
      if (first) ++slot;
      row_first_.push_back(first), row_slot_.push_back(slot % 2);
    }
    if (p_.a_resident) {
      for (uint64_t& r : a_rows_) r = ctx_.shared(a_bytes);
    }
    const uint64_t panel_bytes = b_panel + (p_.a_resident ? 0 : uint64_t(arows_ * p_.panel * e_));
    for (int b = 0; b < 2; ++b) panel_[b] = ctx_.shared(panel_bytes), staged_[b] = ctx_.sem();
    for (int64_t b = 0; b < p_.buffers; ++b) {
      abuf_.push_back(ctx_.sram(uint64_t(p_.bm * p_.bk * e_)));
      bbuf_.push_back(ctx_.sram(uint64_t(p_.bk * p_.bn * e_)));
      data_.push_back(ctx_.sem());
    }
    alloc_output();
    // Panels of every pass in one sequence g = pass * panels + panel, in two shared buffers. Two
    // barriers per panel: "panel g is staged" (each tile waits for its share, then meets the
    // others) before any tile loads from it, and "every tile is done with panel g - 1" (met after
    // each tile's first chunk of panel g) before panel g + 1 is staged into g - 1's buffer. A
    // tile's chunk loads run ahead across panels, so the arrays do not wait for a barrier.
    total_ = passes * panels_;
    for (int64_t g = 0; g < total_; ++g) {
      staged_barrier_.push_back(pb_.barrier_id());
      done_barrier_.push_back(g >= 1 ? pb_.barrier_id() : -1);
    }
    for (int t = 0; t < ctx_.tiles(); ++t) emit_tile(t);
  }

 private:
  struct Where {
    int64_t pm, pn, p;  // pass row, pass column, panel
  };
  Where where(int64_t g) const {
    const int64_t pass = pass_[size_t(g / panels_)];
    return {pass / p_.passes_n, pass % p_.passes_n, g % panels_};
  }

  // Panel g into shared buffer g % 2: every tile stages an even share of its rows (A rows, then
  // B's rows: output columns when transposed, else K rows). Emits tile t's share; returns the
  // DMAs it issued.
  int stage(int64_t g, int t) {
    const auto [pm, pn, p] = where(g);
    const int64_t k0 = p * p_.panel, kp = std::min(p_.panel, s_.k - k0);
    const size_t e = size_t(g / panels_);
    const bool a_here = !p_.a_resident || row_first_[e];  // resident A comes with its row's first pass
    const int64_t ra = a_here ? std::min(arows_, s_.m - pm * arows_) : 0,
                  cb = std::min(bcols_, s_.n - pn * bcols_);
    const int64_t rb = p_.b_direct ? 0 : s_.b_transposed ? cb : kp, rows = ra + rb;
    const uint64_t base = panel_[g % 2], b_base = p_.a_resident ? base : base + uint64_t(arows_ * p_.panel * e_);
    // Where A's rows go: the panel, or the resident rows [arows, K].
    const uint64_t a_base = p_.a_resident ? a_rows_[row_slot_[e]] + uint64_t(k0 * e_) : base;
    const int64_t a_ld = (p_.a_resident ? s_.k : p_.panel) * e_;
    int issued = 0;
    {
      const int64_t r0 = t * rows / ctx_.tiles(), r1 = (t + 1) * rows / ctx_.tiles();
      auto copy = [&](Addr src, Dtype sdt, int64_t src_ld, uint64_t dst, int64_t dst_ld, int64_t d0,
                      int64_t n) {
        if (n <= 0) return;
        Block blk;
        blk.d0 = d0, blk.d1 = n, blk.src_strides = {src_ld, 0, 0}, blk.dst_strides = {dst_ld, 0, 0};
        pb_.emit(t, dma(shared(int64_t(dst)), src, blk, sdt, s_.dtype,
                        {staged_[g % 2], int64_t(isa::kTileSelf)}));
        ++issued;
      };
      const int64_t a0 = std::min(r0, ra), a1 = std::min(r1, ra);  // A rows of this tile's share
      copy(advance(s_.a, (pm * arows_ + a0) * lda_ + k0 * ea_), adt_, lda_, a_base + uint64_t(a0 * a_ld), a_ld,
           kp, a1 - a0);
      const int64_t b0 = std::max(r0, ra) - ra, b1 = std::max(r1, ra) - ra;
      if (s_.b_transposed) {  // rows of B are output columns, K along them
        copy(advance(s_.b, (pn * bcols_ + b0) * ldb_ + k0 * e_), s_.dtype, ldb_,
             b_base + uint64_t(b0 * p_.panel * e_), p_.panel * e_, kp, b1 - b0);
      } else {  // rows of B are K rows, the pass's columns along them
        copy(advance(s_.b, (k0 + b0) * ldb_ + pn * bcols_ * e_), s_.dtype, ldb_,
             b_base + uint64_t(b0 * bcols_ * e_), bcols_ * e_, cb, b1 - b0);
      }
    }
    return issued;
  }

  // Tile t's block in panel g and where its operands are.
  struct Block2 {
    int64_t m = 0, n = 0;   // 0: no work in this panel
    int64_t p = 0, k0 = 0, kp = 0, chunks = 0;
    int64_t row0 = 0, col0 = 0, a_ld = 0;
    uint64_t a_base = 0, b_base = 0;
  };
  Block2 block_of(int t, int64_t g) const {
    Block2 x;
    if (t >= p_.gr * p_.gc) return x;  // a tile off the grid only helps to stage
    const auto [pm, pn, p] = where(g);
    const int i = t / p_.gc, j = t % p_.gc;
    x.m = clamp0(s_.m - pm * arows_ - i * p_.bm, p_.bm), x.n = clamp0(s_.n - pn * bcols_ - j * p_.bn, p_.bn);
    if (x.m == 0 || x.n == 0) return {};
    x.p = p, x.k0 = p * p_.panel, x.kp = std::min(p_.panel, s_.k - x.k0), x.chunks = ceil_div(x.kp, p_.bk);
    x.row0 = pm * arows_ + i * p_.bm, x.col0 = pn * bcols_ + j * p_.bn;
    const uint64_t base = panel_[g % 2];
    x.b_base = p_.a_resident ? base : base + uint64_t(arows_ * p_.panel * e_);
    x.a_base = p_.a_resident ? a_rows_[row_slot_[size_t(g / panels_)]] + uint64_t(x.k0 * e_) : base;
    x.a_ld = (p_.a_resident ? s_.k : p_.panel) * e_;
    x.a_base += uint64_t(i * p_.bm * x.a_ld);
    x.b_base += uint64_t(j * p_.bn * (s_.b_transposed ? p_.panel : 1) * e_);
    return x;
  }

  // Chunk c of tile t's block x into chunk buffer b.
  void load(int t, const Block2& x, int64_t c, size_t b) {
    const int64_t kc = std::min(p_.bk, x.kp - c * p_.bk);
    Block a;
    a.d0 = kc, a.d1 = x.m, a.src_strides = {x.a_ld, 0, 0}, a.dst_strides = {p_.bk * e_, 0, 0};
    pb_.emit(t, dma(sram(int64_t(abuf_[b])), shared(int64_t(x.a_base + uint64_t(c * p_.bk * e_))), a, s_.dtype,
                    Dtype::None, {data_[b], int64_t(isa::kTileSelf)}));
    Block bb;
    if (p_.b_direct) {  // rows of B (output columns, or K rows) from HBM
      const int64_t k = x.k0 + c * p_.bk;
      bb.d0 = s_.b_transposed ? kc : x.n, bb.d1 = s_.b_transposed ? x.n : kc;
      bb.src_strides = {ldb_, 0, 0}, bb.dst_strides = {(s_.b_transposed ? p_.bk : p_.bn) * e_, 0, 0};
      const Addr src = advance(s_.b, s_.b_transposed ? x.col0 * ldb_ + k * e_ : k * ldb_ + x.col0 * e_);
      pb_.emit(t, dma(sram(int64_t(bbuf_[b])), src, bb, s_.dtype, Dtype::None, {data_[b], int64_t(isa::kTileSelf)}));
    } else if (s_.b_transposed) {
      bb.d0 = kc, bb.d1 = x.n, bb.src_strides = {p_.panel * e_, 0, 0}, bb.dst_strides = {p_.bk * e_, 0, 0};
      pb_.emit(t, dma(sram(int64_t(bbuf_[b])), shared(int64_t(x.b_base + uint64_t(c * p_.bk * e_))), bb, s_.dtype,
                      Dtype::None, {data_[b], int64_t(isa::kTileSelf)}));
    } else {
      bb.d0 = x.n, bb.d1 = kc, bb.src_strides = {bcols_ * e_, 0, 0}, bb.dst_strides = {p_.bn * e_, 0, 0};
      pb_.emit(t, dma(sram(int64_t(bbuf_[b])), shared(int64_t(x.b_base + uint64_t(c * p_.bk * bcols_ * e_))), bb,
                      s_.dtype, Dtype::None, {data_[b], int64_t(isa::kTileSelf)}));
    }
  }

  // Tile t's program: its share of staging, the barriers, and its blocks chunk by chunk from
  // shared memory into its rotating buffers, loads running buffers - 1 chunks ahead.
  void emit_tile(int t) {
    int issued[2] = {0, 0};  // staging DMAs of the panels in each shared buffer
    for (int64_t g = 0; g < std::min<int64_t>(total_, 2); ++g) issued[g] = stage(g, t);
    std::vector<Block2> blocks;
    std::vector<std::pair<int64_t, int64_t>> chunks;  // (panel, chunk) of every chunk, in order
    for (int64_t g = 0; g < total_; ++g) {
      blocks.push_back(block_of(t, g));
      for (int64_t c = 0; c < blocks.back().chunks; ++c) chunks.push_back({g, c});
    }
    int64_t synced = -1, posted = -1;
    auto sync = [&](int64_t g) {  // panel g is staged
      if (issued[g % 2] > 0) pb_.emit(t, sem_wait(staged_[g % 2], issued[g % 2]));
      pb_.emit(t, barrier(staged_barrier_[size_t(g)], ctx_.tiles()));
      const size_t e = size_t(g / panels_);
      if (g % panels_ == 0 && e > 0) {  // an emitted pass begins: mark its round, or its part of a row
        const auto [k, j] = round_[e];
        if (j > 0) rows_[size_t(k)].begin_round(t, j);
        else if (k != round_[e - 1].first) ctx_.begin_round(t, k);
      }
      synced = g;
    };
    auto post = [&](int64_t g) {  // every tile is done with panel g - 1: stage g + 1 in its place
      if (g >= 1) {
        pb_.emit(t, barrier(done_barrier_[size_t(g)], ctx_.tiles()));
        if (g + 1 < total_) issued[(g + 1) % 2] = stage(g + 1, t);
      }
      posted = g;
    };
    const size_t count = chunks.size();
    size_t next = 0, i = 0;
    int64_t stores = 0;
    for (int64_t g = 0; g < total_; ++g) {
      if (synced < g) sync(g);
      const Block2& x = blocks[size_t(g)];
      if (x.p == 0 && x.chunks > 0 && s_.has_bias) load_bias(t, x.col0, x.n);
      for (int64_t c = 0; c < x.chunks; ++c, ++i) {
        // Loads ahead, into buffers whose last MATMUL the scoreboard waits for; into the next
        // panel only once this one is posted (panel g + 2 is never ahead of its barriers).
        for (; next < count && next < i + size_t(p_.buffers); ++next) {
          const int64_t gx = chunks[next].first;
          if (gx > g && posted < gx - 1) break;
          if (synced < gx) sync(gx);
          load(t, blocks[size_t(gx)], chunks[next].second, next % size_t(p_.buffers));
        }
        const size_t b = i % size_t(p_.buffers);
        pb_.emit(t, sem_wait(data_[b], 2));
        const bool last = x.p == panels_ - 1 && c == x.chunks - 1;
        multiply(t, abuf_[b], bbuf_[b], x.m, std::min(p_.bk, x.kp - c * p_.bk), x.n, x.p > 0 || c > 0, last);
        // Panel g + 1 is staged once this panel's first chunk has arrived: staged earlier, it
        // would share the tile's DMA engine with the first chunk loads while the arrays wait.
        if (c == 0) post(g);
        if (last) store(t, x.row0, x.col0, x.m, x.n), ++stores;
      }
      if (posted < g) post(g);
    }
    if (stores > 0) pb_.emit(t, sem_wait(stored_, stores));
  }

  int64_t arows_ = 0, bcols_ = 0, panels_ = 0, total_ = 0;
  std::vector<int> staged_barrier_, done_barrier_;  // per panel
  uint64_t a_rows_[2] = {};           // resident A rows of two pass rows
  std::vector<int64_t> pass_;  // per emitted pass: the pass
  // per emitted pass: the emitted round it is in, and (by rows) which emitted pass of that row
  std::vector<std::pair<int64_t, int64_t>> round_;
  std::vector<KernelContext> rows_;   // by rows: each emitted row's sampling of its passes
  std::vector<bool> row_first_;       // per emitted pass: the first of its pass row
  std::vector<int64_t> row_slot_;     // per emitted pass: which set of A rows it reads
  uint64_t panel_[2] = {};
  std::vector<uint64_t> abuf_, bbuf_;
  std::vector<int> data_;
  int staged_[2] = {};
};

}  // namespace

namespace {

// The plan on a gr x gc grid: blocks cut to fit the SRAM, then (on a chip-wide shared memory)
// panels, B straight from HBM or A kept resident.
GemmPlan plan_on_grid(const arch::Arch& a, const GemmSpec& s, uint64_t budget, uint64_t shared_budget, int gr,
                      int gc, int64_t kq) {
  const int64_t e = esize(s.dtype), eo = esize(s.out);
  const int tiles = int(a.tiles());
  GemmPlan p;
  p.gr = gr, p.gc = gc;
  p.bm = ceil_div(s.m, p.gr);
  p.bn = ceil_div(s.n, p.gc);
  p.bk = std::min(ceil_div(s.k, kq) * kq, std::max<int64_t>(kq, 256 / kq * kq));
  auto need = [&] {
    return uint64_t(2 * (p.bm * p.bk + p.bk * p.bn) * e + p.bm * p.bn * (4 + eo) + p.bn * 4);
  };
  while (need() > budget) {
    if (p.bk > kq && p.bk >= std::min(p.bm, p.bn)) {
      p.bk = std::max(kq, p.bk / 2 / kq * kq);
    } else if (p.bm >= p.bn && p.bm > 1) {
      p.bm = ceil_div(p.bm, 2);
    } else if (p.bn > 1) {
      p.bn = ceil_div(p.bn, 2);
    } else {
      throw CompileError(fmt::format("a GEMM block does not fit {}'s tile SRAM", a.name));
    }
  }
  p.passes_m = ceil_div(s.m, p.gr * p.bm);
  p.passes_n = ceil_div(s.n, p.gc * p.bn);
  // Through a chip-wide shared memory when two panels of at least one chunk fit it: panels as
  // deep as fit, in whole chunks.
  if (a.chip.shared_memory.scope == arch::SharedScope::Chip && tiles > 1 && shared_budget > 0) {
    const uint64_t per_k =
        uint64_t((p.gr * p.bm + p.gc * p.bn) * e) * 2;  // two panels, one K column
    const int64_t fit = int64_t(shared_budget / per_k) / p.bk * p.bk;
    if (fit >= p.bk) p.panel = std::min(fit, ceil_div(s.k, p.bk) * p.bk);
    // A third chunk buffer absorbs the jitter of loads shared with every other tile.
    if (p.panel > 0 && need() + uint64_t((p.bm * p.bk + p.bk * p.bn) * e) <= budget) p.buffers = 3;
    // One grid row and one pass row: every piece of B serves one tile once, so staging it in
    // shared memory would only add traffic; the tiles load it straight from HBM.
    p.b_direct = p.panel > 0 && p.gr == 1 && p.passes_m == 1;
    // The passes of one pass row read the same A rows: where two sets of them fit next to two
    // B panels, A stays in shared memory across the row's passes (staged with its first pass's
    // panels, the next row's in the other set) instead of coming from HBM for every pass.
    // B panels then take what is left, in whole chunks.
    const uint64_t a_rows = uint64_t(p.gr * p.bm * s.k * e), b_per_k = uint64_t(p.gc * p.bn * e) * 2;
    if (p.panel > 0 && !p.b_direct && p.passes_n > 1 && 2 * a_rows + b_per_k * uint64_t(p.bk) <= shared_budget) {
      p.a_resident = true;
      p.panel = std::min(p.panel, int64_t((shared_budget - 2 * a_rows) / b_per_k) / p.bk * p.bk);
    }
  }
  return p;
}

}  // namespace

namespace {

// The times staged_cost takes the largest of. `power`: the time at which the plan's energy
// (MACs, HBM and shared-memory traffic) fits under the chip's TDP: a chip that reaches it (a
// GPU in a large GEMM) runs only as fast as it can pay for its traffic. (The TDP, not a power
// cap a run sets: the plan is the chip's, as a library's kernel choice is.)
struct StagedTimes {
  double hbm, shared, arrays, power;
  double cost() const { return std::max({hbm, shared, arrays, power}); }
};

StagedTimes staged_times(const arch::Arch& a, const GemmSpec& s, const GemmPlan& p) {
  const double e = double(esize(s.dtype)), A = double(s.m * s.k) * e, B = double(s.k * s.n) * e;
  const double hbm = A * (p.a_resident ? 1.0 : double(p.passes_n)) + B * double(p.passes_m);
  const double staged = hbm - (p.b_direct ? B : 0.0), working = double(p.gr * p.gc);
  const double reads = double(p.passes_m * p.passes_n) * working * double(p.bm + p.bn) * double(s.k) * e;
  const arch::Derived d = arch::derive(a);
  // The arrays: a whole block's chunks per pass, with the padding of blocks that do not fill them.
  const int64_t chunks = p.passes_m * p.passes_n * ceil_div(s.k, p.bk);
  const double arrays =
      double(chunks) * double(arch::matmul_timing(a.chip.tile.systolic, isa::array_dtype_class(s.dtype), p.bm, p.bk, p.bn).occupancy) /
      a.chip.clock;
  const std::string_view cls = isa::array_dtype_class(s.dtype);
  const double mac = a.power.mac_energy.has(cls) ? a.power.mac_energy.at(cls) : 0.0;
  const double energy = double(s.m) * double(s.n) * double(s.k) * mac + hbm * a.hbm.energy_per_bit * 8 +
                        (staged + reads) * a.power.shared_memory_energy;
  const double headroom = a.power.tdp - a.power.static_power - a.power.active_power;
  return {hbm / d.hbm_bandwidth, (staged + reads) / a.chip.shared_memory.bandwidth, arrays,
          headroom > 0 ? energy / headroom : 0.0};
}

}  // namespace

double staged_cost(const arch::Arch& a, const GemmSpec& s, const GemmPlan& p) {
  return staged_times(a, s, p).cost();
}

GemmPlan plan_gemm(const arch::Arch& a, const GemmSpec& s, uint64_t budget,
                   uint64_t shared_budget) {
  const arch::SystolicParams& sa = a.chip.tile.systolic;
  const std::string_view cls = isa::array_dtype_class(s.dtype);
  if (cls.empty() || !sa.macs_per_cycle.has(cls) || isa::is_mx(s.dtype)) {
    throw CompileError(
        fmt::format("{}'s arrays cannot multiply {} in a GEMM", a.name, isa::dtype_name(s.dtype)));
  }
  const int64_t pack = arch::array_pack(sa, cls);
  const int64_t kq = sa.dataflow == arch::Dataflow::WeightStationary ? sa.rows * pack : pack * 8;
  const int tiles = int(a.tiles());
  // The most square blocks: grid rows against grid columns as M against N.
  int square = 1;
  double squarest = 1e300;
  for (int gr = 1; gr <= tiles; ++gr) {
    if (tiles % gr != 0) continue;
    const double score = std::fabs(std::log((double(s.m) / gr) / (double(s.n) / (tiles / gr))));
    if (score < squarest) squarest = score, square = gr;
  }
  GemmPlan p = plan_on_grid(a, s, budget, shared_budget, square, tiles / square, kq);
  if (p.panel == 0) return p;
  // Through shared memory, the blocks the SRAM allows are what they are whatever the grid; the
  // grid decides how often A and B are staged and read. Grids may leave up to a tenth of the
  // tiles idle (148 SMs factor only as 4 x 37). Grids whose estimates tie (all bound by the same
  // blocks on the arrays) differ in the memory traffic the estimate hides behind the arrays: of
  // those, the one with the least.
  StagedTimes best = staged_times(a, s, p);
  for (int gr = 1; gr <= tiles; ++gr) {
    const int gc = tiles / gr;
    if (gr * gc * 10 < tiles * 9 || (gr == square && gc == tiles / square)) continue;
    const GemmPlan q = plan_on_grid(a, s, budget, shared_budget, gr, gc, kq);
    if (q.panel == 0) continue;
    const StagedTimes t = staged_times(a, s, q);
    const bool tie = t.cost() <= best.cost() * 1.001;
    if (t.cost() < best.cost() * 0.999 || (tie && t.hbm + t.shared < best.hbm + best.shared)) best = t, p = q;
  }
  return p;
}

void emit_gemm(KernelContext& ctx, const GemmSpec& s, const GemmPlan& plan) {
  if (plan.panel > 0) {
    GemmViaShared(ctx, s, plan).emit();
  } else {
    Gemm(ctx, s, plan).emit();
  }
}

}  // namespace tessera::compiler
