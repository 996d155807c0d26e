// Attention with a KV cache, grouped-query aware, FlashAttention style. A unit of work is
// (sequence b, key/value head h, block of query tokens); its queries are the block's tokens of
// the G query heads that share h, rows (g, s). A unit walks its keys in blocks with an online
// softmax:
//   S = (Q / sqrt(D)) K_j^T (causally masked where the block crosses the diagonal)
//   m' = max(m, rowmax S), a = exp(m - m'), P = exp(S - m'), l = l a + rowsum P, O = O a + P V_j
// and finally O / l goes to the heads' columns of the output rows. Keys of a block come from
// the cache (positions before `past`, converted from the cache's dtype) and from this step's k
// and v. Query and key blocks are as large as the SRAM allows (fewer re-reads of K and V, fewer
// instructions); a tile streams its units' key blocks through two buffer pairs without a gap
// between units. A causal block late in a sequence sees more keys than an early one, so they
// go to tiles in pairs (early with late) of equal cost, dealt round-robin: every round of
// pairs costs every tile the same (and a sampled run can emit a few rounds, KernelContext).
// The unit with a head's first query block appends the step's keys and values to the cache.
//
// Short units (every key in one block, as in most decode steps) are taken in groups: each
// step of the group's units is issued together, so their matrix products follow one another
// on the arrays and their softmax steps on the vector unit, instead of one unit's chain of
// dependent instructions at a time; the next group loads while this one computes.
//
// A ragged step (continuous batching) gives each sequence its own tokens and past: rows of a
// sequence follow the one before's, and a unit is a query block of one sequence. Its work items
// then cost unlike amounts and go to tiles longest first, each to the tile least loaded (one
// round: no sampling), an item's cost its keys x max(rows, the arrays' FLOP per HBM byte).
//
// Split keys (flash decoding): when there are fewer units than tiles (a decode step of a small
// batch), each unit's keys are cut into `splits` ranges on different tiles. Each writes its
// unnormalised O with its m and l (fp32) to an HBM scratch area; after a barrier, one tile per
// unit combines them: M = max m_s, w_s = exp(m_s - M), O = sum w_s O_s / sum w_s l_s.
#pragma once

#include <cstdint>
#include <vector>

#include "compiler/kernels/rows.hpp"

namespace tessera::compiler {

struct AttentionSpec {
  int64_t batch = 1, seq = 1, past = 0, heads = 1, kv_heads = 1, head_dim = 64;
  int64_t capacity = 0;  // positions per sequence in the cache (>= past + seq)
  // A ragged step: sequence b's tokens and past (both of size batch); empty: seq and past for all.
  std::vector<int64_t> seq_lens, past_lens;
  bool ragged() const { return !seq_lens.empty(); }
  int64_t seq_of(int64_t b) const { return ragged() ? seq_lens[size_t(b)] : seq; }
  int64_t past_of(int64_t b) const { return ragged() ? past_lens[size_t(b)] : past; }
  bool causal = true;
  Dtype kv_dtype = Dtype::Bf16;
  Operand2 q, k, v;      // [batch * seq, heads * head_dim] (k, v: kv_heads) in HBM
  Addr kcache, vcache;   // [batch, kv_heads, capacity, head_dim]
  Operand2 out;          // [batch * seq, heads * head_dim]
};

struct AttentionPlan {
  int64_t q_block = 0;     // query tokens per unit
  int64_t key_block = 0;   // keys per block
  int64_t splits = 1;      // key ranges per unit (decode with fewer units than tiles)
  int64_t units = 0;       // (sequence, kv head, query block, key range)
  int64_t tiles = 0;
  int64_t group = 1;       // > 1: units whose keys fit one block go in groups of this many
  uint64_t scratch_bytes = 0;  // HBM for the partial results of split keys
  uint64_t scratch = 0;        // its address (memory planning)
};

// Blocks as large as fit the budget; `key_block` > 0 asks for key blocks of that size.
AttentionPlan plan_attention(const arch::Arch& a, const AttentionSpec& s, uint64_t sram_budget, int64_t key_block = 0);
void emit_attention(KernelContext& ctx, const AttentionSpec& s, const AttentionPlan& p);

// Embedding: output row t = table row rows[t]; one DMA per row, rows dealt to tiles.
void emit_gather(KernelContext& ctx, const Operand2& table, int64_t cols, const std::vector<int64_t>& rows,
                 const Operand2& out);

}  // namespace tessera::compiler
