// Attention with a KV cache, grouped-query aware. Work units are (sequence b, key/value head h,
// block of query tokens); a tile takes a contiguous run of units so that it loads a head's keys
// and values once for all its query blocks. Per unit, in SRAM:
//   Q  = the block's queries of the Gq query heads that share h, rows (g, s)
//   K, V = cached positions [0, past) from the cache, new positions from this step's k and v
//   S = Q K^T * 1/sqrt(D), causally masked; P = exp(S - rowmax), Z = rowsum(P)
//   O = (P V) / Z, written back to the heads' columns of the output rows.
// The unit that owns a head's first query block also appends the step's k and v to the cache.
// With two K/V buffers, a tile loads its next head's keys and values while it computes.
//
// When a head's keys and values do not fit the SRAM, the keys are walked in blocks with an
// online softmax (FlashAttention): per block j, S = Q K_j^T * scale (masked), m' = max(m,
// rowmax S), a = exp(m - m'), P = exp(S - m'), l = l a + rowsum P, O = O a + P V_j, m = m';
// finally O / l. Blocks are double-buffered; each unit streams its head's blocks.
#pragma once

#include <cstdint>

#include "compiler/kernels/rows.hpp"

namespace tessera::compiler {

struct AttentionSpec {
  int64_t batch = 1, seq = 1, past = 0, heads = 1, kv_heads = 1, head_dim = 64;
  int64_t capacity = 0;  // positions per sequence in the cache (>= past + seq)
  bool causal = true;
  Dtype kv_dtype = Dtype::Bf16;
  Operand2 q, k, v;      // [batch * seq, heads * head_dim] (k, v: kv_heads) in HBM
  Addr kcache, vcache;   // [batch, kv_heads, capacity, head_dim]
  Operand2 out;          // [batch * seq, heads * head_dim]
};

struct AttentionPlan {
  int64_t q_block = 0;     // query tokens per unit
  int64_t units = 0;
  int64_t tiles = 0;
  int64_t kv_buffers = 2;  // 2: a tile's next head loads while the current one computes
  int64_t key_block = 0;   // > 0: keys walked in blocks of this many (online softmax)
};

// Whole heads when they fit the budget, else key blocks; `key_block` > 0 asks for key blocks
// of that size.
AttentionPlan plan_attention(const arch::Arch& a, const AttentionSpec& s, uint64_t sram_budget, int64_t key_block = 0);
void emit_attention(KernelContext& ctx, const AttentionSpec& s, const AttentionPlan& p);

// Embedding: output row t = table row rows[t]; one DMA per row, rows dealt to tiles.
void emit_gather(KernelContext& ctx, const Operand2& table, int64_t cols, const std::vector<int64_t>& rows,
                 const Operand2& out);

}  // namespace tessera::compiler
