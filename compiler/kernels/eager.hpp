// The kernels plain PyTorch launches (Framework::PyTorch): a model written with torch ops, as
// Hugging Face's reference modelling code is, runs every element-wise step as a kernel of its
// own that reads its inputs from HBM and writes its output back. The compiled op still does the
// op's work (and computes its values); what PyTorch launches besides it are memory-bound
// kernels whose only cost is their traffic and their launch, so they are emitted as traffic
// over a scratch buffer: each tile reads and writes its share, HBM to SRAM and back.
//
// Per op, from the reference code (transformers' LlamaRMSNorm, apply_rotary_pos_emb,
// LlamaRotaryEmbedding, sdpa_attention_forward; E = elements of the op's input):
//   RmsNorm: to(fp32) (2E read, 4E written), pow(2) (4E, 4E), mean (4E, -), + eps and rsqrt (a
//     row each), x * rsqrt (4E, 4E), to(bf16) (4E, 2E); then weight * x is the op itself.
//   Rope, per tensor: x * cos (2E, 2E), -x2 of rotate_half (E, E), cat (2E, 2E), * sin (2E, 2E);
//     then the sum is the op itself. The first Rope of a layer also rebuilds the tables
//     (RoPE tables built per layer): inv_freq @ positions, cat, cos, sin, and both to(bf16).
//   Attention: the KV-cache writes (index_copy of K and of V) and the output's transpose copy.
//   The lm_head of fp32 logits: the logits' to(fp32).
// Unfused Linear layers (q, k, v; gate, up) and activations come from not fusing the graph.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compiler/graph.hpp"
#include "compiler/kernels/kernel.hpp"

namespace tessera::compiler {

struct Traffic {
  std::string what;  // the torch op, for the plan's notes
  uint64_t read = 0, write = 0;  // bytes
};

// The kernels PyTorch launches for `op` besides the op's own; `rebuilds_rope` for the Rope that
// rebuilds its layer's tables.
std::vector<Traffic> pytorch_kernels(const Graph& g, const Op& op, bool rebuilds_rope);

// One such kernel on the chip: tiles read and write `t`'s bytes of the scratch at `scratch` (at
// least max(read, write) bytes), one tile per 8 KiB of traffic (as an element-wise kernel's
// grid grows with its tensor), at most all of them. Its rounds may be sampled: `ctx` is nested
// in the op's context (KernelContext::nest_in), whose region instances its rounds extend.
void emit_traffic(KernelContext& ctx, uint64_t scratch, const Traffic& t);

}  // namespace tessera::compiler
