"""The roofline of a model step, from the model's shapes alone (never from simulator stats).

    time = max(matrix FLOPs / peak of the weights' dtype + attention FLOPs / peak of the KV
               cache's dtype, minimal HBM bytes / HBM bandwidth)

The weights' dtype (--dtype) sets the rate of the products with weights; attention multiplies
activations by the KV cache (--kv-dtype, bf16 unless given), so its FLOPs count at that dtype's
peak: fp8 weights do not make attention faster.

FLOPs: every Linear (2 x in x out per token row), attention as two matrix products per head
(QK^T and PV), causal prefill attention counted as S^2/2 keys per sequence, decode attention over
context + 1 keys; the LM head on the rows whose logits are computed (the last token of each
sequence, what serving needs); an MoE's experts on the tokens routed to them (k of E a token),
and its router.
Minimal HBM bytes: every weight the step multiplies by, read once (an MoE's experts: those some
token chose, E x (1 - (1 - k/E)^tokens) under uniform routing); the embedding rows gathered; the
KV cache read (decode) and written; the logits written (fp32).
Activations between ops are assumed to stay on chip, so this is a lower bound.
"""
import json
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DTYPE_BYTES = {"bf16": 2, "fp8e4m3": 1, "fp8e5m2": 1}
DTYPE_CLASS = {"bf16": "bf16", "fp8e4m3": "fp8", "fp8e5m2": "fp8"}


class Shapes:
    """The few hyper-parameters of a Hugging Face config that set FLOPs and bytes."""

    def __init__(self, name):
        path = name if name.endswith(".json") else os.path.join(ROOT, "workloads", "models", name + ".json")
        c = json.load(open(path))
        self.name = name
        family = c["model_type"]
        if family == "gpt2":
            self.hidden, self.layers, self.heads = c["n_embd"], c["n_layer"], c["n_head"]
            self.kv_heads = self.heads
            self.inter = c.get("n_inner") or 4 * self.hidden
            self.positions = c.get("n_positions", 1024)
            self.gated, self.tied = False, c.get("tie_word_embeddings", True)
        elif family == "opt":
            self.hidden, self.layers, self.heads = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
            self.kv_heads, self.inter = self.heads, c["ffn_dim"]
            self.positions = c.get("max_position_embeddings", 2048)
            self.gated, self.tied = False, c.get("tie_word_embeddings", True)
        else:
            self.hidden, self.layers = c["hidden_size"], c["num_hidden_layers"]
            self.heads = c["num_attention_heads"]
            self.kv_heads = c.get("num_key_value_heads") or self.heads
            self.inter = c["intermediate_size"]
            self.positions = c.get("max_position_embeddings", 4096)
            self.gated, self.tied = True, c.get("tie_word_embeddings", False)
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.vocab = c["vocab_size"]
        self.experts = c.get("num_local_experts", 0) or 0
        self.top_k = c.get("num_experts_per_tok", 0) or 0

    def layer_matrices(self, tokens=1):
        """Parameters of one layer's matrices: those a token multiplies by, and those a step of
        `tokens` tokens reads (an MoE's experts that some token chose, under uniform routing)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn = self.hidden * (q + 2 * kv) + q * self.hidden
        mlp = (3 if self.gated else 2) * self.hidden * self.inter
        if not self.experts:
            return attn, mlp, mlp
        router = self.experts * self.hidden
        chosen = self.experts * (1 - (1 - self.top_k / self.experts) ** tokens)
        return attn, self.top_k * mlp + router, chosen * mlp + router


def step(model, phase, batch, length, dtype="bf16", kv_dtype="bf16"):
    """FLOPs and minimal HBM bytes of one step. length: prompt tokens (prefill) or context (decode)."""
    m = model if isinstance(model, Shapes) else Shapes(model)
    tokens = batch * (length if phase == "prefill" else 1)
    attn, mlp, mlp_read = m.layer_matrices(tokens)
    wb, kvb = DTYPE_BYTES[dtype], DTYPE_BYTES[kv_dtype]
    per_token_kv = 2 * m.kv_heads * m.head_dim  # K and V elements per token per layer
    kv_read = 0 if phase == "prefill" else batch * length * per_token_kv * kvb
    flops = m.layers * 2 * tokens * (attn + mlp) + attention_flops(m, phase, batch, length)
    logits_rows = batch
    flops += 2 * logits_rows * m.hidden * m.vocab
    norms = m.layers * 2 * m.hidden * 2 + m.hidden * 2
    weights = m.layers * (attn + mlp_read) * wb + m.vocab * m.hidden * wb + norms
    bytes_ = (weights
              + tokens * m.hidden * 2                                # embedding rows
              + m.layers * (kv_read + tokens * per_token_kv * kvb)   # KV cache read and written
              + logits_rows * m.vocab * 4)                           # fp32 logits
    return flops, bytes_


def attention_flops(model, phase, batch, length):
    """QK^T and PV of every layer: S x S/2 (causal) keys per head in prefill, context + 1 in decode."""
    m = model if isinstance(model, Shapes) else Shapes(model)
    keys = length / 2 if phase == "prefill" else length + 1
    queries = batch * (length if phase == "prefill" else 1)
    return m.layers * 2 * 2 * m.heads * m.head_dim * queries * keys


def roofline_seconds(model, phase, batch, length, peak_flops, hbm_bandwidth, dtype="bf16", kv_dtype="bf16"):
    """peak_flops: FLOP/s by dtype class (bf16, fp8), as `arch list --json` derives them."""
    flops, bytes_ = step(model, phase, batch, length, dtype, kv_dtype)
    attn = attention_flops(model, phase, batch, length)
    compute = (flops - attn) / peak_flops[DTYPE_CLASS[dtype]] + attn / peak_flops[DTYPE_CLASS[kv_dtype]]
    return max(compute, bytes_ / hbm_bandwidth)


def fits_positions(model, phase, length):
    m = model if isinstance(model, Shapes) else Shapes(model)
    return length + (0 if phase == "prefill" else 1) <= m.positions
