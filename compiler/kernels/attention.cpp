#include "compiler/kernels/attention.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

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

// SRAM bytes with `q_block` query tokens per unit and `kv` K/V buffer pairs (bf16 Q, K, V, P;
// fp32 S and O).
uint64_t unit_bytes(const AttentionSpec& s, int64_t q_block, int64_t kv) {
  const int64_t g = s.heads / s.kv_heads, keys = s.past + s.seq, d = s.head_dim;
  const int64_t rows = g * q_block;
  return uint64_t(kv * 2 * keys * d * 2 + rows * d * 2 + rows * keys * (4 + 2) +
                  rows * d * (4 + 2) + rows * 16);
}

// SRAM bytes of the key-block walk: two buffer pairs of `kb` keys, Q, S (fp32) and P (bf16)
// of one block, O (fp32 and output), and five per-row vectors.
uint64_t block_bytes(const AttentionSpec& s, int64_t q_block, int64_t kb) {
  const int64_t rows = s.heads / s.kv_heads * q_block, d = s.head_dim;
  return uint64_t(2 * 2 * kb * d * 2 + rows * d * 2 + rows * kb * (4 + 2) + rows * d * (4 + 2) +
                  rows * 4 * 5);
}

}  // namespace

AttentionPlan plan_attention(const arch::Arch& a, const AttentionSpec& s, uint64_t budget,
                             int64_t key_block) {
  AttentionPlan p;
  const int64_t g = s.heads / s.kv_heads;
  // About 128 query rows per unit keep the arrays busy; fewer if SRAM is short.
  p.q_block = std::clamp<int64_t>(128 / g, 1, s.seq);
  while (key_block == 0 && p.q_block > 1 && unit_bytes(s, p.q_block, p.kv_buffers) > budget)
    p.q_block = ceil_div(p.q_block, 2);
  if (key_block == 0 && unit_bytes(s, p.q_block, p.kv_buffers) > budget) p.kv_buffers = 1;
  if (key_block > 0 || unit_bytes(s, p.q_block, p.kv_buffers) > budget) {
    // Whole heads do not fit (or key blocks were asked for): walk the keys in blocks, as
    // long as the arrays allow, with query blocks as large as fit next to them.
    p.kv_buffers = 2;
    p.q_block = std::clamp<int64_t>(128 / g, 1, s.seq);
    p.key_block = std::min<int64_t>(key_block > 0 ? key_block : 512, s.past + s.seq);
    while (block_bytes(s, p.q_block, p.key_block) > budget && p.key_block > 64) p.key_block /= 2;
    while (block_bytes(s, p.q_block, p.key_block) > budget && p.q_block > 1)
      p.q_block = ceil_div(p.q_block, 2);
    while (block_bytes(s, p.q_block, p.key_block) > budget && p.key_block > 8) p.key_block /= 2;
    if (block_bytes(s, p.q_block, p.key_block) > budget) {
      throw CompileError(fmt::format(
          "attention with head_dim {} does not fit the tile SRAM of {} ({} bytes needed)",
          s.head_dim, a.name, block_bytes(s, 1, 8)));
    }
  }
  p.units = s.batch * s.kv_heads * ceil_div(s.seq, p.q_block);
  p.tiles = std::min<int64_t>(a.tiles(), p.units);
  return p;
}

