// Memory planning: every value gets its place in HBM.
//  - Layers that are alike share one body in the program: layer l's weights and KV caches sit
//    at layer 0's addresses plus l strides, and its activations reuse layer 0's.
//  - Stacked weights (Concat) are placed once; their parts are row ranges of it.
//  - Split outputs are column views of their input; Reshape outputs are the same bytes, and so
//    are an AllReduce's (it sums in place).
//  - A residual Add writes over its first input when nothing reads that input later.
//  - Other activations reuse memory freed by values no longer needed.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "compiler/error.hpp"
#include "compiler/passes.hpp"

namespace tessera::compiler {
namespace {

constexpr uint64_t kAlign = 4096;
uint64_t align(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// A first-fit allocator over a growing range, for activations.
class Arena {
 public:
  uint64_t take(uint64_t bytes) {
    bytes = align(bytes);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second >= bytes) {
        const uint64_t at = it->first, left = it->second - bytes;
        free_.erase(it);
        if (left > 0) free_[at + bytes] = left;
        return at;
      }
    }
    const uint64_t at = top_;
    top_ += bytes;
    return at;
  }
  void give(uint64_t at, uint64_t bytes) {
    free_[at] = align(bytes);
    // Merge neighbours so large values can reuse space.
    for (auto it = free_.begin(); it != free_.end();) {
      auto next = std::next(it);
      if (next != free_.end() && it->first + it->second == next->first) {
        it->second += next->second;
        free_.erase(next);
      } else {
        ++it;
      }
    }
  }
  uint64_t size() const { return top_; }

 private:
  std::map<uint64_t, uint64_t> free_;
  uint64_t top_ = 0;
};

struct Layers {
  int64_t count = 0;                            // 0: no layer loop
  std::map<int, int> rep;                       // value made in layer l -> layer 0's counterpart
  // Values a layer reads from before it (the residual stream): (layer l's, layer 0's). The loop
  // is only valid if each pair ends up at the same address.
  std::vector<std::pair<int, int>> carried;
};

std::string signature(const Graph& g, const Op& op) {
  std::string s(op_kind_name(op.kind));
  for (const auto& [k, v] : op.attrs) {
    if (k == "layer") continue;
    s += "|" + k;
  }
  for (int i : op.inputs) {
    // A pipeline stage's input (the hidden state) comes to its first layer as an activation does.
    const Role role = g.v(i).role == Role::Input ? Role::Activation : g.v(i).role;
    s += fmt::format("|{}:{}:{}", int(role), g.v(i).elements(), isa::dtype_name(g.v(i).dtype));
  }
  for (int o : op.outputs) s += fmt::format("|{}", g.v(o).elements());
  return s;
}

// Groups ops by layer and checks that every layer is like layer 0, value for value.
Layers find_layers(const Graph& g, bool wanted) {
  Layers L;
  int64_t n = 0;
  for (const Op& op : g.ops) n = std::max(n, op.i("layer", -1) + 1);
  if (!wanted || n < 2) return L;
  std::vector<std::vector<int>> ops(static_cast<size_t>(n));
  std::map<int, int64_t> made_in;  // value -> layer of the op producing it
  // Layer ops must be contiguous and in layer order, so one body can stand for all.
  int64_t last = -1;
  bool after = false;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const int64_t l = g.ops[i].i("layer", -1);
    for (int o : g.ops[i].outputs) made_in[o] = l;
    if (l < 0) {
      after = after || last >= 0;
      continue;
    }
    if (after || l < last) return L;
    last = l;
    ops[size_t(l)].push_back(int(i));
  }
  for (int64_t l = 1; l < n; ++l) {
    if (ops[size_t(l)].size() != ops[0].size()) return L;
    for (size_t k = 0; k < ops[0].size(); ++k) {
      const Op& a = g.ops[size_t(ops[0][k])];
      const Op& b = g.ops[size_t(ops[size_t(l)][k])];
      if (signature(g, a) != signature(g, b)) return {};
      for (size_t i = 0; i < a.inputs.size(); ++i) {
        const int va = a.inputs[i], vb = b.inputs[i];
        const Role role = g.v(vb).role;
        if (va == vb || role == Role::Weight || role == Role::KvCache) continue;  // shared, or placed per layer
        auto it = made_in.find(vb);
        if (it != made_in.end() && it->second == l) {
          if (L.rep.count(vb) == 0 || L.rep[vb] != va) return {};
        } else {
          L.carried.emplace_back(vb, va);
        }
      }
      for (size_t i = 0; i < a.outputs.size(); ++i) L.rep[b.outputs[i]] = a.outputs[i];
    }
  }
  L.count = n;
  return L;
}

