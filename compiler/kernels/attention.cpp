#include "compiler/kernels/attention.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "arch/derived.hpp"

namespace tessera::compiler {
namespace {

using isa::Bcast;
using isa::Opcode;

// A unit's G heads x `tokens` tokens between HBM rows `ld` apart (head g at column g * D,
// `hbm_e` bytes an element) and SRAM rows (g, s) packed (`sram_e` bytes an element).
Block head_rows(int64_t D, int64_t tokens, int64_t G, int64_t ld, int64_t hbm_e, int64_t sram_e,
                bool to_hbm) {
  Block b;
  b.d0 = D, b.d1 = tokens, b.d2 = G;
  const std::array<int64_t, 3> hbm{ld, D * hbm_e, 0}, packed{D * sram_e, tokens * D * sram_e, 0};
  b.src_strides = to_hbm ? packed : hbm;
  b.dst_strides = to_hbm ? hbm : packed;
  return b;
}

// K/V buffer pairs: keys load three blocks ahead, into the set the block before this one read,
// so that the load (held back until that block's P V is done) never stalls the sequencer ahead
// of the next block's softmax; with three sets it would wait for this block's P V, and the
// softmax of the next block could not start under it.
constexpr int kKvSets = 4;

// SRAM bytes with query blocks of `q_block` tokens and key blocks of `kb`: the K/V buffer
// pairs and two Q buffers (bf16), S (fp32) and P (bf16) of two blocks, O (fp32 and output
// dtype), five per-row vectors.
uint64_t unit_bytes(const AttentionSpec& s, int64_t q_block, int64_t kb) {
  const int64_t rows = s.heads / s.kv_heads * q_block, d = s.head_dim;
  return uint64_t(kKvSets * 2 * kb * d * 2 + 2 * rows * d * 2 + 2 * rows * kb * (4 + 2) +
                  rows * d * (4 + esize(s.out.dtype)) + rows * 4 * 5 + 4096);
}

// SRAM bytes of one unit of a group (keys in one block of kb): Q, K, V (bf16), S (fp32), P
// (bf16), O (fp32 and output dtype), m and l, with their alignment.
uint64_t member_bytes(const AttentionSpec& s, int64_t q_block, int64_t kb) {
  const int64_t rows = s.heads / s.kv_heads * q_block, d = s.head_dim;
  return uint64_t(rows * d * 2 + 2 * kb * d * 2 + rows * kb * (4 + 2) + rows * d * (4 + esize(s.out.dtype)) +
                  rows * 8 + 9 * 64);
}

// Keys that query block qb of sequence b sees (causal: up to its last token).
int64_t keys_for(const AttentionSpec& s, int64_t b, int64_t q_block, int64_t qb) {
  return s.past_of(b) + (s.causal ? std::min(s.seq_of(b), (qb + 1) * q_block) : s.seq_of(b));
}

// The most and the fewest keys a sequence has, and its most tokens.
struct Extent {
  int64_t most_keys = 0, fewest_keys = 0, most_tokens = 0;
  bool decode = true;  // one token each
};
Extent extent(const AttentionSpec& s) {
  Extent e{0, INT64_MAX, 0, true};
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t keys = s.past_of(b) + s.seq_of(b);
    e.most_keys = std::max(e.most_keys, keys), e.fewest_keys = std::min(e.fewest_keys, keys);
    e.most_tokens = std::max(e.most_tokens, s.seq_of(b));
    e.decode = e.decode && s.seq_of(b) == 1;
  }
  return e;
}

}  // namespace

AttentionPlan plan_attention(const arch::Arch& a, const AttentionSpec& s, uint64_t budget,
                             int64_t key_block) {
  AttentionPlan p;
  if (s.ragged() && (int64_t(s.seq_lens.size()) != s.batch || int64_t(s.past_lens.size()) != s.batch)) {
    throw CompileError(fmt::format("attention: {} sequences with {} lengths and {} pasts", s.batch, s.seq_lens.size(),
                                   s.past_lens.size()));
  }
  const Extent ext = extent(s);
  const int64_t G = s.heads / s.kv_heads, keys = ext.most_keys, tiles = a.tiles();
  // Split keys when a decode step has fewer units than tiles, in ranges of at least 512 keys.
  const int64_t units = s.batch * s.kv_heads;
  if (ext.decode && units < tiles) {
    p.splits = std::clamp<int64_t>(std::min(tiles / units, ext.fewest_keys / 512), 1, 64);
  }
  const int64_t per_unit = ceil_div(keys, p.splits);
  auto round_keys = [&](int64_t kb) { return std::min(per_unit, kb >= 64 ? kb / 64 * 64 : kb); };
  // Up to 512 query rows (fewer re-reads of K and V) with key blocks of at least 256 (or all
  // of them); then fewer keys, then fewer rows.
  p.q_block = std::clamp<int64_t>(512 / G, 1, ext.most_tokens);
  p.key_block = round_keys(key_block > 0 ? key_block : 4096);
  auto fits = [&] { return unit_bytes(s, p.q_block, p.key_block) <= budget; };
  const int64_t enough = std::min<int64_t>(per_unit, 256);
  if (key_block == 0) {
    while (!fits()) {
      if (p.key_block > enough) {
        p.key_block = round_keys(p.key_block / 2);
      } else if (p.q_block * G > 128) {
        p.q_block = ceil_div(p.q_block, 2);
      } else if (p.key_block > std::min<int64_t>(per_unit, 64)) {
        p.key_block = round_keys(p.key_block / 2);
      } else if (p.q_block > 1) {
        p.q_block = ceil_div(p.q_block, 2);
      } else if (p.key_block > 8) {
        p.key_block /= 2;
      } else {
        break;
      }
    }
  }
  if (!fits()) {
    throw CompileError(fmt::format(
        "attention with head_dim {} does not fit the tile SRAM of {} ({} bytes needed)",
        s.head_dim, a.name, unit_bytes(s, 1, std::min<int64_t>(8, p.key_block))));
  }
  // A split's partial result is read back into a key buffer to be combined.
  if (p.key_block * s.head_dim * 2 < G * (s.head_dim + 2) * 4) p.splits = 1;
  // Short units in groups, two groups' buffers (one loading while the other computes).
  const int64_t unit_keys = ceil_div(keys, p.splits);
  if (unit_keys <= p.key_block && key_block == 0) {
    p.group = std::clamp<int64_t>(int64_t(budget / (2 * member_bytes(s, p.q_block, unit_keys))), 1, 16);
  }
  int64_t items = 0;
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t blocks = ceil_div(s.seq_of(b), p.q_block);
    p.units += s.kv_heads * blocks * p.splits;
    // Causal query blocks go in pairs (see AttentionKernel::assign).
    items += s.kv_heads * (s.causal ? ceil_div(blocks, 2) : blocks) * p.splits;
  }
  p.tiles = std::min<int64_t>(tiles, items);
  if (p.splits > 1) p.scratch_bytes = uint64_t(p.units * G * (s.head_dim + 2) * 4);
  return p;
}

