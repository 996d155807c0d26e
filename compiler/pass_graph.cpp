// Graph-level passes: shape inference, fusion, dtype assignment.
#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <tuple>

#include "compiler/error.hpp"
#include "compiler/passes.hpp"

namespace tessera::compiler {
namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

[[noreturn]] void bad(const Op& op, const std::string& why) {
  throw CompileError(fmt::format("op {} ({}): {}", op.name, op_kind_name(op.kind), why));
}

const std::vector<int64_t>& shape(const Graph& g, const Op& op, size_t i) {
  if (i >= op.inputs.size()) bad(op, fmt::format("expects at least {} inputs", i + 1));
  const Value& v = g.v(op.inputs[i]);
  if (v.shape.empty()) bad(op, fmt::format("input %{} has no shape", v.name));
  return v.shape;
}

void expect_2d(const Graph& g, const Op& op, size_t i) {
  if (shape(g, op, i).size() != 2) bad(op, fmt::format("input %{} must be 2-D, is {}", g.v(op.inputs[i]).name, shape_text(shape(g, op, i))));
}

// The output shapes an op's inputs and attributes imply.
std::vector<std::vector<int64_t>> output_shapes(const Graph& g, const Op& op) {
  switch (op.kind) {
    case OpKind::Embedding: return {{int64_t(op.ints("rows").size()), shape(g, op, 0).at(1)}};
    case OpKind::Linear: {
      expect_2d(g, op, 0);
      expect_2d(g, op, 1);
      const auto& x = shape(g, op, 0);
      const auto& w = shape(g, op, 1);
      if (x[1] != w[1]) bad(op, fmt::format("input has {} features but the weight {} expects {}", x[1], shape_text(w), w[1]));
      if (op.inputs.size() > 2 && shape(g, op, 2) != std::vector<int64_t>{w[0]}) {
        bad(op, fmt::format("bias {} does not match {} outputs", shape_text(shape(g, op, 2)), w[0]));
      }
      return {{x[0], w[0]}};
    }
    case OpKind::MatMul: {
      const auto& a = shape(g, op, 0);
      const auto& b = shape(g, op, 1);
      if (a.size() != 2 || b.size() != 2 || a[1] != b[0]) bad(op, fmt::format("cannot multiply {} by {}", shape_text(a), shape_text(b)));
      return {{a[0], b[1]}};
    }
    case OpKind::Add:
    case OpKind::Mul: {
      const auto& a = shape(g, op, 0);
      const auto& b = shape(g, op, 1);
      const bool row = b.size() == 1 ? b[0] == a.back() : (b.size() == 2 && b[0] == 1 && b[1] == a.back());
      if (a != b && !row) bad(op, fmt::format("cannot combine {} with {}", shape_text(a), shape_text(b)));
      return {a};
    }
    case OpKind::RmsNorm:
    case OpKind::LayerNorm: {
      const auto& x = shape(g, op, 0);
      for (size_t i = 1; i < op.inputs.size(); ++i) {
        if (shape(g, op, i) != std::vector<int64_t>{x.back()}) bad(op, "its parameters must have one value per feature");
      }
      return {x};
    }
    case OpKind::Softmax:
    case OpKind::Silu:
    case OpKind::Gelu:
    case OpKind::Relu: return {shape(g, op, 0)};
    case OpKind::Rope: {
      const auto& x = shape(g, op, 0);
      const int64_t heads = op.i("heads"), d = op.i("head_dim");
      if (x.size() != 2 || x[1] != heads * d) bad(op, fmt::format("input {} is not [tokens, {} x {}]", shape_text(x), heads, d));
      const auto& c = shape(g, op, 1);
      if (c.size() != 2 || c[1] != d / 2 || shape(g, op, 2) != c) bad(op, "cos and sin tables must be [positions, head_dim / 2]");
      if (c[0] != op.i("seq")) bad(op, fmt::format("tables have {} positions for {} tokens per sequence", c[0], op.i("seq")));
      return {x};
    }
    case OpKind::SwiGlu: {
      const auto& x = shape(g, op, 0);
      if (x.size() != 2 || x[1] % 2 != 0) bad(op, "input must be [tokens, 2 * features]");
      return {{x[0], x[1] / 2}};
    }
    case OpKind::Attention: {
      const int64_t b = op.i("batch"), hq = op.i("heads"), hkv = op.i("kv_heads"), d = op.i("head_dim");
      if (hq % hkv != 0) bad(op, "query heads must be a multiple of key/value heads");
      // Per sequence (a ragged step) or one length and past for all.
      const bool ragged = op.attrs.count("seq_lens") > 0;
      const std::vector<int64_t> seqs = ragged ? op.ints("seq_lens") : std::vector<int64_t>(size_t(b), op.i("seq"));
      const std::vector<int64_t> pasts = ragged ? op.ints("past_lens") : std::vector<int64_t>(size_t(b), op.i("past"));
      if (int64_t(seqs.size()) != b || int64_t(pasts.size()) != b) {
        bad(op, fmt::format("{} sequences with {} lengths and {} pasts", b, seqs.size(), pasts.size()));
      }
      const int64_t tokens = std::accumulate(seqs.begin(), seqs.end(), int64_t(0));
      const std::vector<int64_t> q{tokens, hq * d}, kv{tokens, hkv * d}, cache{b, hkv, op.i("capacity"), d};
      for (int64_t i = 0; i < b; ++i) {
        const int64_t s = seqs[size_t(i)], past = pasts[size_t(i)];
        if (s < 1 || past < 0) bad(op, fmt::format("sequence {}: {} tokens after {}", i, s, past));
        if (cache[2] < past + s) bad(op, fmt::format("a cache of {} positions cannot hold {} + {}", cache[2], past, s));
      }
      if (shape(g, op, 0) != q) bad(op, fmt::format("q is {}, expected {}", shape_text(shape(g, op, 0)), shape_text(q)));
      if (shape(g, op, 1) != kv || shape(g, op, 2) != kv) bad(op, fmt::format("k and v must be {}", shape_text(kv)));
      if (shape(g, op, 3) != cache || shape(g, op, 4) != cache) bad(op, fmt::format("caches must be {}", shape_text(cache)));
      return {q};
    }
    case OpKind::MoeExperts: return {shape(g, op, 0)};
    case OpKind::AllReduce:
      if (op.ints("group").empty()) bad(op, "has no chips to reduce over");
      return {shape(g, op, 0)};
    case OpKind::Reshape: {
      const auto& x = shape(g, op, 0);
      const auto& to = op.ints("shape");
      const int64_t n = std::accumulate(x.begin(), x.end(), int64_t(1), std::multiplies<>());
      const int64_t m = std::accumulate(to.begin(), to.end(), int64_t(1), std::multiplies<>());
      if (n != m) bad(op, fmt::format("cannot view {} as {}", shape_text(x), shape_text(to)));
      return {to};
    }
    case OpKind::Concat: {
      const int64_t axis = op.i("axis");
      std::vector<int64_t> out = shape(g, op, 0);
      for (size_t i = 1; i < op.inputs.size(); ++i) out.at(size_t(axis)) += shape(g, op, i).at(size_t(axis));
      return {out};
    }
    case OpKind::Split: {
      const int64_t axis = op.i("axis");
      const auto& x = shape(g, op, 0);
      const auto& sizes = op.ints("sizes");
      if (std::accumulate(sizes.begin(), sizes.end(), int64_t(0)) != x.at(size_t(axis))) bad(op, "sizes do not add up");
      std::vector<std::vector<int64_t>> outs;
      for (int64_t n : sizes) {
        std::vector<int64_t> s = x;
        s[size_t(axis)] = n;
        outs.push_back(s);
      }
      return outs;
    }
    case OpKind::Transpose:
    case OpKind::Slice: bad(op, "is not supported by code generation");
  }
  bad(op, "unknown op");
}

int64_t layer_of(const Op& op) { return op.i("layer", -1); }

// Replaces the ops at `remove` (sorted) with `add`, placed where the first removed op was.
void splice(Graph& g, const std::vector<int>& remove, std::vector<Op> add) {
  std::vector<Op> ops;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    if (!std::binary_search(remove.begin(), remove.end(), int(i))) {
      ops.push_back(std::move(g.ops[i]));
    } else if (int(i) == remove.front()) {
      for (Op& a : add) ops.push_back(std::move(a));
    }
  }
  g.ops = std::move(ops);
}

