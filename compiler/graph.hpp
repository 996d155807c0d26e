// The compiler's graph IR: tensors with shapes, dtypes and roles, and the operations of decoder
// LLMs. Frontends (Hugging Face configs, ONNX) build it; passes annotate and rewrite it; code
// generation lowers it to an isa::Program. print() gives the text golden tests check.
//
// Conventions:
//  - Activations are 2-D [tokens, features] with tokens = batch * seq, row-major, token-major
//    (batch outer). Attention inputs are [tokens, heads * head_dim].
//  - Linear weights use PyTorch's layout [out_features, in_features]: y = x W^T (+ b).
//  - The KV cache of one layer is [batch, kv_heads, capacity, head_dim] per K and V.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "isa/dtype.hpp"

namespace tessera::compiler {

enum class Role { Weight, KvCache, Activation, Input, Output };
std::string_view role_name(Role r);

// The part of a named tensor a chip holds when a model is split across chips (tensor
// parallelism): along `axis`, the ranges [begin, end) of the whole tensor's indices, one after
// another; indices of the value past them are zeros (padding to an even split), and so is all
// of it when there are no ranges (a bias that one chip adds for all).
struct Shard {
  int axis = 0;
  std::vector<std::pair<int64_t, int64_t>> ranges{};
  std::vector<int64_t> whole{};  // the whole tensor's shape
};

struct Value {
  std::string name;
  std::vector<int64_t> shape;  // empty until shape inference when a frontend leaves it out
  isa::Dtype dtype = isa::Dtype::Bf16;
  Role role = Role::Activation;
  // Contents known at compile time (RoPE tables, ONNX initialisers), row-major, as floats.
  std::shared_ptr<const std::vector<float>> data;
  std::optional<Shard> shard{};  // a weight split across chips: which part of `name` this is
  int64_t elements() const;
  uint64_t bytes() const;
};

enum class OpKind {
  Embedding,    // (table [vocab, hidden]) -> [tokens, hidden]: row rows[t] for token t
  Linear,       // (x [T, K], w [N, K], b [N]?) -> [T, N]; attr act
  MatMul,       // (a [M, K], b [K, N]) -> [M, N]; both activations
  Add,          // elementwise; b may be a row [1, N] broadcast over rows
  Mul,
  RmsNorm,      // (x [T, H], w [H]) -> [T, H]; attr eps
  LayerNorm,    // (x, w [H], b [H]) -> [T, H]; attr eps
  Softmax,      // over the last axis
  Rope,         // (x [T, heads * D], cos [S, D/2], sin [S, D/2]) -> same; attrs batch, seq,
                // heads, head_dim. Token (b, s) of head h: with x1, x2 the halves of its D
                // values, out = (x1 cos[s] - x2 sin[s], x2 cos[s] + x1 sin[s]) (rotate-half)
  Silu,
  Gelu,
  Relu,
  SwiGlu,       // (gate_up [T, 2I]) -> [T, I]: silu(first half) * second half
  Attention,    // (q [T, Hq*D], k [T, Hkv*D], v [T, Hkv*D], kcache, vcache) -> [T, Hq*D]
                // attrs batch, seq, past, heads, kv_heads, head_dim, causal, capacity (cache
                // positions, default past + seq); appends k, v to the caches at positions
                // past .. past + seq - 1 and attends over past + seq
  MoeExperts,   // (x [T, H], router logits [T, R] fp32, then w1 [I, H], w3 [I, H], w2 [H, I] of
                // each of this chip's experts) -> y [T, H] = sum over its experts e among each
                // token's top k of w[t, e] * w2_e(silu(w1_e x) * w3_e x), w = softmax(logits) over
                // the top k, renormalised; attrs experts (here), routed_experts (R),
                // expert_first, intermediate, top_k. Fusion stacks the weights: (x, logits,
                // w13 [E*2I, H] = [w1_0; w3_0; w1_1; ...], w2 [E*H, I] = [w2_0; w2_1; ...])
  Reshape,      // a view: same bytes, new shape
  Transpose,    // attr perm
  Concat,       // attr axis
  Split,        // attr axis, sizes
  Slice,        // attrs axis, begin, end
  AllReduce,    // (x [T, H]) -> [T, H]: the sum of x over the chips of attr `group` (tensor
                // parallelism: after a row-split Linear), in place
};
std::string_view op_kind_name(OpKind k);

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>>;

struct Op {
  OpKind kind = OpKind::Add;
  std::string name;
  std::vector<int> inputs;   // value indices
  std::vector<int> outputs;
  std::map<std::string, AttrValue> attrs;
  // What passes decided (printed by print(), checked by golden tests): "split", "tiles", ...
  std::map<std::string, std::string> notes;

  int64_t i(const std::string& key) const;  // integer attribute; throws naming op and key
  int64_t i(const std::string& key, int64_t fallback) const;
  double f(const std::string& key, double fallback) const;
  std::string s(const std::string& key, const std::string& fallback = "") const;
  const std::vector<int64_t>& ints(const std::string& key) const;
};

struct Graph {
  std::string name;
  std::map<std::string, std::string> meta;  // model, phase, batch, seq/context, ...
  std::vector<Value> values;
  std::vector<Op> ops;  // in execution order
  std::vector<int> inputs, outputs;

  int add_value(Value v);
  int add_op(Op op);  // returns the op index
  // Convenience for frontends: a value with a name, shape, dtype and role.
  int value(std::string name, std::vector<int64_t> shape, isa::Dtype dtype, Role role);
  // Adds an op producing one new activation named `out` of `shape`; returns that value.
  int op(OpKind kind, std::string name, std::vector<int> inputs, std::string out, std::vector<int64_t> shape,
         std::map<std::string, AttrValue> attrs = {});
  const Value& v(int i) const { return values.at(size_t(i)); }
  Value& v(int i) { return values.at(size_t(i)); }
  int find(const std::string& value_name) const;  // -1 when absent
  // [v]: the ops reading value v, in order, each once. One pass over the ops: a pass that asks
  // about many values builds this once (asking op by op made a 405B graph quadratic).
  std::vector<std::vector<int>> users() const;
};

// Readable text: one line per value declaration and per op, with attributes and notes.
std::string print(const Graph& g);

// Checks structural sanity (indices in range, every input defined before use, shapes present).
// Throws CompileError naming the op.
void check(const Graph& g);

}  // namespace tessera::compiler