namespace {

class AttentionKernel {
 public:
  AttentionKernel(KernelContext& ctx, const AttentionSpec& s, const AttentionPlan& p)
      : ctx_(ctx), pb_(ctx.pb), s_(s), p_(p), G_(s.heads / s.kv_heads), D_(s.head_dim),
        R_(G_ * p.q_block), e_(esize(s.q.dtype)),
        oe_(esize(s.out.dtype)), ce_(esize(s.kv_dtype)),
        ldq_(s.q.ld ? s.q.ld : s.heads * D_ * e_), ldk_(s.k.ld ? s.k.ld : s.kv_heads * D_ * e_),
        ldv_(s.v.ld ? s.v.ld : s.kv_heads * D_ * e_),
        ldo_(s.out.ld ? s.out.ld : s.heads * D_ * oe_), staged_row_(size_t(s.batch), -1) {
    for (int64_t b = 0, row = 0, unit = 0; b < s.batch; ++b) {
      row0_.push_back(row), base_.push_back(unit), blocks_.push_back(ceil_div(s.seq_of(b), p.q_block));
      row += s.seq_of(b), unit += s.kv_heads * blocks_.back() * p.splits;
    }
    base_.push_back(p.units);
  }

  void emit() {
    const int64_t Lb = p_.key_block;
    for (int& sem : kv_sem_) sem = ctx_.sem();
    out_sem_ = ctx_.sem(), append_sem_ = ctx_.sem();
    stage_kv();
    const auto work = assign();
    if (p_.group > 1) {
      for (auto& set : groups_) {
        for (int64_t i = 0; i < p_.group; ++i) {
          set.push_back({ctx_.sram(uint64_t(R_ * D_ * 2)), ctx_.sram(uint64_t(Lb * D_ * 2)),
                         ctx_.sram(uint64_t(Lb * D_ * 2)), ctx_.sram(uint64_t(R_ * Lb * 4)),
                         ctx_.sram(uint64_t(R_ * Lb * 2)), ctx_.sram(uint64_t(R_ * D_ * 4)),
                         ctx_.sram(uint64_t(R_ * D_ * oe_)), ctx_.sram(uint64_t(R_ * 4)), ctx_.sram(uint64_t(R_ * 4))});
        }
      }
      for (int t = 0; t < int(work.size()); ++t) emit_groups(t, work[size_t(t)]);
      // The combine step (after a barrier) reuses the groups' buffers.
      const Member &a = groups_[0][0], &b = groups_[0][1];
      kbuf_[0] = a.k, kbuf_[1] = a.v, mbuf_[0] = a.m, mbuf_[1] = b.m, lbuf_ = a.l, alpha_ = b.l;
      bmax_ = groups_[1][0].m, obuf_ = a.o, obf_ = a.out;
    } else {
      for (int i = 0; i < kKvSets; ++i) kbuf_[i] = ctx_.sram(uint64_t(Lb * D_ * 2)), vbuf_[i] = ctx_.sram(uint64_t(Lb * D_ * 2));
      for (int i = 0; i < 2; ++i) {
        qbuf_[i] = ctx_.sram(uint64_t(R_ * D_ * 2)), q_sem_[i] = ctx_.sem();
      }
      for (int i = 0; i < 2; ++i) sbuf_[i] = ctx_.sram(uint64_t(R_ * Lb * 4)), pbuf_[i] = ctx_.sram(uint64_t(R_ * Lb * 2));
      obuf_ = ctx_.sram(uint64_t(R_ * D_ * 4)), obf_ = ctx_.sram(uint64_t(R_ * D_ * oe_));
      for (uint64_t& m : mbuf_) m = ctx_.sram(uint64_t(R_ * 4));
      lbuf_ = ctx_.sram(uint64_t(R_ * 4)), bmax_ = ctx_.sram(uint64_t(R_ * 4));
      alpha_ = ctx_.sram(uint64_t(R_ * 4));
      std::vector<TileWork> tiles;
      for (int t = 0; t < int(work.size()); ++t) tiles.push_back(start_tile(t, work[size_t(t)]));
      for (int64_t e = 0; e < ctx_.rounds_emitted; ++e) {
        if (e > 0) {  // every tile marks every round, so instance n is round n everywhere
          pb_.barrier_all();
          for (int t = 0; t < ctx_.tiles(); ++t) ctx_.begin_round(t, e);
        }
        for (TileWork& w : tiles) emit_round(w, e);
      }
      for (TileWork& w : tiles) finish_tile(w);
    }
    if (p_.splits > 1) {
      pb_.barrier_all();
      combine();
    }
  }