namespace {

void emit_whole_heads(KernelContext& ctx, const AttentionSpec& s, const AttentionPlan& p) {
  ProgramBuilder& pb = ctx.pb;
  const int64_t G = s.heads / s.kv_heads, D = s.head_dim, L = s.past + s.seq, S = s.seq;
  const int64_t blocks = ceil_div(S, p.q_block), R = G * p.q_block;
  const int64_t e = esize(s.q.dtype), oe = esize(s.out.dtype), ce = esize(s.kv_dtype);
  uint64_t kbuf[2] = {}, vbuf[2] = {};
  int kv_sem[2] = {};
  for (int64_t i = 0; i < p.kv_buffers; ++i) {
    kbuf[i] = ctx.sram(uint64_t(L * D * 2)), vbuf[i] = ctx.sram(uint64_t(L * D * 2)),
    kv_sem[i] = ctx.sem();
  }
  const uint64_t qbuf = ctx.sram(uint64_t(R * D * 2));
  const uint64_t sbuf = ctx.sram(uint64_t(R * L * 4)), pbuf = ctx.sram(uint64_t(R * L * 2));
  const uint64_t obuf = ctx.sram(uint64_t(R * D * 4)), obf = ctx.sram(uint64_t(R * D * oe));
  const uint64_t mbuf = ctx.sram(uint64_t(R * 4)), zbuf = ctx.sram(uint64_t(R * 4));
  const int q_sem = ctx.sem(), out_sem = ctx.sem(), append_sem = ctx.sem();
  const int64_t ldq = s.q.ld ? s.q.ld : s.heads * D * e, ldk = s.k.ld ? s.k.ld : s.kv_heads * D * e;
  const int64_t ldv = s.v.ld ? s.v.ld : s.kv_heads * D * e,
                ldo = s.out.ld ? s.out.ld : s.heads * D * oe;
  const float scale = float(1.0 / std::sqrt(double(D)));
  auto keys_for = [&](int64_t qb) {
    return s.past + (s.causal ? std::min(S, (qb + 1) * p.q_block) : S);
  };

  for (int t = 0; t < p.tiles; ++t) {
    const int64_t u0 = t * p.units / p.tiles, u1 = (t + 1) * p.units / p.tiles;
    // The tile's heads (b, h) in order, each with its first unit.
    std::vector<int64_t> heads, first_unit;
    for (int64_t u = u0; u < u1; ++u) {
      if (heads.empty() || heads.back() != u / blocks)
        heads.push_back(u / blocks), first_unit.push_back(u);
    }
    int64_t appends = 0;
    // Loads head number i's keys and values into buffer i % kv_buffers; returns the DMAs issued.
    auto load_head = [&](size_t i) {
      const int64_t bh = heads[i], b = bh / s.kv_heads, h = bh % s.kv_heads;
      const int64_t last_qb = std::min(u1 - 1, (bh + 1) * blocks - 1) % blocks;
      const int64_t keys = keys_for(last_qb), fresh = keys - s.past;
      const int64_t cache_row = (b * s.kv_heads + h) * s.capacity * D * ce;
      const int64_t set = int64_t(i) % p.kv_buffers;
      const bool owner = first_unit[i] % blocks == 0;  // this tile has the head's first block
      int loads = 0;
      for (int kv = 0; kv < 2; ++kv) {
        const Addr cache = kv ? s.vcache : s.kcache;
        const Operand2& x = kv ? s.v : s.k;
        const int64_t ldx = kv ? ldv : ldk;
        const uint64_t buf = kv ? vbuf[set] : kbuf[set];
        if (s.past > 0) {
          Block old;
          old.d0 = s.past * D;
          pb.emit(t, dma(sram(int64_t(buf)), advance(cache, cache_row), old, s.kv_dtype,
                         Dtype::Bf16, {kv_sem[set], int64_t(isa::kTileSelf)}));
          ++loads;
        }
        Block now;
        now.d0 = D, now.d1 = fresh, now.src_strides = {ldx, 0, 0}, now.dst_strides = {D * 2, 0, 0};
        const Addr src = advance(x.addr, b * S * ldx + h * D * e);
        pb.emit(t, dma(sram(int64_t(buf) + s.past * D * 2), src, now, x.dtype, Dtype::Bf16,
                       {kv_sem[set], int64_t(isa::kTileSelf)}));
        ++loads;
        if (owner) {  // append the step's keys and values to the cache
          Block append = now;
          append.d1 = S;
          append.dst_strides = {D * ce, 0, 0};
          pb.emit(t, dma(advance(cache, cache_row + s.past * D * ce), src, append, x.dtype,
                         s.kv_dtype, {append_sem, int64_t(isa::kTileSelf)}));
          ++appends;
        }
      }
      return loads;
    };
    std::vector<int> issued(heads.size(), 0);
    if (!heads.empty()) issued[0] = load_head(0);
    size_t head = 0;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t bh = u / blocks, qb = u % blocks, b = bh / s.kv_heads, h = bh % s.kv_heads;
      const int64_t tokens = std::min(p.q_block, S - qb * p.q_block), rows = G * tokens;
      if (bh != heads[head]) ++head;
      const int64_t set = int64_t(head) % p.kv_buffers;
      if (u == first_unit[head]) {
        // With two buffers the next head's loads start now; with one, this head's start now.
        if (p.kv_buffers == 1 && head > 0) issued[head] = load_head(head);
        if (p.kv_buffers > 1 && head + 1 < heads.size()) issued[head + 1] = load_head(head + 1);
        pb.emit(t, sem_wait(kv_sem[set], issued[head]));
      }
      // Queries of the group's heads, rows ordered (head g, token s).
      const Block qblk = head_rows(D, tokens, G, ldq, e, 2, false);
      const Addr qsrc = advance(s.q.addr, (b * S + qb * p.q_block) * ldq + h * G * D * e);
      pb.emit(t, dma(sram(int64_t(qbuf)), qsrc, qblk, s.q.dtype, Dtype::Bf16,
                     {q_sem, int64_t(isa::kTileSelf)}));
      pb.emit(t, sem_wait(q_sem));

      const int64_t n = keys_for(qb);
      const Tensor2 sc{sram(int64_t(sbuf)), L * 4, Dtype::Fp32},
          pr{sram(int64_t(pbuf)), L * 2, Dtype::Bf16};
      const Tensor2 m{sram(int64_t(mbuf)), 0, Dtype::Fp32}, z{sram(int64_t(zbuf)), 0, Dtype::Fp32};
      MatmulOperands qk;
      qk.acc = sram(int64_t(sbuf)), qk.a = sram(int64_t(qbuf)), qk.b = sram(int64_t(kbuf[set]));
      qk.m = rows, qk.k = D, qk.n = n, qk.ldc = L * 4, qk.tb = true;
      pb.emit(t, matmul(qk));
      pb.emit(t, vec_scale(sc, sc, rows, n, scale, 0.0f));
      const int64_t diag = s.past + qb * p.q_block;
      if (s.causal && n - 1 > diag) {
        for (int64_t g = 0; g < G; ++g) {
          const Tensor2 block{sram(int64_t(sbuf) + g * tokens * L * 4), L * 4, Dtype::Fp32};
          pb.emit(t, vec_mask(block, block, tokens, n, diag, -INFINITY));
        }
      }
      pb.emit(t, vec_reduce(Opcode::VRmax, m, sc, rows, n));
      pb.emit(t, vec_binary(Opcode::VSub, sc, sc, m, rows, n, Bcast::Col));
      pb.emit(t, vec_unary(Opcode::VExp, pr, sc, rows, n));
      pb.emit(t, vec_reduce(Opcode::VRsum, z, pr, rows, n));
      MatmulOperands pv;
      pv.acc = sram(int64_t(obuf)), pv.a = sram(int64_t(pbuf)), pv.b = sram(int64_t(vbuf[set]));
      pv.m = rows, pv.k = n, pv.n = D, pv.lda = L * 2;
      pb.emit(t, matmul(pv));
      pb.emit(t, vec_unary(Opcode::VRecip, z, z, rows, 1));
      const Tensor2 o{sram(int64_t(obuf)), 0, Dtype::Fp32}, ob{sram(int64_t(obf)), 0, s.out.dtype};
      pb.emit(t, vec_binary(Opcode::VMul, ob, o, z, rows, D, Bcast::Col));
      const Block out = head_rows(D, tokens, G, ldo, oe, oe, true);
      const Addr dst = advance(s.out.addr, (b * S + qb * p.q_block) * ldo + h * G * D * oe);
      pb.emit(t, dma(dst, sram(int64_t(obf)), out, s.out.dtype, Dtype::None,
                     {out_sem, int64_t(isa::kTileSelf)}));
    }
    if (u1 > u0) pb.emit(t, sem_wait(out_sem, u1 - u0));
    if (appends > 0) pb.emit(t, sem_wait(append_sem, appends));
  }
}