// A weight made of others stacked along rows; its data (if the parts have data) concatenated.
int stacked_weight(Graph& g, const std::vector<int>& parts, const std::string& name) {
  std::vector<int64_t> shape = g.v(parts[0]).shape;
  shape[0] = 0;
  bool data = true;
  for (int p : parts) shape[0] += g.v(p).shape[0], data = data && g.v(p).data != nullptr;
  const int w = g.value(name, shape, g.v(parts[0]).dtype, Role::Weight);
  if (data) {
    auto all = std::make_shared<std::vector<float>>();
    for (int p : parts) all->insert(all->end(), g.v(p).data->begin(), g.v(p).data->end());
    g.v(w).data = all;
  }
  return w;
}

bool fuse_sibling_linears(Graph& g) {
  const std::vector<std::vector<int>> users = g.users();
  for (size_t vi = 0; vi < g.values.size(); ++vi) {
    std::vector<int> group;
    for (int u : users[vi]) {
      const Op& op = g.ops[size_t(u)];
      if (op.kind != OpKind::Linear || op.inputs[0] != int(vi) || op.attrs.count("act")) continue;
      if (g.v(op.inputs[1]).role != Role::Weight) continue;
      if (!group.empty()) {
        const Op& first = g.ops[size_t(group[0])];
        if (op.inputs.size() != first.inputs.size() || layer_of(op) != layer_of(first)) continue;
      }
      group.push_back(u);
    }
    if (group.size() < 2) continue;
    std::vector<int> weights, biases;
    std::vector<int64_t> sizes;
    std::vector<int> outputs;
    std::string names;
    for (int u : group) {
      const Op& op = g.ops[size_t(u)];
      weights.push_back(op.inputs[1]);
      if (op.inputs.size() > 2) biases.push_back(op.inputs[2]);
      sizes.push_back(g.v(op.inputs[1]).shape[0]);
      outputs.push_back(op.outputs[0]);
      names += (names.empty() ? "" : "+") + op.name;
    }
    const Op& first = g.ops[size_t(group[0])];
    const int64_t layer = layer_of(first);
    std::vector<Op> add;
    auto with_layer = [&](Op op) {
      if (layer >= 0) op.attrs["layer"] = layer;
      return op;
    };
    const int w = stacked_weight(g, weights, names + ".weight");
    Op cw;
    cw.kind = OpKind::Concat, cw.name = names + ".stack", cw.inputs = weights, cw.outputs = {w};
    cw.attrs["axis"] = int64_t(0);
    add.push_back(with_layer(cw));
    std::vector<int> linear_in{int(vi), w};
    if (!biases.empty()) {
      const int b = stacked_weight(g, biases, names + ".bias");
      Op cb;
      cb.kind = OpKind::Concat, cb.name = names + ".stack_bias", cb.inputs = biases, cb.outputs = {b};
      cb.attrs["axis"] = int64_t(0);
      add.push_back(with_layer(cb));
      linear_in.push_back(b);
    }
    const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
    const int y = g.value(names, {g.v(int(vi)).shape[0], total}, isa::Dtype::Bf16, Role::Activation);
    Op lin;
    lin.kind = OpKind::Linear, lin.name = names, lin.inputs = linear_in, lin.outputs = {y};
    lin.notes["fused"] = fmt::format("{} Linear layers reading %{}", group.size(), g.v(int(vi)).name);
    add.push_back(with_layer(lin));
    Op split;
    split.kind = OpKind::Split, split.name = names + ".split", split.inputs = {y}, split.outputs = outputs;
    split.attrs["axis"] = int64_t(1);
    split.attrs["sizes"] = sizes;
    add.push_back(with_layer(split));
    std::sort(group.begin(), group.end());
    splice(g, group, std::move(add));
    return true;
  }
  return false;
}