  // The buffers of one unit of a group (emit_groups).
  struct Member {
    uint64_t q, k, v, s, p, o, out, m, l;
  };

  struct Unit {
    int64_t b, h, qb, split;
    int64_t tokens, rows;
    int64_t k0, k1;  // the keys it walks
  };
  // Units in order of sequence, head, query block and key range.
  Unit unit(int64_t u) const {
    Unit x;
    x.b = int64_t(std::upper_bound(base_.begin(), base_.end(), u) - base_.begin()) - 1;
    const int64_t r = u - base_[size_t(x.b)], blocks = blocks_[size_t(x.b)];
    x.split = r % p_.splits;
    x.qb = r / p_.splits % blocks, x.h = r / p_.splits / blocks;
    x.tokens = std::min(p_.q_block, s_.seq_of(x.b) - x.qb * p_.q_block), x.rows = G_ * x.tokens;
    const int64_t n = keys_for(s_, x.b, p_.q_block, x.qb);
    x.k0 = n * x.split / p_.splits, x.k1 = n * (x.split + 1) / p_.splits;
    return x;
  }

  // Work items: a unit alone, or in a causal prefill a (sequence, head)'s query blocks qb and
  // blocks - 1 - qb together, whose keys add up to the same for every pair. Item i runs on tile
  // i % tiles in round i / tiles, so every round costs every tile about the same. Per tile, its
  // units with their (emitted) rounds, in order; only the rounds the context asks for are
  // emitted.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> assign() {
    std::vector<std::vector<int64_t>> items;
    for (int64_t b = 0; b < s_.batch; ++b) {
      const int64_t blocks = blocks_[size_t(b)];
      const bool pairs = s_.causal && blocks > 1;
      for (int64_t h = 0; h < s_.kv_heads; ++h) {
        for (int64_t qb = 0; qb < blocks; ++qb) {
          const int64_t partner = blocks - 1 - qb;
          if (pairs && qb > partner) continue;  // taken with its partner
          for (int64_t sp = 0; sp < p_.splits; ++sp) {
            auto at = [&](int64_t block) { return base_[size_t(b)] + (h * blocks + block) * p_.splits + sp; };
            std::vector<int64_t> item{at(qb)};
            if (pairs && partner != qb) item.push_back(at(partner));
            items.push_back(std::move(item));
          }
        }
      }
    }
    if (s_.ragged()) return longest_first(items);
    const int64_t tiles = std::min<int64_t>(ctx_.tiles(), int64_t(items.size()));
    // Rounds (with a barrier between them, so each is one stretch of the chip's time that a
    // sampled run can measure) only when units are long: 4 key blocks or more on average.
    int64_t blocks = 0;
    for (int64_t u = 0; u < p_.units; ++u) blocks += ceil_div(unit(u).k1 - unit(u).k0, p_.key_block);
    const bool long_units = blocks >= 4 * p_.units;
    const int64_t rounds = ctx_.plan_rounds(long_units ? ceil_div(int64_t(items.size()), tiles) : 1);
    if (!long_units) {
      std::vector<std::vector<std::pair<int64_t, int64_t>>> work(static_cast<size_t>(tiles));
      for (size_t i = 0; i < items.size(); ++i) {
        for (int64_t u : items[i]) work[i % size_t(tiles)].push_back({u, 0});
      }
      return work;
    }
    std::vector<std::vector<std::pair<int64_t, int64_t>>> work(static_cast<size_t>(tiles));
    for (int64_t e = 0; e < rounds; ++e) {
      const int64_t r = ctx_.round_at(e);
      for (int64_t i = r * tiles; i < std::min(int64_t(items.size()), (r + 1) * tiles); ++i) {
        for (int64_t u : items[size_t(i)]) work[size_t(i % tiles)].push_back({u, e});
      }
    }
    return work;
  }