std::string gb(uint64_t bytes) { return fmt::format("{:.2f} GB", double(bytes) / 1e9); }

}  // namespace

void plan_memory(Lowering& l, const arch::Arch& a, const CompileOptions& o) {
  Graph& g = l.graph;
  l.places.assign(g.values.size(), Placement{});
  const Layers layers = find_layers(g, o.layer_loop);
  l.layers = layers.count;
  // The layer whose ops alone use v; -1 when several layers (or none) do, like RoPE tables.
  const std::vector<std::vector<int>> users = g.users();
  auto layer_of_value = [&](int v) -> int64_t {
    int64_t layer = -2;
    for (int u : users[size_t(v)]) {
      const int64_t l2 = g.ops[size_t(u)].i("layer", -1);
      if (layer != -2 && l2 != layer) return -1;
      layer = l2;
    }
    return layer < 0 ? -1 : layer;
  };
  // Values that are parts of a stacked weight, and the stack each belongs to with its offset.
  std::map<int, std::pair<int, uint64_t>> part_of;
  for (const Op& op : g.ops) {
    if (op.kind != OpKind::Concat) continue;
    uint64_t off = 0;
    for (int in : op.inputs) {
      part_of[in] = {op.outputs[0], off};
      off += g.v(in).bytes();
    }
  }

  // Weights and KV caches: layer-free ones first, then layer 0's (one block), then the others.
  uint64_t next = 0;
  // Tables with contents known at compile time that no single layer owns (RoPE tables) go after
  // the KV caches, so that programs of one model with different step shapes (a prefill, then
  // decode steps) agree on where the weights and caches are.
  auto is_table = [&](int v) { return g.v(v).role == Role::Weight && g.v(v).data && layer_of_value(v) < 0; };
  auto place_block = [&](Role role, uint64_t& stride, bool kv) {
    // Per-layer values of `role` in first-use order, layer by layer.
    std::vector<std::vector<int>> per_layer(static_cast<size_t>(std::max<int64_t>(layers.count, 1)));
    std::vector<int> free_values;
    std::set<int> seen;
    for (const Op& op : g.ops) {
      std::vector<int> vals = op.inputs;
      vals.insert(vals.end(), op.outputs.begin(), op.outputs.end());
      for (int v : vals) {
        if (g.v(v).role != role || part_of.count(v) || is_table(v) || !seen.insert(v).second) continue;
        const int64_t layer = layers.count > 0 ? layer_of_value(v) : -1;
        (layer >= 0 ? per_layer[size_t(layer)] : free_values).push_back(v);
      }
    }
    for (int v : free_values) {
      l.places[size_t(v)] = {true, next, 0, -1, kv};
      next = align(next + g.v(v).bytes());
    }
    if (layers.count == 0) return;
    const uint64_t base = next;
    for (int v : per_layer[0]) {
      l.places[size_t(v)] = {true, next, 0, 0, kv};
      next = align(next + g.v(v).bytes());
    }
    stride = next - base;
    for (int64_t layer = 1; layer < layers.count; ++layer) {
      const auto& vals = per_layer[size_t(layer)];
      if (vals.size() != per_layer[0].size()) throw CompileError("layers differ in their weights");
      for (size_t k = 0; k < vals.size(); ++k) {
        Placement p = l.places[size_t(per_layer[0][k])];
        p.addr += uint64_t(layer) * stride;
        p.layer = int(layer);
        l.places[size_t(vals[k])] = p;
      }
    }
    next = base + uint64_t(layers.count) * stride;
  };
  place_block(Role::Weight, l.weight_stride, false);
  l.region_bytes["weights"] = next;
  const uint64_t kv_base = next;
  place_block(Role::KvCache, l.kv_stride, true);
  l.region_bytes["kv_cache"] = next - kv_base;
  const uint64_t const_base = next;
  for (size_t v = 0; v < g.values.size(); ++v) {
    if (!is_table(int(v)) || part_of.count(int(v))) continue;
    l.places[v] = {true, next, 0, -1, false};
    next = align(next + g.values[v].bytes());
  }
  l.region_bytes["constants"] = next - const_base;
  // Parts of stacked weights are row ranges of the stack.
  for (const auto& [part, stack] : part_of) {
    Placement p = l.places[size_t(stack.first)];
    p.addr += stack.second;
    l.places[size_t(part)] = p;
  }

  // Activations, over the ops the program runs (layer 0 stands for every layer).
  const uint64_t act_base = next;
  std::vector<int> order;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const int64_t layer = g.ops[i].i("layer", -1);
    if (layers.count == 0 || layer <= 0) order.push_back(int(i));
  }
  auto rep = [&](int v) {
    auto it = layers.rep.find(v);
    return it == layers.rep.end() ? v : it->second;
  };
  std::map<int, size_t> last_use;
  for (size_t k = 0; k < order.size(); ++k) {
    for (int in : g.ops[size_t(order[k])].inputs) last_use[rep(in)] = k;
  }
  for (int out : g.outputs) last_use[rep(out)] = order.size();
  std::map<int, int> owner;  // value -> the value whose memory it uses (views, aliases)
  auto root = [&](int v) {
    while (owner.count(v)) v = owner[v];
    return v;
  };
  Arena arena;
  std::map<int, uint64_t> held;  // root -> bytes
  auto place_at = [&](int v, uint64_t addr, int64_t ld) { l.places[size_t(v)] = {true, act_base + addr, ld, -1, false}; };
  // The graph's inputs (an operator's operands; models read only tables) live throughout.
  for (int v : g.inputs) {
    if (g.v(v).role == Role::Input) place_at(v, arena.take(g.v(v).bytes()), 0);
  }
  for (size_t k = 0; k < order.size(); ++k) {
    const Op& op = g.ops[size_t(order[k])];
    if (op.kind == OpKind::Split) {
      const Placement& in = l.places[size_t(op.inputs[0])];
      const int64_t row = g.v(op.inputs[0]).shape[1] * esize(g.v(op.inputs[0]).dtype);
      int64_t col = 0;
      for (size_t i = 0; i < op.outputs.size(); ++i) {
        const int v = op.outputs[i];
        l.places[size_t(v)] = {true, in.addr + uint64_t(col * esize(g.v(v).dtype)), in.ld ? in.ld : row, in.layer, in.kv};
        owner[v] = op.inputs[0];
        col += g.v(v).shape[1];
      }
    } else if (op.kind == OpKind::Reshape || op.kind == OpKind::AllReduce) {
      l.places[size_t(op.outputs[0])] = l.places[size_t(op.inputs[0])];
      owner[op.outputs[0]] = op.inputs[0];
    } else if (op.kind != OpKind::Concat) {
      for (int out : op.outputs) {
        const int in0 = op.inputs.empty() ? -1 : rep(op.inputs[0]);
        // (The graph's input too: a pipeline stage's hidden state is its residual stream.)
        const bool in_place = op.kind == OpKind::Add && in0 >= 0 &&
                              (g.v(in0).role == Role::Activation || g.v(in0).role == Role::Input) &&
                              last_use[in0] == k && l.places[size_t(in0)].ld == 0 &&
                              g.v(in0).bytes() == g.v(out).bytes() && g.v(in0).dtype == g.v(out).dtype;
        if (in_place) {
          l.places[size_t(out)] = l.places[size_t(in0)];
          owner[out] = in0;
          last_use[in0] = std::max(last_use[in0], last_use[out]);
          continue;
        }
        const uint64_t bytes = g.v(out).bytes();
        place_at(out, arena.take(bytes), 0);
        held[out] = bytes;
      }
    }
    // Scratch an op needs while it runs (the MoE experts' intermediates on the GEMM path,
    // the partial results of attention's split keys and of a weight stream's split K, the part
    // a collective receives before adding it).
    OpPlan& plan = l.plans[size_t(order[k])];
    const auto [scratch_bytes, scratch_addr] =
        plan.strategy == Strategy::Experts ? std::pair{plan.moe.scratch_bytes, &plan.moe.scratch}
        : plan.strategy == Strategy::Heads  ? std::pair{plan.attention.scratch_bytes, &plan.attention.scratch}
        : plan.strategy == Strategy::Stream ? std::pair{plan.stream.scratch_bytes, &plan.stream.scratch}
        : plan.strategy == Strategy::Collective ? std::pair{plan.collective_scratch_bytes, &plan.collective_scratch}
                                            : std::pair{uint64_t(0), static_cast<uint64_t*>(nullptr)};
    uint64_t scratch_at = 0, eager_at = 0;
    if (scratch_bytes > 0) {
      scratch_at = arena.take(scratch_bytes);
      *scratch_addr = act_base + scratch_at;
    }
    if (plan.eager_scratch_bytes > 0) {
      eager_at = arena.take(plan.eager_scratch_bytes);
      plan.eager_scratch = act_base + eager_at;
    }
    // Free what no later op reads.
    for (int in : op.inputs) {
      const int r = root(rep(in));
      if (g.v(r).role != Role::Activation || !held.count(r)) continue;
      bool live = false;
      for (const auto& [v, use] : last_use) {
        if (use > k && root(v) == r) live = true;
      }
      if (!live) {
        arena.give(l.places[size_t(r)].addr - act_base, held[r]);
        held.erase(r);
      }
    }
    if (scratch_bytes > 0) arena.give(scratch_at, scratch_bytes);
    if (plan.eager_scratch_bytes > 0) arena.give(eager_at, plan.eager_scratch_bytes);
  }
  // Values of the other layers use layer 0's memory.
  for (const auto& [v, r] : layers.rep) {
    if (g.v(v).role == Role::Activation || g.v(v).role == Role::Output) l.places[size_t(v)] = l.places[size_t(r)];
  }
  // One body serves every layer only if what flows from layer to layer stays in one place.
  for (const auto& [later, first] : layers.carried) {
    if (l.places[size_t(later)].addr != l.places[size_t(first)].addr) {
      CompileOptions unrolled = o;
      unrolled.layer_loop = false;
      plan_memory(l, a, unrolled);
      return;
    }
  }
  l.region_bytes["activations"] = align(arena.size());
  const uint64_t total = act_base + l.region_bytes["activations"];
  std::set<int> used(g.outputs.begin(), g.outputs.end());
  for (const Op& op : g.ops) {
    used.insert(op.inputs.begin(), op.inputs.end());
    used.insert(op.outputs.begin(), op.outputs.end());
  }
  for (int v : used) {
    if (!l.places[size_t(v)].placed) throw CompileError(fmt::format("value %{} got no memory", g.v(v).name));
  }
  if (total > uint64_t(a.hbm.capacity)) {
    const uint64_t weights = l.region_bytes["weights"], kv = l.region_bytes["kv_cache"];
    std::string advice;
    if (weights > uint64_t(a.hbm.capacity)) {
      // Suggest fp8 only when most weight bytes are wider (norms and embeddings may stay bf16).
      uint64_t wide = 0;
      for (const Value& v : g.values) wide += v.role == Role::Weight && isa::dtype_bits(v.dtype) > 8 ? v.bytes() : 0;
      const bool wide_weights = 2 * wide > weights;
      advice = fmt::format("the weights alone need {} chips' HBM: use more chips{}",
                           (weights + uint64_t(a.hbm.capacity) - 1) / uint64_t(a.hbm.capacity),
                           wide_weights ? " or smaller weights (e.g. --dtype fp8e4m3)" : "");
    } else {
      const int64_t batch = std::stoll(g.meta.count("batch") ? g.meta.at("batch") : "1");
      const uint64_t room = uint64_t(a.hbm.capacity) - weights - l.region_bytes["activations"];
      const int64_t fits = kv > 0 ? int64_t(double(room) / (double(kv) / double(batch))) : 0;
      advice = fits > 0 ? fmt::format("a batch of at most {} fits at this length, or fewer tokens per sequence", fits)
                        : "use fewer tokens per sequence, a smaller batch or more chips";
    }
    throw CompileError(fmt::format("{} needs {} of HBM (weights {}, KV cache {}, activations {}) but {} has {}: {}",
                                   g.meta.count("model") ? g.meta.at("model") : g.name, gb(total),
                                   gb(l.region_bytes["weights"]), gb(l.region_bytes["kv_cache"]),
                                   gb(l.region_bytes["activations"]), a.name, gb(uint64_t(a.hbm.capacity)), advice));
  }
}

}  // namespace tessera::compiler