// The op producing value v, or -1.
int producer(const Graph& g, int v) {
  for (size_t i = 0; i < g.ops.size(); ++i) {
    for (int o : g.ops[i].outputs) {
      if (o == v) return int(i);
    }
  }
  return -1;
}

bool fuse_swiglu(Graph& g) {
  const std::vector<std::vector<int>> users = g.users();
  for (size_t mi = 0; mi < g.ops.size(); ++mi) {
    const Op& mul = g.ops[mi];
    if (mul.kind != OpKind::Mul) continue;
    const int si = producer(g, mul.inputs[0]);
    if (si < 0 || g.ops[size_t(si)].kind != OpKind::Silu || users[size_t(mul.inputs[0])].size() != 1) continue;
    const Op& silu = g.ops[size_t(si)];
    const int pi = producer(g, silu.inputs[0]);
    if (pi < 0 || g.ops[size_t(pi)].kind != OpKind::Split) continue;
    const Op& split = g.ops[size_t(pi)];
    if (split.outputs.size() != 2 || split.outputs[0] != silu.inputs[0] || split.outputs[1] != mul.inputs[1]) continue;
    if (users[size_t(split.outputs[0])].size() != 1 || users[size_t(split.outputs[1])].size() != 1) continue;
    Op fused;
    fused.kind = OpKind::SwiGlu;
    fused.name = mul.name;
    fused.inputs = {split.inputs[0]};
    fused.outputs = mul.outputs;
    fused.attrs = mul.attrs;
    fused.notes["fused"] = fmt::format("silu(%{}) * %{}", g.v(split.outputs[0]).name, g.v(split.outputs[1]).name);
    std::vector<int> remove{pi, si, int(mi)};
    std::sort(remove.begin(), remove.end());
    // The SwiGlu goes where the Mul was (after both halves exist).
    g.ops[mi] = fused;
    remove.erase(std::find(remove.begin(), remove.end(), int(mi)));
    splice(g, remove, {});
    return true;
  }
  return false;
}