  // A ragged step's items cost unlike amounts: longest first, each to the tile least loaded, in
  // one round (no sampling). A key costs a unit max(its rows, the FLOP per HBM byte at which
  // the arrays and HBM take equal time): loads bound short units, products long ones.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> longest_first(const std::vector<std::vector<int64_t>>& items) {
    const arch::Derived d = arch::derive(ctx_.arch());
    double peak = 0;
    for (const auto& [dtype, flops] : d.peak_flops) peak = std::max(peak, flops);
    const double ridge = d.hbm_bandwidth > 0 ? peak / d.hbm_bandwidth * double(ce_) / 2 : 1;
    std::vector<double> cost;
    for (const auto& item : items) {
      double c = 0;
      for (int64_t u : item) {
        const Unit x = unit(u);
        c += double(x.k1 - x.k0) * std::max(double(x.rows), ridge);
      }
      cost.push_back(c);
    }
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
    const size_t tiles = std::min<size_t>(size_t(ctx_.tiles()), items.size());
    std::vector<std::vector<std::pair<int64_t, int64_t>>> work(tiles);
    std::vector<double> load(tiles, 0.0);
    for (size_t i : order) {
      const size_t t = size_t(std::min_element(load.begin(), load.end()) - load.begin());
      for (int64_t u : items[i]) work[t].push_back({u, 0});
      load[t] += cost[i];
    }
    ctx_.plan_rounds(1);
    return work;
  }

  // Through a chip-wide shared memory (a GPU's L2), the step's keys and values of sequences with
  // no cache to read are staged there once, [sequence, kv_heads, tokens, head_dim], when they
  // fit: the units of a head (one a query block) then re-read them from it rather than from HBM.
  void stage_kv() {
    if (ctx_.arch().chip.shared_memory.scope != arch::SharedScope::Chip || ctx_.tiles() < 2) return;
    std::vector<int64_t> at(size_t(s_.batch), -1);
    int64_t rows = 0;
    for (int64_t b = 0; b < s_.batch; ++b) {
      if (s_.past_of(b) == 0) at[size_t(b)] = rows, rows += s_.kv_heads * s_.seq_of(b);
    }
    const uint64_t bytes = uint64_t(rows * D_ * 2);
    if (rows == 0 || 2 * bytes > ctx_.shared_left()) return;
    for (uint64_t& shared_at : kv_shared_) shared_at = ctx_.shared(bytes);
    const int sem = ctx_.sem(), tiles = ctx_.tiles();
    for (int t = 0; t < tiles; ++t) {  // an even share of the rows (b, h, token) each
      const int64_t r1 = rows * (t + 1) / tiles;
      int loads = 0;
      int64_t b = 0;
      for (int64_t r = rows * t / tiles; r < r1;) {
        while (at[size_t(b)] < 0 || r >= at[size_t(b)] + s_.kv_heads * s_.seq_of(b)) ++b;
        const int64_t seq = s_.seq_of(b), local = r - at[size_t(b)], h = local / seq, token = local % seq,
                      n = std::min(r1 - r, seq - token);
        for (int kv = 0; kv < 2; ++kv) {
          const Operand2& src = kv ? s_.v : s_.k;
          const int64_t ld = kv ? ldv_ : ldk_;
          Block blk;
          blk.d0 = D_, blk.d1 = n, blk.src_strides = {ld, 0, 0}, blk.dst_strides = {D_ * 2, 0, 0};
          const Addr from = advance(src.addr, (row0_[size_t(b)] + token) * ld + h * D_ * e_);
          pb_.emit(t, dma(shared(int64_t(kv_shared_[kv] + uint64_t(r * D_ * 2))), from, blk, src.dtype, Dtype::Bf16,
                          {sem, int64_t(isa::kTileSelf)}));
          ++loads;
        }
        r += n;
      }
      if (loads > 0) pb_.emit(t, sem_wait(sem, loads));
    }
    pb_.barrier_all();
    staged_row_ = std::move(at);
  }

  int64_t cache_row(const Unit& x) const { return (x.b * s_.kv_heads + x.h) * s_.capacity * D_ * ce_; }

  // Keys and values [k0, k1) of unit x into buffer pair `set`: cached positions from the
  // cache, this step's from k and v. Returns the DMAs issued.
  int load_keys(int t, const Unit& x, int64_t k0, int64_t k1, int set) {
    return load_keys_into(t, x, k0, k1, kbuf_[set], vbuf_[set], kv_sem_[set]);
  }
  int load_keys_into(int t, const Unit& x, int64_t k0, int64_t k1, uint64_t kbuf, uint64_t vbuf, int sem) {
    int loads = 0;
    const int64_t past = s_.past_of(x.b);
    for (int kv = 0; kv < 2; ++kv) {
      const uint64_t buf = kv ? vbuf : kbuf;
      if (k0 < past) {
        Block old;
        old.d0 = (std::min(k1, past) - k0) * D_;
        pb_.emit(t, dma(sram(int64_t(buf)), advance(kv ? s_.vcache : s_.kcache, cache_row(x) + k0 * D_ * ce_),
                        old, s_.kv_dtype, Dtype::Bf16, {sem, int64_t(isa::kTileSelf)}));
        ++loads;
      }
      if (staged_row_[size_t(x.b)] >= 0) {  // rows [k0, k1) of the unit's head, contiguous
        Block staged;
        staged.d0 = (k1 - k0) * D_;
        const int64_t row = staged_row_[size_t(x.b)] + x.h * s_.seq_of(x.b) + k0;
        pb_.emit(t, dma(sram(int64_t(buf)), shared(int64_t(kv_shared_[kv] + uint64_t(row * D_ * 2))), staged,
                        Dtype::Bf16, Dtype::None, {sem, int64_t(isa::kTileSelf)}));
        ++loads;
      } else if (k1 > past) {
        const int64_t f0 = std::max(k0, past) - past, ldx = kv ? ldv_ : ldk_;
        const Operand2& src = kv ? s_.v : s_.k;
        Block now;
        now.d0 = D_, now.d1 = k1 - past - f0, now.src_strides = {ldx, 0, 0},
        now.dst_strides = {D_ * 2, 0, 0};
        pb_.emit(t, dma(sram(int64_t(buf) + (past + f0 - k0) * D_ * 2),
                        advance(src.addr, (row0_[size_t(x.b)] + f0) * ldx + x.h * D_ * e_), now, src.dtype,
                        Dtype::Bf16, {sem, int64_t(isa::kTileSelf)}));
        ++loads;
      }
    }
    return loads;
  }

  // The unit's first query row.
  int64_t q_row(const Unit& x) const { return row0_[size_t(x.b)] + x.qb * p_.q_block; }

  void load_q(int t, const Unit& x, int set) {
    const Block blk = head_rows(D_, x.tokens, G_, ldq_, e_, 2, false);
    pb_.emit(t, dma(sram(int64_t(qbuf_[set])), advance(s_.q.addr, q_row(x) * ldq_ + x.h * G_ * D_ * e_), blk,
                    s_.q.dtype, Dtype::Bf16, {q_sem_[set], int64_t(isa::kTileSelf)}));
  }

  // The head's step keys and values appended to the cache (by the unit of its first block).
  int append(int t, const Unit& x) {
    for (int kv = 0; kv < 2; ++kv) {
      const Operand2& src = kv ? s_.v : s_.k;
      const int64_t ldx = kv ? ldv_ : ldk_;
      Block blk;
      blk.d0 = D_, blk.d1 = s_.seq_of(x.b), blk.src_strides = {ldx, 0, 0}, blk.dst_strides = {D_ * ce_, 0, 0};
      pb_.emit(t, dma(advance(kv ? s_.vcache : s_.kcache, cache_row(x) + s_.past_of(x.b) * D_ * ce_),
                      advance(src.addr, row0_[size_t(x.b)] * ldx + x.h * D_ * e_), blk, src.dtype, s_.kv_dtype,
                      {append_sem_, int64_t(isa::kTileSelf)}));
    }
    return 2;
  }

  Tensor2 vec(uint64_t addr, Dtype dt = Dtype::Fp32) const { return Tensor2{sram(int64_t(addr)), 0, dt}; }

  // Scratch of unit-and-split u: O [rows, D], then m and l [rows], fp32.
  uint64_t scratch_of(int64_t u) const { return p_.scratch + uint64_t(u * G_ * (D_ + 2) * 4); }

  // A tile's key blocks over all its units in one sequence, so the next unit's first blocks
  // load while this one computes; emitted round by round.
  struct Step {
    size_t unit;
    int64_t k0, k1;
  };
  struct TileWork {
    int t;
    std::vector<std::pair<int64_t, int64_t>> work;  // (unit, emitted round)
    std::vector<Unit> xs;
    std::vector<Step> steps;
    std::vector<int> issued;  // DMAs of each step
    size_t next = 0;          // the next step to emit
    int64_t appends = 0, stores = 0;
  };

  void load(TileWork& w, size_t i) {
    const Step& st = w.steps[i];
    w.issued[i] = load_keys(w.t, w.xs[st.unit], st.k0, st.k1, int(i % kKvSets));
  }

  TileWork start_tile(int t, std::vector<std::pair<int64_t, int64_t>> work) {
    TileWork w{t, std::move(work), {}, {}, {}, 0, 0, 0};
    for (const auto& [u, round] : w.work) {
      w.xs.push_back(unit(u));
      const Unit& x = w.xs.back();
      for (int64_t k0 = x.k0; k0 < x.k1; k0 += p_.key_block)
        w.steps.push_back({w.xs.size() - 1, k0, std::min(x.k1, k0 + p_.key_block)});
    }
    w.issued.assign(w.steps.size(), 0);
    for (size_t i = 0; i < std::min<size_t>(3, w.steps.size()); ++i) load(w, i);
    if (!w.xs.empty()) load_q(t, w.xs[0], 0);
    return w;
  }

  void finish_tile(TileWork& w) {
    if (w.stores > 0) pb_.emit(w.t, sem_wait(out_sem_, w.stores));
    if (w.appends > 0) pb_.emit(w.t, sem_wait(append_sem_, w.appends));
  }

  // S = Q K^T of step i (Q is scaled) into S buffer i % 2, once its keys (set i % kKvSets) are in.
  void issue_qk(TileWork& w, size_t i) {
    const Step& st = w.steps[i];
    const int set = int(i % kKvSets);
    pb_.emit(w.t, sem_wait(kv_sem_[set], w.issued[i]));
    MatmulOperands qk;
    qk.acc = sram(int64_t(sbuf_[i % 2])), qk.a = sram(int64_t(qbuf_[st.unit % 2])), qk.b = sram(int64_t(kbuf_[set]));
    qk.m = w.xs[st.unit].rows, qk.k = D_, qk.n = st.k1 - st.k0, qk.ldc = p_.key_block * 4, qk.tb = true;
    pb_.emit(w.t, matmul(qk));
  }

  // The tile's steps of units in emitted round e.
  void emit_round(TileWork& w, int64_t e) {
    const int64_t Lb = p_.key_block;
    const int t = w.t;
    const float scale = float(1.0 / std::sqrt(double(D_)));
    for (; w.next < w.steps.size() && w.work[w.steps[w.next].unit].second == e; ++w.next) {
      const size_t i = w.next;
      const Step& st = w.steps[i];
      const Unit& x = w.xs[st.unit];
      const int qset = int(st.unit % 2), set = int(i % kKvSets), sp = int(i % 2);  // K/V set, S/P buffers
      const bool first = i == 0 || w.steps[i - 1].unit != st.unit;
      const bool last = i + 1 == w.steps.size() || w.steps[i + 1].unit != st.unit;
      const int64_t rows = x.rows, kb = st.k1 - st.k0, j = (st.k0 - x.k0) / Lb;
      if (first) {
        if (x.qb == 0 && x.split == 0) w.appends += append(t, x);
        if (st.unit + 1 < w.xs.size()) load_q(t, w.xs[st.unit + 1], 1 - qset);  // waits for the
        pb_.emit(t, sem_wait(q_sem_[qset]));                                     // unit before
        // Q / sqrt(D) once, rather than every block's scores.
        const Tensor2 q{sram(int64_t(qbuf_[qset])), 0, Dtype::Bf16};
        pb_.emit(t, vec_scale(q, q, rows, D_, scale, 0.0f));
      }
      // S = Q K^T of the next block of the unit goes to the arrays before this block's softmax
      // (S and P double-buffered), so the arrays and the vector unit overlap.
      if (first) issue_qk(w, i);
      if (!last) issue_qk(w, i + 1);
      const uint64_t m = mbuf_[j % 2], m_next = mbuf_[(j + 1) % 2];
      const Tensor2 sc{sram(int64_t(sbuf_[sp])), Lb * 4, Dtype::Fp32}, pr{sram(int64_t(pbuf_[sp])), Lb * 2, Dtype::Bf16};
      const int64_t diag = s_.past_of(x.b) + x.qb * p_.q_block;  // the block's first query position
      if (s_.causal && st.k1 - 1 > diag) {
        for (int64_t g = 0; g < G_; ++g) {
          const Tensor2 part{sram(int64_t(sbuf_[sp]) + g * x.tokens * Lb * 4), Lb * 4, Dtype::Fp32};
          pb_.emit(t, vec_mask(part, part, x.tokens, kb, diag - st.k0, -INFINITY));
        }
      }
      MatmulOperands pv;
      pv.acc = sram(int64_t(obuf_)), pv.a = sram(int64_t(pbuf_[sp])), pv.b = sram(int64_t(vbuf_[set]));
      pv.m = rows, pv.k = kb, pv.n = D_, pv.lda = Lb * 2;
      if (first) {  // m = rowmax S, l = rowsum P, O = P V
        pb_.emit(t, vec_reduce(Opcode::VRmax, vec(m_next), sc, rows, kb));
        pb_.emit(t, vec_binary(Opcode::VSub, sc, sc, vec(m_next), rows, kb, Bcast::Col));
        pb_.emit(t, vec_unary(Opcode::VExp, pr, sc, rows, kb));
        pb_.emit(t, vec_reduce(Opcode::VRsum, vec(lbuf_), pr, rows, kb));
      } else {
        pb_.emit(t, vec_reduce(Opcode::VRmax, vec(bmax_), sc, rows, kb));
        pb_.emit(t, vec_binary(Opcode::VMax, vec(m_next), vec(m), vec(bmax_), rows, 1));
        pb_.emit(t, vec_binary(Opcode::VSub, vec(alpha_), vec(m), vec(m_next), rows, 1));
        pb_.emit(t, vec_unary(Opcode::VExp, vec(alpha_), vec(alpha_), rows, 1));
        pb_.emit(t, vec_binary(Opcode::VSub, sc, sc, vec(m_next), rows, kb, Bcast::Col));
        pb_.emit(t, vec_unary(Opcode::VExp, pr, sc, rows, kb));
        pb_.emit(t, vec_reduce(Opcode::VRsum, vec(bmax_), pr, rows, kb));
        pb_.emit(t, vec_binary(Opcode::VMul, vec(lbuf_), vec(lbuf_), vec(alpha_), rows, 1));
        pb_.emit(t, vec_binary(Opcode::VAdd, vec(lbuf_), vec(lbuf_), vec(bmax_), rows, 1));
        pb_.emit(t, vec_binary(Opcode::VMul, vec(obuf_), vec(obuf_), vec(alpha_), rows, D_, Bcast::Col));
        pv.accumulate = true;
      }
      pb_.emit(t, matmul(pv));
      if (i + 3 < w.steps.size()) load(w, i + 3);  // into the set of the block before (kKvSets)
      if (!last) continue;
      if (p_.splits > 1) {  // the partial O, m and l to the scratch
        const uint64_t at = scratch_of(w.work[st.unit].first);
        Block o;
        o.d0 = rows * D_;
        pb_.emit(t, dma(hbm(int64_t(at)), sram(int64_t(obuf_)), o, Dtype::Fp32, Dtype::None,
                        {out_sem_, int64_t(isa::kTileSelf)}));
        Block r;
        r.d0 = rows;
        pb_.emit(t, dma(hbm(int64_t(at) + rows * D_ * 4), sram(int64_t(m_next)), r, Dtype::Fp32,
                        Dtype::None, {out_sem_, int64_t(isa::kTileSelf)}));
        pb_.emit(t, dma(hbm(int64_t(at) + rows * (D_ + 1) * 4), sram(int64_t(lbuf_)), r, Dtype::Fp32,
                        Dtype::None, {out_sem_, int64_t(isa::kTileSelf)}));
        w.stores += 3;
        continue;
      }
      pb_.emit(t, vec_unary(Opcode::VRecip, vec(lbuf_), vec(lbuf_), rows, 1));
      pb_.emit(t, vec_binary(Opcode::VMul, vec(obf_, s_.out.dtype), vec(obuf_), vec(lbuf_), rows, D_, Bcast::Col));
      store(t, x, obf_);
      ++w.stores;
    }
  }

  // Short units in groups (plan.group): per group, each step issued for every unit before the
  // next step; the next group's loads go out once this group's scores are computed.
  void emit_groups(int t, const std::vector<std::pair<int64_t, int64_t>>& work) {
    const int64_t g = p_.group, kb = p_.key_block;
    const float scale = float(1.0 / std::sqrt(double(D_)));
    std::vector<Unit> xs;
    for (const auto& uw : work) xs.push_back(unit(uw.first));
    const int64_t n = ceil_div(int64_t(xs.size()), g);
    int64_t stores = 0, appends = 0;
    std::vector<int> loads(size_t(n), 0);
    auto members = [&](int64_t j) { return std::min<int64_t>(g, int64_t(xs.size()) - j * g); };
    auto load = [&](int64_t j) {
      for (int64_t i = 0; i < members(j); ++i) {
        const Unit& x = xs[size_t(j * g + i)];
        const Member& b = groups_[j % 2][size_t(i)];
        const Block q = head_rows(D_, x.tokens, G_, ldq_, e_, 2, false);
        pb_.emit(t, dma(sram(int64_t(b.q)), advance(s_.q.addr, q_row(x) * ldq_ + x.h * G_ * D_ * e_),
                        q, s_.q.dtype, Dtype::Bf16, {kv_sem_[j % 2], int64_t(isa::kTileSelf)}));
        loads[size_t(j)] += 1 + load_keys_into(t, x, x.k0, x.k1, b.k, b.v, kv_sem_[j % 2]);
      }
    };
    auto f32 = [](uint64_t at, int64_t ld = 0) { return Tensor2{sram(int64_t(at)), ld, Dtype::Fp32}; };
    if (n > 0) load(0);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t c = members(j);
      const std::vector<Member>& set = groups_[j % 2];
      auto each = [&](auto&& fn) {
        for (int64_t i = 0; i < c; ++i) fn(xs[size_t(j * g + i)], set[size_t(i)]);
      };
      each([&](const Unit& x, const Member&) {
        if (x.qb == 0 && x.split == 0) appends += append(t, x);
      });
      pb_.emit(t, sem_wait(kv_sem_[j % 2], loads[size_t(j)]));
      each([&](const Unit& x, const Member& b) {
        const Tensor2 q{sram(int64_t(b.q)), 0, Dtype::Bf16};
        pb_.emit(t, vec_scale(q, q, x.rows, D_, scale, 0.0f));
      });
      each([&](const Unit& x, const Member& b) {
        MatmulOperands qk;
        qk.acc = sram(int64_t(b.s)), qk.a = sram(int64_t(b.q)), qk.b = sram(int64_t(b.k));
        qk.m = x.rows, qk.k = D_, qk.n = x.k1 - x.k0, qk.ldc = kb * 4, qk.tb = true;
        pb_.emit(t, matmul(qk));
      });
      if (j + 1 < n) load(j + 1);  // waits for group j - 1's products (scoreboard)
      each([&](const Unit& x, const Member& b) {
        const int64_t diag = s_.past_of(x.b) + x.qb * p_.q_block;
        if (!s_.causal || x.k1 - 1 <= diag) return;
        for (int64_t h = 0; h < G_; ++h) {
          const Tensor2 part = f32(b.s + uint64_t(h * x.tokens * kb * 4), kb * 4);
          pb_.emit(t, vec_mask(part, part, x.tokens, x.k1 - x.k0, diag - x.k0, -INFINITY));
        }
      });
      each([&](const Unit& x, const Member& b) {
        pb_.emit(t, vec_reduce(Opcode::VRmax, f32(b.m), f32(b.s, kb * 4), x.rows, x.k1 - x.k0));
      });
      each([&](const Unit& x, const Member& b) {
        pb_.emit(t, vec_binary(Opcode::VSub, f32(b.s, kb * 4), f32(b.s, kb * 4), f32(b.m), x.rows, x.k1 - x.k0, Bcast::Col));
      });
      each([&](const Unit& x, const Member& b) {
        pb_.emit(t, vec_unary(Opcode::VExp, Tensor2{sram(int64_t(b.p)), kb * 2, Dtype::Bf16}, f32(b.s, kb * 4), x.rows,
                              x.k1 - x.k0));
      });
      each([&](const Unit& x, const Member& b) {
        pb_.emit(t, vec_reduce(Opcode::VRsum, f32(b.l), Tensor2{sram(int64_t(b.p)), kb * 2, Dtype::Bf16}, x.rows, x.k1 - x.k0));
      });
      each([&](const Unit& x, const Member& b) {
        MatmulOperands pv;
        pv.acc = sram(int64_t(b.o)), pv.a = sram(int64_t(b.p)), pv.b = sram(int64_t(b.v));
        pv.m = x.rows, pv.k = x.k1 - x.k0, pv.n = D_, pv.lda = kb * 2;
        pb_.emit(t, matmul(pv));
      });
      if (p_.splits > 1) {  // the partial O, m and l to the scratch
        for (int64_t i = 0; i < c; ++i) {
          const Unit& x = xs[size_t(j * g + i)];
          const Member& b = set[size_t(i)];
          const uint64_t at = scratch_of(work[size_t(j * g + i)].first);
          Block o, r;
          o.d0 = x.rows * D_, r.d0 = x.rows;
          pb_.emit(t, dma(hbm(int64_t(at)), sram(int64_t(b.o)), o, Dtype::Fp32, Dtype::None, {out_sem_, int64_t(isa::kTileSelf)}));
          pb_.emit(t, dma(hbm(int64_t(at) + x.rows * D_ * 4), sram(int64_t(b.m)), r, Dtype::Fp32, Dtype::None,
                          {out_sem_, int64_t(isa::kTileSelf)}));
          pb_.emit(t, dma(hbm(int64_t(at) + x.rows * (D_ + 1) * 4), sram(int64_t(b.l)), r, Dtype::Fp32, Dtype::None,
                          {out_sem_, int64_t(isa::kTileSelf)}));
          stores += 3;
        }
        continue;
      }
      each([&](const Unit& x, const Member& b) { pb_.emit(t, vec_unary(Opcode::VRecip, f32(b.l), f32(b.l), x.rows, 1)); });
      each([&](const Unit& x, const Member& b) {
        pb_.emit(t, vec_binary(Opcode::VMul, Tensor2{sram(int64_t(b.out)), 0, s_.out.dtype}, f32(b.o), f32(b.l), x.rows, D_,
                               Bcast::Col));
      });
      each([&](const Unit& x, const Member& b) {
        store(t, x, b.out);
        ++stores;
      });
    }
    if (stores > 0) pb_.emit(t, sem_wait(out_sem_, stores));
    if (appends > 0) pb_.emit(t, sem_wait(append_sem_, appends));
  }

  void store(int t, const Unit& x, uint64_t from) {
    const Block out = head_rows(D_, x.tokens, G_, ldo_, oe_, oe_, true);
    const Addr dst = advance(s_.out.addr, q_row(x) * ldo_ + x.h * G_ * D_ * oe_);
    pb_.emit(t, dma(dst, sram(int64_t(from)), out, s_.out.dtype, Dtype::None, {out_sem_, int64_t(isa::kTileSelf)}));
  }

  // One tile per unit merges its splits' partial results, two splits' loads in flight.
  void combine() {
    const int64_t whole = p_.units / p_.splits;
    for (int64_t w = 0; w < whole; ++w) {
      const int t = int(w % ctx_.tiles());
      const Unit x = unit(w * p_.splits);
      const int64_t rows = x.rows;
      // O_s, m_s and l_s of a split come into a key buffer (two in flight); M, L and O.
      auto part = [&](int64_t sp) {
        const int set = int(sp % 2);
        Block blk;
        blk.d0 = rows * (D_ + 2);
        pb_.emit(t, dma(sram(int64_t(kbuf_[set])), hbm(int64_t(scratch_of(w * p_.splits + sp))), blk, Dtype::Fp32,
                        Dtype::None, {kv_sem_[set], int64_t(isa::kTileSelf)}));
      };
      part(0);
      if (p_.splits > 1) part(1);
      const Tensor2 M = vec(mbuf_[0]), L = vec(lbuf_), W = vec(alpha_), O{sram(int64_t(obuf_)), 0, Dtype::Fp32};
      for (int64_t sp = 0; sp < p_.splits; ++sp) {
        const int set = int(sp % 2);
        pb_.emit(t, sem_wait(kv_sem_[set]));
        const uint64_t base = kbuf_[set];
        const Tensor2 Os{sram(int64_t(base)), 0, Dtype::Fp32}, ms = vec(base + uint64_t(rows * D_ * 4)),
                      ls = vec(base + uint64_t(rows * (D_ + 1) * 4));
        if (sp == 0) {  // M = m_0, L = l_0, O = O_0
          pb_.emit(t, vec_scale(M, ms, rows, 1, 1.0f, 0.0f));
          pb_.emit(t, vec_scale(L, ls, rows, 1, 1.0f, 0.0f));
          pb_.emit(t, vec_scale(O, Os, rows, D_, 1.0f, 0.0f));
        } else {  // M' = max(M, m_s); rescale what is summed by exp(M - M') and add w_s = exp(m_s - M')
          const Tensor2 Mn = vec(mbuf_[1]), Ws = vec(bmax_);
          pb_.emit(t, vec_binary(Opcode::VMax, Mn, M, ms, rows, 1));
          pb_.emit(t, vec_binary(Opcode::VSub, W, M, Mn, rows, 1));
          pb_.emit(t, vec_unary(Opcode::VExp, W, W, rows, 1));
          pb_.emit(t, vec_binary(Opcode::VSub, Ws, ms, Mn, rows, 1));
          pb_.emit(t, vec_unary(Opcode::VExp, Ws, Ws, rows, 1));
          pb_.emit(t, vec_binary(Opcode::VMul, L, L, W, rows, 1));
          pb_.emit(t, vec_binary(Opcode::VMul, O, O, W, rows, D_, Bcast::Col));
          pb_.emit(t, vec_binary(Opcode::VMul, W, ls, Ws, rows, 1));
          pb_.emit(t, vec_binary(Opcode::VAdd, L, L, W, rows, 1));
          pb_.emit(t, vec_binary(Opcode::VMul, Os, Os, Ws, rows, D_, Bcast::Col));  // in place
          pb_.emit(t, vec_binary(Opcode::VAdd, O, O, Os, rows, D_));
          pb_.emit(t, vec_scale(M, Mn, rows, 1, 1.0f, 0.0f));
        }
        if (sp + 2 < p_.splits) part(sp + 2);  // waits for this split's reads (scoreboard)
      }
      pb_.emit(t, vec_unary(Opcode::VRecip, L, L, rows, 1));
      pb_.emit(t, vec_binary(Opcode::VMul, vec(obf_, s_.out.dtype), O, L, rows, D_, Bcast::Col));
      store(t, x, obf_);
    }
    for (int t = 0; t < std::min<int64_t>(whole, ctx_.tiles()); ++t) {
      pb_.emit(t, sem_wait(out_sem_, ceil_div(whole - t, ctx_.tiles())));
    }
  }

  KernelContext& ctx_;
  ProgramBuilder& pb_;
  const AttentionSpec& s_;
  const AttentionPlan& p_;
  int64_t G_, D_, R_, e_, oe_, ce_, ldq_, ldk_, ldv_, ldo_;
  // Per sequence: its first row of q, k, v and the output; its query blocks; its first unit
  // (and the units' count after the last); its first row in shared memory (-1: not staged).
  std::vector<int64_t> row0_, blocks_, base_, staged_row_;
  uint64_t kv_shared_[2] = {};     // the staged keys and values
  uint64_t kbuf_[kKvSets] = {}, vbuf_[kKvSets] = {}, qbuf_[2] = {};
  int kv_sem_[kKvSets] = {}, q_sem_[2] = {};
  uint64_t sbuf_[2] = {}, pbuf_[2] = {}, obuf_ = 0, obf_ = 0, mbuf_[2] = {}, lbuf_ = 0, bmax_ = 0, alpha_ = 0;
  int out_sem_ = 0, append_sem_ = 0;
  std::vector<Member> groups_[2];  // emit_groups: two groups' buffers
};

}  // namespace

