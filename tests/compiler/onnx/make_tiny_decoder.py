#!/usr/bin/python3
"""Builds a tiny Llama-style decoder in PyTorch, exports it to ONNX and writes what the ONNX
frontend's tests compare against, into OUTDIR:

  tiny_decoder.onnx      the model: input_ids [batch, seq] int64 -> logits [batch, seq, vocab]
                         (with --dynamic, batch and seq are dynamic axes)
  input_ids.npy          the token ids the logits were computed for (int64)
  logits.npy             PyTorch's float32 logits for them
  config.json            the same architecture as a Hugging Face Llama config
  weights/NAME.npy       every parameter in PyTorch's layout, named as in the state dict
  unsupported.onnx       a graph with Einsum and LSTM nodes (no frontend maps these)
  unfusable.onnx         a graph of supported op types that matches no fusion pattern

The modules follow Hugging Face's Llama (names, rotate-half RoPE computed from position ids,
repeat_kv for grouped-query attention, a float mask added to the scores), so the export
contains what a real one does.
"""
import argparse
import json
import math
import os
import shutil

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        # Not ones: the tests must see that each norm's own weight was imported.
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    b, kv_heads, s, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kv_heads, n_rep, s, d).reshape(b, kv_heads * n_rep, s, d)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim, theta):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids):
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()  # [batch, seq, head_dim]


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = a.heads, a.kv_heads, a.hidden // a.heads
        self.q_proj = nn.Linear(a.hidden, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(a.hidden, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(a.hidden, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, a.hidden, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, self.heads // self.kv_heads)
        v = repeat_kv(v, self.heads // self.kv_heads)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden, a.intermediate, bias=False)
        self.up_proj = nn.Linear(a.hidden, a.intermediate, bias=False)
        self.down_proj = nn.Linear(a.intermediate, a.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.hidden, a.eps)
        self.self_attn = Attention(a)
        self.post_attention_layernorm = RMSNorm(a.hidden, a.eps)
        self.mlp = MLP(a)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList(DecoderLayer(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.hidden, a.eps)
        self.rotary_emb = RotaryEmbedding(a.hidden // a.heads, a.theta)

    def forward(self, input_ids):
        b, s = input_ids.shape
        x = self.embed_tokens(input_ids)
        position_ids = torch.arange(s, device=input_ids.device).unsqueeze(0).expand(b, s)
        cos, sin = self.rotary_emb(position_ids)
        mask = torch.full((s, s), torch.finfo(torch.float32).min).triu(1)[None, None, :, :]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class ForCausalLM(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.model = Model(a)
        self.lm_head = nn.Linear(a.hidden, a.vocab, bias=False)

    def forward(self, input_ids):
        return self.lm_head(self.model(input_ids))


def write_error_models(out):
    """Two small graphs the importer must reject, with named nodes for the messages."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 4])
    table = helper.make_tensor("table", TensorProto.FLOAT, [16, 8], np.linspace(-1, 1, 128).tolist())
    gather = helper.make_node("Gather", ["table", "input_ids"], ["x"], name="embed")

    nodes = [
        gather,
        helper.make_node("Einsum", ["x", "x"], ["e"], name="odd_einsum", equation="bsh,bsh->bsh"),
        helper.make_node("LSTM", ["e", "w", "r"], ["y"], name="odd_lstm", hidden_size=8),
    ]
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 32, 8], np.zeros(256).tolist())
    r = helper.make_tensor("r", TensorProto.FLOAT, [1, 32, 8], np.zeros(256).tolist())
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "unsupported", [ids], [y], [table, w, r])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), os.path.join(out, "unsupported.onnx"))

    # Sigmoid alone is a known op type, but the IR has no sigmoid: only x * sigmoid(x) fuses (Silu).
    nodes = [gather, helper.make_node("Sigmoid", ["x"], ["y"], name="lonely_sigmoid")]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])
    graph = helper.make_graph(nodes, "unfusable", [ids], [y], [table])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), os.path.join(out, "unfusable.onnx"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=128)
    p.add_argument("--eps", type=float, default=1e-5)
    p.add_argument("--theta", type=float, default=10000.0)
    p.add_argument("--max-positions", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=14)
    p.add_argument("--dynamic", action="store_true", help="export batch and seq as dynamic axes")
    a = p.parse_args()
    if a.hidden % a.heads or a.heads % a.kv_heads or (a.hidden // a.heads) % 2:
        p.error("hidden must split into heads of even head_dim, and heads into kv_heads groups")

    torch.manual_seed(a.seed)
    model = ForCausalLM(a).eval()
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), dtype=torch.int64)
    with torch.no_grad():
        logits = model(ids)

    shutil.rmtree(os.path.join(a.outdir, "weights"), ignore_errors=True)  # no parameters of an earlier run
    os.makedirs(os.path.join(a.outdir, "weights"))
    path = os.path.join(a.outdir, "tiny_decoder.onnx")
    dynamic = {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}} if a.dynamic else None
    torch.onnx.export(model, (ids,), path, input_names=["input_ids"], output_names=["logits"], opset_version=a.opset,
                      dynamic_axes=dynamic)
    onnx.checker.check_model(onnx.load(path))

    np.save(os.path.join(a.outdir, "input_ids.npy"), ids.numpy())
    np.save(os.path.join(a.outdir, "logits.npy"), logits.numpy().astype(np.float32))
    for name, t in model.state_dict().items():
        np.save(os.path.join(a.outdir, "weights", name + ".npy"), t.numpy())
    config = {
        "model_type": "llama",
        "hidden_size": a.hidden,
        "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "vocab_size": a.vocab,
        "rms_norm_eps": a.eps,
        "rope_theta": a.theta,
        "max_position_embeddings": a.max_positions,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
    }
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_error_models(a.outdir)


if __name__ == "__main__":
    main()