void emit_key_blocks(KernelContext& ctx, const AttentionSpec& s, const AttentionPlan& p) {
  ProgramBuilder& pb = ctx.pb;
  const int64_t G = s.heads / s.kv_heads, D = s.head_dim, S = s.seq, Lb = p.key_block;
  const int64_t blocks = ceil_div(S, p.q_block), R = G * p.q_block;
  const int64_t e = esize(s.q.dtype), oe = esize(s.out.dtype), ce = esize(s.kv_dtype);
  uint64_t kbuf[2], vbuf[2];
  int kv_sem[2];
  for (int i = 0; i < 2; ++i)
    kbuf[i] = ctx.sram(uint64_t(Lb * D * 2)), vbuf[i] = ctx.sram(uint64_t(Lb * D * 2)),
    kv_sem[i] = ctx.sem();
  const uint64_t qbuf = ctx.sram(uint64_t(R * D * 2));
  const uint64_t sbuf = ctx.sram(uint64_t(R * Lb * 4)), pbuf = ctx.sram(uint64_t(R * Lb * 2));
  const uint64_t obuf = ctx.sram(uint64_t(R * D * 4)), obf = ctx.sram(uint64_t(R * D * oe));
  uint64_t mbuf[2] = {ctx.sram(uint64_t(R * 4)), ctx.sram(uint64_t(R * 4))};
  const uint64_t lbuf = ctx.sram(uint64_t(R * 4)), bmax = ctx.sram(uint64_t(R * 4)),
                 alpha = ctx.sram(uint64_t(R * 4));
  const int q_sem = ctx.sem(), out_sem = ctx.sem(), append_sem = ctx.sem();
  const int64_t ldq = s.q.ld ? s.q.ld : s.heads * D * e, ldk = s.k.ld ? s.k.ld : s.kv_heads * D * e;
  const int64_t ldv = s.v.ld ? s.v.ld : s.kv_heads * D * e,
                ldo = s.out.ld ? s.out.ld : s.heads * D * oe;
  const float scale = float(1.0 / std::sqrt(double(D)));
  auto vec = [](uint64_t addr, Dtype dt = Dtype::Fp32) {
    return Tensor2{sram(int64_t(addr)), 0, dt};
  };

  for (int t = 0; t < p.tiles; ++t) {
    const int64_t u0 = t * p.units / p.tiles, u1 = (t + 1) * p.units / p.tiles;
    int64_t appends = 0;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t bh = u / blocks, qb = u % blocks, b = bh / s.kv_heads, h = bh % s.kv_heads;
      const int64_t tokens = std::min(p.q_block, S - qb * p.q_block), rows = G * tokens;
      const int64_t n =
          s.past + (s.causal ? std::min(S, (qb + 1) * p.q_block) : S);  // keys this unit sees
      const int64_t nblocks = ceil_div(n, Lb);
      const int64_t cache_row = (b * s.kv_heads + h) * s.capacity * D * ce;
      // Keys and values of block j into buffer pair j % 2: cached positions from the cache,
      // this step's from k and v. Returns the DMAs issued.
      auto load_block = [&](int64_t j) {
        const int64_t k0 = j * Lb, k1 = std::min(n, k0 + Lb), set = j % 2;
        int loads = 0;
        for (int kv = 0; kv < 2; ++kv) {
          const uint64_t buf = kv ? vbuf[set] : kbuf[set];
          if (k0 < s.past) {
            Block old;
            old.d0 = (std::min(k1, s.past) - k0) * D;
            pb.emit(t, dma(sram(int64_t(buf)),
                           advance(kv ? s.vcache : s.kcache, cache_row + k0 * D * ce), old,
                           s.kv_dtype, Dtype::Bf16, {kv_sem[set], int64_t(isa::kTileSelf)}));
            ++loads;
          }
          if (k1 > s.past) {
            const int64_t f0 = std::max(k0, s.past) - s.past, ldx = kv ? ldv : ldk;
            const Operand2& x = kv ? s.v : s.k;
            Block now;
            now.d0 = D, now.d1 = k1 - s.past - f0, now.src_strides = {ldx, 0, 0},
            now.dst_strides = {D * 2, 0, 0};
            const Addr src = advance(x.addr, (b * S + f0) * ldx + h * D * e);
            pb.emit(t, dma(sram(int64_t(buf) + (s.past + f0 - k0) * D * 2), src, now, x.dtype,
                           Dtype::Bf16, {kv_sem[set], int64_t(isa::kTileSelf)}));
            ++loads;
          }
        }
        return loads;
      };
      if (qb == 0) {  // the head's first unit appends the step's keys and values to the cache
        for (int kv = 0; kv < 2; ++kv) {
          const Operand2& x = kv ? s.v : s.k;
          const int64_t ldx = kv ? ldv : ldk;
          Block append;
          append.d0 = D, append.d1 = S, append.src_strides = {ldx, 0, 0},
          append.dst_strides = {D * ce, 0, 0};
          pb.emit(t, dma(advance(kv ? s.vcache : s.kcache, cache_row + s.past * D * ce),
                         advance(x.addr, b * S * ldx + h * D * e), append, x.dtype, s.kv_dtype,
                         {append_sem, int64_t(isa::kTileSelf)}));
          ++appends;
        }
      }
      int issued[2] = {load_block(0), nblocks > 1 ? load_block(1) : 0};
      const Block qblk = head_rows(D, tokens, G, ldq, e, 2, false);
      pb.emit(t, dma(sram(int64_t(qbuf)),
                     advance(s.q.addr, (b * S + qb * p.q_block) * ldq + h * G * D * e), qblk,
                     s.q.dtype, Dtype::Bf16, {q_sem, int64_t(isa::kTileSelf)}));
      pb.emit(t, vec_fill(vec(mbuf[0]), rows, 1, -INFINITY));
      pb.emit(t, vec_fill(vec(lbuf), rows, 1, 0.0f));
      pb.emit(t, vec_fill(vec(obuf), rows, D, 0.0f));
      pb.emit(t, sem_wait(q_sem));
      const int64_t diag = s.past + qb * p.q_block;
      for (int64_t j = 0; j < nblocks; ++j) {
        const int64_t set = j % 2, k0 = j * Lb, kb = std::min(Lb, n - k0);
        const uint64_t m = mbuf[j % 2], m_next = mbuf[(j + 1) % 2];
        pb.emit(t, sem_wait(kv_sem[set], issued[set]));
        const Tensor2 sc{sram(int64_t(sbuf)), Lb * 4, Dtype::Fp32},
            pr{sram(int64_t(pbuf)), Lb * 2, Dtype::Bf16};
        MatmulOperands qk;
        qk.acc = sram(int64_t(sbuf)), qk.a = sram(int64_t(qbuf)), qk.b = sram(int64_t(kbuf[set]));
        qk.m = rows, qk.k = D, qk.n = kb, qk.ldc = Lb * 4, qk.tb = true;
        pb.emit(t, matmul(qk));
        pb.emit(t, vec_scale(sc, sc, rows, kb, scale, 0.0f));
        if (s.causal && k0 + kb - 1 > diag) {
          for (int64_t g = 0; g < G; ++g) {
            const Tensor2 part{sram(int64_t(sbuf) + g * tokens * Lb * 4), Lb * 4, Dtype::Fp32};
            pb.emit(t, vec_mask(part, part, tokens, kb, diag - k0, -INFINITY));
          }
        }
        pb.emit(t, vec_reduce(Opcode::VRmax, vec(bmax), sc, rows, kb));
        pb.emit(t, vec_binary(Opcode::VMax, vec(m_next), vec(m), vec(bmax), rows, 1));
        pb.emit(t, vec_binary(Opcode::VSub, vec(alpha), vec(m), vec(m_next), rows, 1));
        pb.emit(t, vec_unary(Opcode::VExp, vec(alpha), vec(alpha), rows, 1));
        pb.emit(t, vec_binary(Opcode::VSub, sc, sc, vec(m_next), rows, kb, Bcast::Col));
        pb.emit(t, vec_unary(Opcode::VExp, pr, sc, rows, kb));
        pb.emit(t, vec_reduce(Opcode::VRsum, vec(bmax), pr, rows, kb));
        pb.emit(t, vec_binary(Opcode::VMul, vec(lbuf), vec(lbuf), vec(alpha), rows, 1));
        pb.emit(t, vec_binary(Opcode::VAdd, vec(lbuf), vec(lbuf), vec(bmax), rows, 1));
        pb.emit(t, vec_binary(Opcode::VMul, vec(obuf), vec(obuf), vec(alpha), rows, D, Bcast::Col));
        MatmulOperands pv;
        pv.acc = sram(int64_t(obuf)), pv.a = sram(int64_t(pbuf)), pv.b = sram(int64_t(vbuf[set]));
        pv.m = rows, pv.k = kb, pv.n = D, pv.lda = Lb * 2, pv.accumulate = true;
        pb.emit(t, matmul(pv));
        if (j + 2 < nblocks)
          issued[set] = load_block(j + 2);  // waits for this block's MATMULs (scoreboard)
      }
      pb.emit(t, vec_unary(Opcode::VRecip, vec(lbuf), vec(lbuf), rows, 1));
      pb.emit(t, vec_binary(Opcode::VMul, vec(obf, s.out.dtype), vec(obuf), vec(lbuf), rows, D,
                            Bcast::Col));
      const Block out = head_rows(D, tokens, G, ldo, oe, oe, true);
      const Addr dst = advance(s.out.addr, (b * S + qb * p.q_block) * ldo + h * G * D * oe);
      pb.emit(t, dma(dst, sram(int64_t(obf)), out, s.out.dtype, Dtype::None,
                     {out_sem, int64_t(isa::kTileSelf)}));
    }
    if (u1 > u0) pb.emit(t, sem_wait(out_sem, u1 - u0));
    if (appends > 0) pb.emit(t, sem_wait(append_sem, appends));
  }
}

}  // namespace

void emit_attention(KernelContext& ctx, const AttentionSpec& s, const AttentionPlan& p) {
  if (p.key_block > 0) {
    emit_key_blocks(ctx, s, p);
  } else {
    emit_whole_heads(ctx, s, p);
  }
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