bool fuse_activation(Graph& g) {
  const std::vector<std::vector<int>> users = g.users();
  for (size_t ai = 0; ai < g.ops.size(); ++ai) {
    const Op& act = g.ops[ai];
    if (act.kind != OpKind::Gelu && act.kind != OpKind::Relu && act.kind != OpKind::Silu) continue;
    const int li = producer(g, act.inputs[0]);
    if (li < 0 || g.ops[size_t(li)].kind != OpKind::Linear || g.ops[size_t(li)].attrs.count("act")) continue;
    if (users[size_t(act.inputs[0])].size() != 1) continue;
    Op& lin = g.ops[size_t(li)];
    lin.attrs["act"] = std::string(op_kind_name(act.kind));
    lin.notes["fused"] = (lin.notes.count("fused") ? lin.notes["fused"] + "; " : "") + "then " + std::string(op_kind_name(act.kind));
    lin.outputs = act.outputs;
    splice(g, {int(ai)}, {});
    return true;
  }
  return false;
}

// MoE experts given one weight per matrix (x, routing weights, then w1, w3, w2 of every expert)
// read stacks instead: [W1_0; W3_0; W1_1; W3_1; ...] [E*2I, H] and [W2_0; W2_1; ...] [E*H, I],
// made by Concat ops that the memory planner resolves by placement.
bool fuse_expert_weights(Graph& g) {
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    if (op.kind != OpKind::MoeExperts) continue;
    const int64_t experts = op.i("experts");
    if (int64_t(op.inputs.size()) != 2 + 3 * experts) continue;
    std::vector<int> gate_up, down;
    for (int64_t e = 0; e < experts; ++e) {
      const size_t base = size_t(2 + 3 * e);
      gate_up.push_back(op.inputs[base]);
      gate_up.push_back(op.inputs[base + 1]);
      down.push_back(op.inputs[base + 2]);
    }
    for (int w : gate_up) {
      if (g.v(w).role != Role::Weight) return false;
    }
    const int64_t layer = layer_of(op);
    const int w13 = stacked_weight(g, gate_up, op.name + ".w13");
    const int w2 = stacked_weight(g, down, op.name + ".w2");
    std::vector<Op> add;
    for (const auto& [parts, stack, suffix] : {std::tuple{gate_up, w13, ".w13"}, std::tuple{down, w2, ".w2"}}) {
      Op c;
      c.kind = OpKind::Concat, c.name = op.name + suffix + ".stack", c.inputs = parts, c.outputs = {stack};
      c.attrs["axis"] = int64_t(0);
      if (layer >= 0) c.attrs["layer"] = layer;
      add.push_back(std::move(c));
    }
    Op moe = op;
    moe.inputs = {op.inputs[0], op.inputs[1], w13, w2};
    moe.notes["fused"] = fmt::format("weights of {} experts stacked: %{} [E*2I, H], %{} [E*H, I]", experts,
                                     g.v(w13).name, g.v(w2).name);
    add.push_back(std::move(moe));
    splice(g, {int(i)}, std::move(add));
    return true;
  }
  return false;
}

}  // namespace

