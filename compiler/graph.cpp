#include "compiler/graph.hpp"

#include <fmt/format.h>

#include <array>

#include "compiler/error.hpp"

namespace tessera::compiler {
namespace {

constexpr std::array<std::string_view, 5> kRoles = {"weight", "kv_cache", "activation", "input", "output"};
constexpr std::array<std::string_view, 21> kKinds = {
    "embedding", "linear",    "matmul", "add",   "mul",   "rms_norm",  "layer_norm", "softmax",
    "rope",      "silu",      "gelu",   "relu",  "swiglu", "attention", "moe_experts",
    "reshape",   "transpose", "concat", "split", "slice",  "all_reduce"};

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

std::string attr_text(const AttrValue& a) {
  if (const auto* i = std::get_if<int64_t>(&a)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&a)) return fmt::format("{:g}", *d);
  if (const auto* s = std::get_if<std::string>(&a)) return "\"" + *s + "\"";
  const auto& v = std::get<std::vector<int64_t>>(a);
  if (v.size() > 8) {
    return fmt::format("[{}, {}, ... {} values]", v[0], v[1], v.size());
  }
  return shape_text(v);
}

}  // namespace

std::string_view role_name(Role r) { return kRoles[size_t(r)]; }
std::string_view op_kind_name(OpKind k) { return kKinds[size_t(k)]; }

int64_t Value::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t Value::bytes() const { return isa::dtype_bytes(dtype, size_t(elements())); }

int64_t Op::i(const std::string& key) const {
  auto it = attrs.find(key);
  if (it == attrs.end() || !std::holds_alternative<int64_t>(it->second)) {
    throw CompileError(fmt::format("op {} ({}): missing integer attribute '{}'", name, op_kind_name(kind), key));
  }
  return std::get<int64_t>(it->second);
}

int64_t Op::i(const std::string& key, int64_t fallback) const {
  auto it = attrs.find(key);
  return it != attrs.end() && std::holds_alternative<int64_t>(it->second) ? std::get<int64_t>(it->second) : fallback;
}

double Op::f(const std::string& key, double fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (const auto* d = std::get_if<double>(&it->second)) return *d;
  if (const auto* i = std::get_if<int64_t>(&it->second)) return double(*i);
  return fallback;
}

std::string Op::s(const std::string& key, const std::string& fallback) const {
  auto it = attrs.find(key);
  return it != attrs.end() && std::holds_alternative<std::string>(it->second) ? std::get<std::string>(it->second)
                                                                              : fallback;
}

const std::vector<int64_t>& Op::ints(const std::string& key) const {
  auto it = attrs.find(key);
  if (it == attrs.end() || !std::holds_alternative<std::vector<int64_t>>(it->second)) {
    throw CompileError(fmt::format("op {} ({}): missing list attribute '{}'", name, op_kind_name(kind), key));
  }
  return std::get<std::vector<int64_t>>(it->second);
}

int Graph::add_value(Value v) {
  values.push_back(std::move(v));
  return int(values.size()) - 1;
}

int Graph::add_op(Op op) {
  ops.push_back(std::move(op));
  return int(ops.size()) - 1;
}

int Graph::value(std::string n, std::vector<int64_t> shape, isa::Dtype dtype, Role role) {
  return add_value({std::move(n), std::move(shape), dtype, role, nullptr});
}

int Graph::op(OpKind kind, std::string n, std::vector<int> in, std::string out, std::vector<int64_t> shape,
              std::map<std::string, AttrValue> attrs) {
  const int o = value(std::move(out), std::move(shape), isa::Dtype::Bf16, Role::Activation);
  Op x;
  x.kind = kind;
  x.name = std::move(n);
  x.inputs = std::move(in);
  x.outputs = {o};
  x.attrs = std::move(attrs);
  add_op(std::move(x));
  return o;
}

int Graph::find(const std::string& value_name) const {
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i].name == value_name) return int(i);
  }
  return -1;
}

std::vector<std::vector<int>> Graph::users() const {
  std::vector<std::vector<int>> u(values.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    for (int in : ops[i].inputs) {
      if (in < 0 || size_t(in) >= u.size()) continue;  // check() names such an op
      std::vector<int>& of = u[size_t(in)];
      if (of.empty() || of.back() != int(i)) of.push_back(int(i));
    }
  }
  return u;
}

std::string print(const Graph& g) {
  std::string s = fmt::format("graph {}\n", g.name);
  for (const auto& [k, v] : g.meta) s += fmt::format("  meta {} = {}\n", k, v);
  auto is_io = [&](int i) {
    const Role r = g.values[size_t(i)].role;
    return r != Role::Activation;
  };
  for (size_t i = 0; i < g.values.size(); ++i) {
    if (!is_io(int(i))) continue;
    const Value& v = g.values[i];
    s += fmt::format("  {} %{} {} {}", role_name(v.role), v.name, isa::dtype_name(v.dtype), shape_text(v.shape));
    if (v.shard) {
      std::string ranges;
      for (const auto& [b, e] : v.shard->ranges) ranges += fmt::format("{}[{}, {})", ranges.empty() ? "" : " ", b, e);
      s += fmt::format(" (shard of {}: axis {} {})", shape_text(v.shard->whole), v.shard->axis,
                       ranges.empty() ? "zeros" : ranges);
    }
    s += "\n";
  }
  for (const Op& op : g.ops) {
    std::string outs, ins;
    for (int o : op.outputs) outs += (outs.empty() ? "%" : ", %") + g.values[size_t(o)].name;
    for (int i : op.inputs) ins += (ins.empty() ? "%" : ", %") + g.values[size_t(i)].name;
    const Value& first = g.values[size_t(op.outputs.at(0))];
    s += fmt::format("  {} = {} {}({})", outs, op_kind_name(op.kind), op.name, ins);
    s += fmt::format(" : {} {}", isa::dtype_name(first.dtype), shape_text(first.shape));
    if (!op.attrs.empty()) {
      std::string a;
      for (const auto& [k, v] : op.attrs) a += (a.empty() ? "" : ", ") + k + "=" + attr_text(v);
      s += " {" + a + "}";
    }
    for (const auto& [k, v] : op.notes) s += fmt::format("\n      {}: {}", k, v);
    s += "\n";
  }
  std::string outs;
  for (int o : g.outputs) outs += (outs.empty() ? "%" : ", %") + g.values[size_t(o)].name;
  s += fmt::format("  return {}\n", outs);
  return s;
}

void check(const Graph& g) {
  std::vector<bool> defined(g.values.size(), false);
  for (size_t i = 0; i < g.values.size(); ++i) {
    const Role r = g.values[i].role;
    defined[i] = r == Role::Weight || r == Role::KvCache || r == Role::Input;
  }
  for (const Op& op : g.ops) {
    for (int in : op.inputs) {
      if (in < 0 || size_t(in) >= g.values.size()) throw CompileError(fmt::format("op {}: input index {} out of range", op.name, in));
      if (!defined[size_t(in)]) {
        throw CompileError(fmt::format("op {}: input %{} is used before it is computed", op.name, g.values[size_t(in)].name));
      }
    }
    for (int out : op.outputs) {
      if (out < 0 || size_t(out) >= g.values.size()) throw CompileError(fmt::format("op {}: output index {} out of range", op.name, out));
      defined[size_t(out)] = true;
    }
  }
  for (const Value& v : g.values) {
    if (v.shape.empty()) throw CompileError(fmt::format("value %{} has no shape", v.name));
  }
}

}  // namespace tessera::compiler