void emit_attention(KernelContext& ctx, const AttentionSpec& s, const AttentionPlan& p) {
  AttentionKernel(ctx, s, p).emit();
}

void emit_gather(KernelContext& ctx, const Operand2& table, int64_t cols,
                 const std::vector<int64_t>& rows, const Operand2& out) {
  const int64_t n = int64_t(rows.size());
  const int64_t tiles = std::min<int64_t>(ctx.tiles(), n);
  const int64_t e = esize(table.dtype), oe = esize(out.dtype);
  const int64_t ldt = table.ld ? table.ld : cols * e, ldo = out.ld ? out.ld : cols * oe;
  const int sem = ctx.sem();
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t r0 = t * n / tiles, r1 = (t + 1) * n / tiles;
    for (int64_t r = r0; r < r1; ++r) {
      Block row;
      row.d0 = cols;
      const Addr src = advance(table.addr, rows[size_t(r)] * ldt);
      const Addr dst = advance(out.addr, r * ldo);
      ctx.pb.emit(int(t),
                  dma(dst, src, row, table.dtype, out.dtype, {sem, int64_t(isa::kTileSelf)}));
    }
    if (r1 > r0) ctx.pb.emit(int(t), sem_wait(sem, r1 - r0));
  }
}

}  // namespace tessera::compiler