void infer_shapes(Graph& g) {
  for (const Op& op : g.ops) {
    const auto shapes = output_shapes(g, op);
    if (shapes.size() != op.outputs.size()) bad(op, fmt::format("has {} outputs, expected {}", op.outputs.size(), shapes.size()));
    for (size_t i = 0; i < shapes.size(); ++i) {
      Value& out = g.v(op.outputs[i]);
      if (out.shape.empty()) {
        out.shape = shapes[i];
      } else if (out.shape != shapes[i]) {
        bad(op, fmt::format("output %{} is {} but its inputs give {}", out.name, shape_text(out.shape), shape_text(shapes[i])));
      }
    }
  }
  check(g);
}

void fuse(Graph& g, Framework framework) {
  if (framework == Framework::Fused) {
    while (fuse_sibling_linears(g)) {}
    while (fuse_swiglu(g)) {}
    while (fuse_activation(g)) {}
  }
  while (fuse_expert_weights(g)) {}
  check(g);
}

void assign_dtypes(Graph& g, const CompileOptions& o) {
  std::set<int> matrices;  // weights that Linear layers multiply by (directly or stacked)
  for (const Op& op : g.ops) {
    if (op.kind == OpKind::Linear) matrices.insert(op.inputs[1]);
    if (op.kind == OpKind::MoeExperts) matrices.insert(op.inputs.begin() + 2, op.inputs.end());
  }
  for (const Op& op : g.ops) {
    if (op.kind == OpKind::Concat && matrices.count(op.outputs[0])) matrices.insert(op.inputs.begin(), op.inputs.end());
  }
  if (isa::is_integer(o.weight_dtype) || isa::is_mx(o.weight_dtype)) {
    throw CompileError(fmt::format("weights in {} need quantised activations with scales, which code generation does "
                                   "not produce: use bf16, fp8e4m3 or fp8e5m2",
                                   isa::dtype_name(o.weight_dtype)));
  }
  for (size_t i = 0; i < g.values.size(); ++i) {
    Value& v = g.values[i];
    switch (v.role) {
      case Role::Weight:
        // Embedding tables stay bf16 (gathered, not multiplied) unless an lm_head shares them.
        if (matrices.count(int(i))) v.dtype = o.weight_dtype;
        break;
      case Role::KvCache: v.dtype = o.kv_dtype; break;
      case Role::Output: v.dtype = isa::Dtype::Fp32; break;
      default: v.dtype = o.activation_dtype;
    }
  }
  // Routing is decided on fp32 gate logits (bf16 logits would tie or swap near-equal experts).
  for (const Op& op : g.ops) {
    if (op.kind != OpKind::MoeExperts) continue;
    if (g.v(op.inputs[1]).role == Role::Activation) g.v(op.inputs[1]).dtype = isa::Dtype::Fp32;
  }
}

}  // namespace tessera::compiler
