#include "compiler/kernels/stream.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "arch/derived.hpp"

namespace tessera::compiler {
namespace {
constexpr int64_t kTargetChunkBytes = 512 << 10;
}  // namespace

namespace {

// Whether a split stream's fp32 partials [ks, t, n] stay in a chip-wide shared memory (next to
// x, staged there in the weights' dtype of we bytes), rather than going through HBM.
bool partials_in_shared(const arch::Arch& a, int64_t ks, int64_t t, int64_t n, int64_t k, int64_t we,
                        uint64_t shared_budget) {
  return a.chip.shared_memory.scope == arch::SharedScope::Chip && a.tiles() > 1 &&
         uint64_t(ks * t * n * 4 + t * k * we) <= shared_budget;
}

}  // namespace

StreamSplit stream_ksplit(const arch::Arch& a, int64_t t, int64_t n, int64_t k, int64_t we, uint64_t sram_budget,
                          uint64_t shared_budget) {
  // The fewest K ranges (powers of two, each at least 512 of K, at most 16) that minimise the
  // slowest of HBM (the weights; the partials too unless they stay in shared memory), the
  // shared memory (x read by every tile, the partials) and a tile's DMA (its share of the
  // weights, x, its partials). A tile reads its range of x once per block of columns whose
  // accumulators fit (about half its SRAM): splitting K trims x to a range but widens the
  // columns of a tile, and costs fp32 partial sums written and read back.
  const arch::Derived d = arch::derive(a);
  const double tiles = double(a.tiles()), T = double(t), N = double(n), K = double(k);
  const double tile_bw = a.chip.tile.dma.bytes_per_cycle * double(a.chip.tile.dma.engines) * a.chip.clock;
  const double shared_bw = a.chip.shared_memory.bandwidth * double(a.shared_memory_instances());
  const int64_t block_cols = std::max<int64_t>(1, int64_t(sram_budget / 2) / (t * 4));
  auto cost = [&](int64_t ks) {
    const double blocks = double(ceil_div(ceil_div(n, a.tiles() / ks), block_cols));
    const double partials = ks > 1 ? 2.0 * double(ks) * T * N * 4.0 : 0.0;
    const bool in_shared = partials_in_shared(a, ks, t, n, k, we, shared_budget);
    const double x = tiles * blocks * T * K / double(ks) * double(we);  // staged in the weights' dtype
    const double hbm = N * K * double(we) + (in_shared ? 0.0 : partials);
    const double shared = x + (in_shared ? partials : 0.0);
    const double tile = (N * K * double(we) + x + partials) / tiles;
    return std::max({hbm / d.hbm_bandwidth, shared_bw > 0 ? shared / shared_bw : 0.0, tile / tile_bw});
  };
  StreamSplit best{1, cost(1)};
  for (int64_t ks = 2; ks <= 16 && ks <= a.tiles() && k / ks >= 512; ks *= 2) {
    const double c = cost(ks);
    if (c < best.seconds * 0.98) best = {ks, c};
  }
  return best;
}

StreamPlan plan_stream(const arch::Arch& a, const StreamSpec& s, uint64_t budget, uint64_t shared_budget) {
  StreamPlan p;
  const int64_t tiles = a.tiles();
  const arch::SystolicParams& sa = a.chip.tile.systolic;
  const int64_t width = sa.cols * sa.count;
  const std::string_view cls = isa::array_dtype_class(s.wdt);
  const int64_t pack =
      sa.macs_per_cycle.has(cls) ? int64_t(sa.macs_per_cycle.at(cls)) / (sa.rows * sa.cols) : 1;
  const int64_t kq = sa.dataflow == arch::Dataflow::WeightStationary ? sa.rows * pack : 8 * pack;
  p.ksplit = stream_ksplit(a, s.t, s.n, s.k, esize(s.wdt), budget, shared_budget).ranges;
  p.per_tile = ceil_div(s.n, tiles / p.ksplit);
  p.tiles = ceil_div(s.n, p.per_tile) * p.ksplit;
  const int64_t krange = ceil_div(ceil_div(s.k, p.ksplit), kq) * kq;
  const int64_t we = esize(s.wdt), ye = esize(s.ydt);
  // Split K: the reduction's columns a step, and its fp32 partials [ksplit, t, n].
  if (p.ksplit > 1) {  // the reduction's buffers take at most a sixteenth of the budget
    p.reduce_cols = std::clamp<int64_t>(int64_t(budget / 16) / (s.t * (3 * 4 + ye)), 1,
                                        std::min<int64_t>(64, ceil_div(s.n, tiles)));
    p.partials_shared = partials_in_shared(a, p.ksplit, s.t, s.n, s.k, esize(s.wdt), shared_budget);
    if (!p.partials_shared) p.scratch_bytes = uint64_t(p.ksplit * s.t * s.n * 4);
  }
  const int64_t reduce = p.ksplit > 1 ? s.t * p.reduce_cols * (3 * 4 + ye) + p.reduce_cols * 4 : 0;
  // Accumulator and (unless K is split: the partials go from the accumulator) two output
  // buffers of a row block, the bias, and a margin.
  const int64_t outs = p.ksplit > 1 ? 0 : 2 * ye;
  auto out = [&](int64_t tm, int64_t chunk) { return tm * chunk * (4 + outs) + p.per_tile * 4 + reduce + 4096; };
  auto x_bytes = [&] {
    return p.x_slices ? p.buffers * p.group * p.k_chunk * we : p.group * s.k * we;
  };
  auto fits = [&] {
    return uint64_t(out(p.group, p.chunk) + x_bytes() + p.buffers * p.chunk * p.k_chunk * we) <= budget;
  };
  // All tokens in one group if possible (every weight read once); row blocks at least the
  // arrays' width, more while full-K chunks stay near the target size; K cut (in whole array
  // tiles) until a chunk is near the target size and everything fits.
  // K chunks of at least 128 (fewer, longer MATMULs) before narrower row blocks, those before
  // smaller token groups.
  const int64_t min_chunk = std::min(p.per_tile, width), min_k = std::min({s.k, krange, std::max(kq, int64_t(128))});
  for (p.group = s.t;; p.group = ceil_div(p.group, 2)) {
    p.chunk = std::min(p.per_tile, std::max(width, kTargetChunkBytes / (krange * we)));
    if (p.chunk > width) p.chunk = p.chunk / width * width;
    p.x_slices = p.ksplit > 1 || uint64_t(p.group * s.k * we + out(p.group, p.chunk)) * 2 > budget;
    p.k_chunk = std::min(s.k, krange);
    auto cut_k = [&](int64_t floor) {
      while ((p.chunk * p.k_chunk * we > 2 * kTargetChunkBytes || !fits()) && p.k_chunk > floor) {
        p.k_chunk = std::max(floor, ceil_div(p.k_chunk, 2 * kq) * kq);
      }
    };
    cut_k(min_k);
    while (!fits() && p.chunk > min_chunk) p.chunk = std::max(min_chunk, ceil_div(p.chunk, 2));
    cut_k(kq);
    // Narrower row blocks still only at one token a group.
    while (!fits() && p.group == 1 && p.chunk > 1) p.chunk = ceil_div(p.chunk, 2);
    if (fits()) return p;
    if (p.group == 1) break;
  }
  throw CompileError(fmt::format("a weight chunk does not fit the tile SRAM of {}", a.name));
}

StreamKernel::StreamKernel(KernelContext& ctx, const StreamSpec& s, const StreamPlan& p)
    : ctx_(ctx), s_(s), p_(p), xe_(esize(s.wdt)), we_(esize(s.wdt)), ye_(esize(s.ydt)) {
  if (!p.x_slices) x_ = ctx.sram(uint64_t(p.group * s.k * xe_));
  for (int64_t b = 0; b < p.buffers; ++b) {
    wbuf_.push_back(ctx.sram(uint64_t(p.chunk * p.k_chunk * we_)));
    wsem_.push_back(ctx.sem());
    if (p.x_slices)
      xbuf_.push_back(ctx.sram(uint64_t(p.group * p.k_chunk * xe_))), xbuf_sem_.push_back(ctx.sem());
  }
  acc_ = ctx.sram(uint64_t(p.group * p.chunk * 4));
  if (p.ksplit == 1) {
    for (uint64_t& o : out_) o = ctx.sram(uint64_t(p.group * p.chunk * ye_));
  }
  if (s.has_bias) bias_ = ctx.sram(uint64_t(std::max(p.per_tile, p.reduce_cols) * 4)), bias_sem_ = ctx.sem();
  if (p.ksplit > 1) {
    const uint64_t part = uint64_t(s.t * p.reduce_cols * 4);
    racc_ = ctx.sram(part), part_[0] = ctx.sram(part), part_[1] = ctx.sram(part);
    rout_ = ctx.sram(uint64_t(s.t * p.reduce_cols * ye_));
    if (p.partials_shared) partials_at_ = ctx.shared(uint64_t(p.ksplit * s.t * s.n * 4));
  }
  xsem_ = ctx.sem();
  stage_sem_ = ctx.sem();
  peers_sem_ = ctx.sem();
  done_ = ctx.sem();
}

int64_t StreamKernel::columns(int tile) const {
  return std::clamp<int64_t>(s_.n - (tile / p_.ksplit) * p_.per_tile, 0, p_.per_tile);
}

int64_t StreamKernel::first_column(int tile) const { return (tile / p_.ksplit) * p_.per_tile; }

std::pair<int64_t, int64_t> StreamKernel::k_range(int tile) const {
  const int64_t kr = ceil_div(ceil_div(s_.k, p_.ksplit), p_.k_chunk) * p_.k_chunk;
  const int64_t k0 = std::min(s_.k, (tile % p_.ksplit) * kr);
  return {k0, std::min(s_.k, k0 + kr)};
}

Addr StreamKernel::partials(int64_t element) const {
  return p_.partials_shared ? shared(int64_t(partials_at_) + element * 4) : hbm(int64_t(p_.scratch) + element * 4);
}

int64_t StreamKernel::group_rows(int64_t g) const { return std::min(p_.group, s_.t - g * p_.group); }

int64_t StreamKernel::kchunks(int tile) const {
  const auto [k0, k1] = k_range(tile);
  return ceil_div(k1 - k0, p_.k_chunk);
}

int64_t StreamKernel::chunks(int tile) const {
  return ceil_div(s_.t, p_.group) * ceil_div(columns(tile), p_.chunk) * kchunks(tile);
}

StreamKernel::Chunk StreamKernel::chunk_at(int tile, int64_t i) const {
  const int64_t kn = kchunks(tile), blocks = ceil_div(columns(tile), p_.chunk);
  const auto [k0, k1] = k_range(tile);
  const int64_t kc = i % kn, k = k0 + kc * p_.k_chunk;
  return {i / (kn * blocks), i / kn % blocks, kc, k, std::min(p_.k_chunk, k1 - k)};
}

void StreamKernel::load_chunk(int tile, int64_t i) {
  const Chunk c = chunk_at(tile, i);
  const int64_t c0 = first_column(tile) + c.block * p_.chunk;
  const int64_t rows = std::min(p_.chunk, columns(tile) - c.block * p_.chunk);
  Block blk;
  if (c.kw == s_.k) {
    blk.d0 = rows * s_.k;  // whole rows: one contiguous run
  } else {
    blk.d0 = c.kw, blk.d1 = rows, blk.src_strides = {s_.k * we_, 0, 0},
    blk.dst_strides = {c.kw * we_, 0, 0};
  }
  const Addr src = advance(s_.w, (c0 * s_.k + c.k) * we_);
  const int b = int(i % p_.buffers);
  ctx_.pb.emit(tile, dma(sram(int64_t(wbuf_[size_t(b)])), src, blk, s_.wdt, Dtype::None,
                         {wsem_[size_t(b)], int64_t(isa::kTileSelf)}));
}

void StreamKernel::prefetch() {
  for (int t = 0; t < ctx_.tiles(); ++t) {
    for (int64_t i = 0; i < std::min(chunks(t), p_.buffers); ++i) load_chunk(t, i);
    if (s_.has_bias && p_.ksplit == 1 && columns(t) > 0) {
      Block blk;
      blk.d0 = columns(t);
      const Addr src = advance(s_.bias, first_column(t) * esize(s_.bias_dtype));
      ctx_.pb.emit(t, dma(sram(int64_t(bias_)), src, blk, s_.bias_dtype, Dtype::Fp32,
                          {bias_sem_, int64_t(isa::kTileSelf)}));
    }
  }
}

void StreamKernel::stage_x() {
  const arch::Arch& a = ctx_.arch();
  const int64_t ldx = s_.ldx ? s_.ldx : s_.k * esize(s_.xdt);
  const uint64_t bytes = uint64_t(s_.t * s_.k * esize(s_.wdt));
  const int64_t group =
      a.chip.shared_memory.scope == arch::SharedScope::Cluster ? a.chip.cluster_size : a.tiles();
  if (group <= 1 || ctx_.shared_left() < bytes) return;
  // The working tiles of each shared-memory instance bring a share of x's rows each into the
  // shared memory, in the weights' dtype (what every tile reads, once converted), and tell each
  // other.
  staged_ = true;
  staged_at_ = ctx_.shared(bytes);
  const int64_t row_bytes = s_.k * esize(s_.wdt);
  Block rows;
  rows.d0 = s_.k, rows.src_strides = {ldx, 0, 0}, rows.dst_strides = {row_bytes, 0, 0};
  for (int64_t first = 0; first < p_.tiles; first += group) {
    const int64_t last = std::min<int64_t>(first + group, p_.tiles);
    const int64_t loaders = std::min<int64_t>(last - first, s_.t);
    for (int64_t j = 0; j < loaders; ++j) {
      const int t = int(first + j);
      const int64_t r0 = j * s_.t / loaders, r1 = (j + 1) * s_.t / loaders;
      Block part = rows;
      part.d1 = r1 - r0;
      const Addr src = advance(s_.x, r0 * ldx);
      ctx_.pb.emit(t, dma(shared(int64_t(staged_at_ + uint64_t(r0 * row_bytes))), src, part, s_.xdt,
                          s_.wdt, {stage_sem_, int64_t(isa::kTileSelf)}));
      ctx_.pb.emit(t, sem_wait(stage_sem_));
      for (int64_t u = first; u < last; ++u) {
        if (u != t) ctx_.pb.emit(t, sem_signal(u, peers_sem_, 1, isa::After::None));
      }
    }
    for (int64_t u = first; u < last; ++u) {
      const int64_t from_others = loaders - (u - first < loaders ? 1 : 0);
      if (from_others > 0) ctx_.pb.emit(int(u), sem_wait(peers_sem_, from_others));
    }
  }
}

void StreamKernel::load_x(int tile, int64_t g) {
  const Dtype from = staged_ ? s_.wdt : s_.xdt;
  const int64_t xs = esize(from), ld = staged_ ? s_.k * xs : (s_.ldx ? s_.ldx : s_.k * xs);
  Block rows;
  rows.d0 = s_.k, rows.d1 = group_rows(g), rows.src_strides = {ld, 0, 0},
  rows.dst_strides = {s_.k * xe_, 0, 0};
  const int64_t at = g * p_.group * ld;
  const Addr src = staged_ ? shared(int64_t(staged_at_) + at) : advance(s_.x, at);
  ctx_.pb.emit(tile, dma(sram(int64_t(x_)), src, rows, from, s_.wdt, {xsem_, int64_t(isa::kTileSelf)}));
}

void StreamKernel::load_x_slice(int tile, int64_t i) {
  const Chunk c = chunk_at(tile, i);
  const Dtype from = staged_ ? s_.wdt : s_.xdt;
  const int64_t xs = esize(from);
  const int64_t ld = staged_ ? s_.k * xs : (s_.ldx ? s_.ldx : s_.k * xs);
  Block blk;
  blk.d0 = c.kw, blk.d1 = group_rows(c.group), blk.src_strides = {ld, 0, 0},
  blk.dst_strides = {c.kw * xe_, 0, 0};
  const int64_t at = c.group * p_.group * ld + c.k * xs;
  const Addr src = staged_ ? shared(int64_t(staged_at_) + at) : advance(s_.x, at);
  const int b = int(i % p_.buffers);
  ctx_.pb.emit(tile, dma(sram(int64_t(xbuf_[size_t(b)])), src, blk, from, s_.wdt,
                         {xbuf_sem_[size_t(b)], int64_t(isa::kTileSelf)}));
}

void StreamKernel::body() {
  stage_x();
  for (int t = 0; t < p_.tiles; ++t) {
    const int64_t n = chunks(t), kn = kchunks(t);
    if (p_.x_slices) {
      for (int64_t i = 0; i < std::min(n, p_.buffers); ++i) load_x_slice(t, i);
    }
    if (s_.has_bias && p_.ksplit == 1) ctx_.pb.emit(t, sem_wait(bias_sem_));
    int64_t stores = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int b = int(i % p_.buffers);
      const Chunk c = chunk_at(t, i);
      const int64_t rows = group_rows(c.group);
      if (!p_.x_slices && c.block == 0 && c.kc == 0) {  // a group starts: its x (waits for the
        load_x(t, c.group);                             // last group's MATMULs)
        ctx_.pb.emit(t, sem_wait(xsem_));
      }
      const int64_t width = std::min(p_.chunk, columns(t) - c.block * p_.chunk);
      ctx_.pb.emit(t, sem_wait(wsem_[size_t(b)]));
      MatmulOperands mm;
      mm.acc = sram(int64_t(acc_)), mm.ldc = p_.chunk * 4;
      if (p_.x_slices) {
        ctx_.pb.emit(t, sem_wait(xbuf_sem_[size_t(b)]));
        mm.a = sram(int64_t(xbuf_[size_t(b)])), mm.lda = c.kw * xe_;
      } else {
        mm.a = sram(int64_t(x_) + c.k * xe_), mm.lda = s_.k * xe_;
      }
      mm.b = sram(int64_t(wbuf_[size_t(b)])), mm.ldb = c.kw * we_, mm.tb = true;
      mm.m = rows, mm.k = c.kw, mm.n = width;
      mm.dtype = s_.wdt;
      mm.accumulate = c.kc > 0;
      const bool last = c.kc == kn - 1;
      const uint64_t out = out_[stores % 2];
      if (last && p_.ksplit == 1) {  // the block is complete: the epilogue writes it
        mm.out = sram(int64_t(out)), mm.ldo = p_.chunk * ye_, mm.odt = s_.ydt, mm.act = s_.act;
        if (s_.has_bias)
          mm.has_bias = true, mm.bias = sram(int64_t(bias_ + uint64_t(c.block * p_.chunk * 4)));
      }
      ctx_.pb.emit(t, matmul(mm));
      if (i + p_.buffers < n) {
        load_chunk(t, i + p_.buffers);
        if (p_.x_slices) load_x_slice(t, i + p_.buffers);
      }
      if (last) {
        const int64_t col = first_column(t) + c.block * p_.chunk, row = c.group * p_.group;
        Block blk;
        blk.d0 = width, blk.d1 = rows;
        if (p_.ksplit == 1) {
          blk.src_strides = {p_.chunk * ye_, 0, 0};
          blk.dst_strides = {s_.ldy ? s_.ldy : s_.n * ye_, 0, 0};
          const Addr dst = advance(s_.y, row * blk.dst_strides[0] + col * ye_);
          ctx_.pb.emit(t, dma(dst, sram(int64_t(out)), blk, s_.ydt, Dtype::None, {done_, int64_t(isa::kTileSelf)}));
        } else {  // this K range's partial sums, fp32, to [range, t, n]
          blk.src_strides = {p_.chunk * 4, 0, 0}, blk.dst_strides = {s_.n * 4, 0, 0};
          const int64_t at = ((t % p_.ksplit) * s_.t + row) * s_.n + col;
          ctx_.pb.emit(t, dma(partials(at), sram(int64_t(acc_)), blk, Dtype::Fp32, Dtype::None,
                              {done_, int64_t(isa::kTileSelf)}));
        }
        ++stores;
      }
    }
    if (stores > 0) ctx_.pb.emit(t, sem_wait(done_, stores));
  }
  if (p_.ksplit > 1) reduce();
}

void StreamKernel::reduce() {
  ProgramBuilder& pb = ctx_.pb;
  pb.barrier_all();
  // Every tile sums the ranges' partials of its columns, reduce_cols at a time, adds the bias,
  // applies the activation and stores them in y's dtype.
  const int tiles = ctx_.tiles();
  const int64_t per = ceil_div(s_.n, tiles), w = p_.reduce_cols;
  const Tensor2 acc{sram(int64_t(racc_)), 0, Dtype::Fp32};
  for (int t = 0; t < tiles; ++t) {
    int64_t stores = 0;
    for (int64_t c0 = t * per; c0 < std::min(s_.n, (t + 1) * per); c0 += w) {
      const int64_t cols = std::min({w, s_.n - c0, (t + 1) * per - c0});
      auto load = [&](int64_t r, uint64_t into, int sem) {
        Block blk;
        blk.d0 = cols, blk.d1 = s_.t, blk.src_strides = {s_.n * 4, 0, 0}, blk.dst_strides = {cols * 4, 0, 0};
        pb.emit(t, dma(sram(int64_t(into)), partials(r * s_.t * s_.n + c0), blk, Dtype::Fp32,
                       Dtype::None, {sem, int64_t(isa::kTileSelf)}));
      };
      load(0, racc_, xsem_);
      load(1, part_[1], wsem_[1]);
      if (s_.has_bias) {
        Block blk;
        blk.d0 = cols;
        pb.emit(t, dma(sram(int64_t(bias_)), advance(s_.bias, c0 * esize(s_.bias_dtype)), blk, s_.bias_dtype,
                       Dtype::Fp32, {bias_sem_, int64_t(isa::kTileSelf)}));
      }
      pb.emit(t, sem_wait(xsem_));
      for (int64_t r = 1; r < p_.ksplit; ++r) {
        if (r + 1 < p_.ksplit) load(r + 1, part_[(r + 1) % 2], wsem_[(r + 1) % 2]);  // waits (scoreboard)
        pb.emit(t, sem_wait(wsem_[r % 2]));
        pb.emit(t, vec_binary(isa::Opcode::VAdd, acc, acc, Tensor2{sram(int64_t(part_[r % 2])), 0, Dtype::Fp32}, s_.t,
                              cols));
      }
      if (s_.has_bias) {
        pb.emit(t, sem_wait(bias_sem_));
        pb.emit(t, vec_binary(isa::Opcode::VAdd, acc, acc, Tensor2{sram(int64_t(bias_)), 0, Dtype::Fp32}, s_.t, cols,
                              isa::Bcast::Row));
      }
      const Tensor2 out{sram(int64_t(rout_)), 0, s_.ydt};
      switch (s_.act) {
        case isa::Act::Silu: pb.emit(t, vec_unary(isa::Opcode::VSilu, out, acc, s_.t, cols)); break;
        case isa::Act::Gelu: pb.emit(t, vec_unary(isa::Opcode::VGelu, out, acc, s_.t, cols)); break;
        case isa::Act::Relu: pb.emit(t, vec_scalar(isa::Opcode::VMax, out, acc, 0.0f, s_.t, cols)); break;
        default: pb.emit(t, vec_unary(isa::Opcode::VCast, out, acc, s_.t, cols)); break;
      }
      Block blk;
      blk.d0 = cols, blk.d1 = s_.t, blk.src_strides = {cols * ye_, 0, 0},
      blk.dst_strides = {s_.ldy ? s_.ldy : s_.n * ye_, 0, 0};
      pb.emit(t, dma(advance(s_.y, c0 * ye_), sram(int64_t(rout_)), blk, s_.ydt, Dtype::None,
                     {done_, int64_t(isa::kTileSelf)}));
      ++stores;
    }
    if (stores > 0) pb.emit(t, sem_wait(done_, stores));
  }
}

}  // namespace tessera::compiler
