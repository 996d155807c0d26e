#include "compiler/onnx/onnx_frontend.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "compiler/error.hpp"

namespace tessera::compiler {
namespace {

using isa::Dtype;
using onnx::NodeProto;
using onnx::TensorProto;
using Shape = std::vector<int64_t>;

// An ONNX tensor during import: shape, element type and, when known at import time (initialisers,
// constants and whatever is computed only from them and from shapes), its values.
struct Tensor {
  Shape shape;
  int type = TensorProto::UNDEFINED;
  std::shared_ptr<const std::vector<double>> data;  // row-major; null for activations
  bool known() const { return data != nullptr; }
};
using Inputs = std::vector<const Tensor*>;  // null for an omitted optional input

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string text(const Shape& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

std::string label(const NodeProto& n) {
  return n.name().empty() ? n.output(0) : n.name();
}

// "Einsum (node a), Mul (nodes b, c)" for error messages.
std::string node_list(const std::map<std::string, std::vector<std::string>>& by_type) {
  std::string s;
  for (const auto& [op, nodes] : by_type) {
    s += fmt::format("{}{} (node{} {})", s.empty() ? "" : ", ", op, nodes.size() > 1 ? "s" : "",
                     fmt::join(nodes, ", "));
  }
  return s;
}

bool is_integer(int type) {
  switch (type) {
    case TensorProto::INT8:
    case TensorProto::INT16:
    case TensorProto::INT32:
    case TensorProto::INT64:
    case TensorProto::UINT8:
    case TensorProto::UINT16:
    case TensorProto::UINT32:
    case TensorProto::UINT64:
    case TensorProto::BOOL:
      return true;
    default:
      return false;
  }
}

// A computed value as the element type holds it, so folded constants match what the exporter's
// runtime computes (float rounding, integer division truncating).
double to_type(int type, double v) {
  if (type == TensorProto::FLOAT) return double(float(v));
  if (type == TensorProto::BOOL) return v != 0 ? 1 : 0;
  if (is_integer(type)) return std::trunc(v);
  return v;
}

Tensor make(Shape s, int type, std::optional<std::vector<double>> data = std::nullopt) {
  Tensor t{std::move(s), type, nullptr};
  if (data) t.data = std::make_shared<const std::vector<double>>(std::move(*data));
  return t;
}

template <typename T>
void append_raw(const std::string& raw, std::vector<double>& out) {
  for (size_t i = 0; i + sizeof(T) <= raw.size(); i += sizeof(T)) {
    T x;
    std::memcpy(&x, raw.data() + i, sizeof(T));
    out.push_back(double(x));
  }
}

Tensor from_proto(const TensorProto& p) {
  if (p.data_location() == TensorProto::EXTERNAL) {
    throw CompileError(fmt::format(
        "tensor '{}' keeps its data in an external file, which is not supported", p.name()));
  }
  const Shape shape(p.dims().begin(), p.dims().end());
  const std::string& raw = p.raw_data();
  std::vector<double> d;
  switch (p.data_type()) {
    case TensorProto::FLOAT:
      raw.empty() ? d.assign(p.float_data().begin(), p.float_data().end())
                  : append_raw<float>(raw, d);
      break;
    case TensorProto::DOUBLE:
      raw.empty() ? d.assign(p.double_data().begin(), p.double_data().end())
                  : append_raw<double>(raw, d);
      break;
    case TensorProto::INT64:
      raw.empty() ? d.assign(p.int64_data().begin(), p.int64_data().end())
                  : append_raw<int64_t>(raw, d);
      break;
    case TensorProto::INT32:
      raw.empty() ? d.assign(p.int32_data().begin(), p.int32_data().end())
                  : append_raw<int32_t>(raw, d);
      break;
    case TensorProto::BOOL:
      raw.empty() ? d.assign(p.int32_data().begin(), p.int32_data().end())
                  : append_raw<uint8_t>(raw, d);
      break;
    default:
      throw CompileError(fmt::format(
          "tensor '{}' has element type {}; supported: float, double, int64, int32, bool", p.name(),
          TensorProto::DataType_Name(TensorProto::DataType(p.data_type()))));
  }
  if (int64_t(d.size()) != numel(shape)) {
    throw CompileError(
        fmt::format("tensor '{}' holds {} values for shape {}", p.name(), d.size(), text(shape)));
  }
  return make(shape, p.data_type(), std::move(d));
}

const onnx::AttributeProto* find_attr(const NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t attr_i(const NodeProto& n, const std::string& name, int64_t fallback) {
  const auto* a = find_attr(n, name);
  return a ? a->i() : fallback;
}

const Tensor& arg(const Inputs& in, size_t i) {
  if (i >= in.size() || in[i] == nullptr) throw CompileError(fmt::format("input {} is missing", i));
  return *in[i];
}

std::vector<int64_t> ints_of(const Tensor& t, const std::string& what) {
  if (!t.known()) throw CompileError(fmt::format("the {} must be known at import time", what));
  std::vector<int64_t> v;
  for (double d : *t.data) {
    // Exporters write "to the end" as INT64_MAX, which a double rounds beyond the int64 range.
    v.push_back(d >= 9.2e18    ? std::numeric_limits<int64_t>::max()
                : d <= -9.2e18 ? std::numeric_limits<int64_t>::min()
                               : int64_t(d));
  }
  return v;
}

// Opsets moved several attributes (axes, starts, ...) to inputs: input i when present, else the
// attribute.
std::optional<std::vector<int64_t>> ints_arg(const NodeProto& n, const Inputs& in, size_t i,
                                             const std::string& name) {
  if (i < in.size() && in[i] != nullptr) return ints_of(*in[i], name);
  if (const auto* a = find_attr(n, name))
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  return std::nullopt;
}

int64_t norm_axis(int64_t a, size_t rank) {
  const int64_t r = int64_t(rank);
  if (a < -r || a >= r)
    throw CompileError(fmt::format("axis {} is out of range for rank {}", a, rank));
  return a < 0 ? a + r : a;
}

Shape broadcast(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t x = i + a.size() < out.size() ? 1 : a[i + a.size() - out.size()];
    const int64_t y = i + b.size() < out.size() ? 1 : b[i + b.size() - out.size()];
    if (x != y && x != 1 && y != 1)
      throw CompileError(fmt::format("shapes {} and {} do not broadcast", text(a), text(b)));
    out[i] = x == 1 ? y : x;
  }
  return out;
}

// Per axis of `out`, the step through a row-major tensor of shape `in` broadcast to `out`.
std::vector<int64_t> strides_in(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  int64_t acc = 1;
  for (size_t j = in.size(); j-- > 0;) {
    if (in[j] != 1) st[j + out.size() - in.size()] = acc;
    acc *= in[j];
  }
  return st;
}

// Calls f(offsets) for each element of `out` in row-major order; offsets[i] advances by strides[i].
template <typename F>
void for_each_index(const Shape& out, const std::vector<std::vector<int64_t>>& strides, F f) {
  std::vector<int64_t> idx(out.size(), 0), off(strides.size(), 0);
  for (int64_t e = numel(out); e > 0; --e) {
    f(off);
    for (size_t k = out.size(); k-- > 0;) {
      ++idx[k];
      for (size_t i = 0; i < off.size(); ++i) off[i] += strides[i][k];
      if (idx[k] < out[k]) break;
      for (size_t i = 0; i < off.size(); ++i) off[i] -= strides[i][k] * out[k];
      idx[k] = 0;
    }
  }
}

Tensor elementwise(const Inputs& in, int type,
                   const std::function<double(const std::vector<double>&)>& f,
                   const Shape& at_least = {}) {
  Shape s = at_least;
  for (size_t i = 0; i < in.size(); ++i) s = broadcast(s, arg(in, i).shape);
  Tensor out = make(s, type);
  for (const Tensor* t : in) {
    if (!t->known()) return out;
  }
  std::vector<std::vector<int64_t>> st;
  for (const Tensor* t : in) st.push_back(strides_in(t->shape, s));
  std::vector<double> d, args(in.size());
  d.reserve(size_t(numel(s)));
  for_each_index(s, st, [&](const std::vector<int64_t>& off) {
    for (size_t i = 0; i < in.size(); ++i) args[i] = (*in[i]->data)[size_t(off[i])];
    d.push_back(to_type(type, f(args)));
  });
  return make(s, type, std::move(d));
}

Tensor unary(const Inputs& in, double (*f)(double)) {
  return elementwise({&arg(in, 0)}, arg(in, 0).type,
                     [f](const std::vector<double>& a) { return f(a[0]); });
}

Tensor binary(const Inputs& in, int type, double (*f)(double, double)) {
  return elementwise({&arg(in, 0), &arg(in, 1)}, type,
                     [f](const std::vector<double>& a) { return f(a[0], a[1]); });
}

Tensor gather(const NodeProto& n, const Inputs& in) {
  const Tensor &x = arg(in, 0), &ind = arg(in, 1);
  const size_t ax = size_t(norm_axis(attr_i(n, "axis", 0), x.shape.size()));
  Shape s(x.shape.begin(), x.shape.begin() + long(ax));
  s.insert(s.end(), ind.shape.begin(), ind.shape.end());
  s.insert(s.end(), x.shape.begin() + long(ax) + 1, x.shape.end());
  if (!x.known() || !ind.known()) return make(s, x.type);
  const int64_t dim = x.shape[ax],
                outer = numel(Shape(x.shape.begin(), x.shape.begin() + long(ax)));
  const int64_t inner = numel(Shape(x.shape.begin() + long(ax) + 1, x.shape.end()));
  std::vector<double> d;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i : ints_of(ind, "indices")) {
      if (i < -dim || i >= dim)
        throw CompileError(fmt::format("index {} is out of range for size {}", i, dim));
      const int64_t row = (o * dim + (i < 0 ? i + dim : i)) * inner;
      d.insert(d.end(), x.data->begin() + row, x.data->begin() + row + inner);
    }
  }
  return make(s, x.type, std::move(d));
}

Tensor reshape(const NodeProto& n, const Inputs& in) {
  const Tensor& x = arg(in, 0);
  Shape s = ints_of(arg(in, 1), "shape");
  int infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == 0 && attr_i(n, "allowzero", 0) == 0) s[i] = x.shape.at(i);
    if (s[i] == -1) infer = int(i);
  }
  if (infer >= 0) {
    s[size_t(infer)] = 1;
    s[size_t(infer)] = numel(x.shape) / std::max<int64_t>(numel(s), 1);
  }
  if (numel(s) != numel(x.shape))
    throw CompileError(fmt::format("cannot reshape {} to {}", text(x.shape), text(s)));
  return Tensor{s, x.type, x.data};
}

Tensor unsqueeze(const NodeProto& n, const Inputs& in) {
  const Tensor& x = arg(in, 0);
  const auto axes = ints_arg(n, in, 1, "axes");
  if (!axes) throw CompileError("no axes");
  std::vector<int64_t> ax;
  for (int64_t a : *axes) ax.push_back(norm_axis(a, x.shape.size() + axes->size()));
  std::sort(ax.begin(), ax.end());
  Shape s = x.shape;
  for (int64_t a : ax) s.insert(s.begin() + a, 1);
  return Tensor{s, x.type, x.data};
}

Tensor squeeze(const NodeProto& n, const Inputs& in) {
  const Tensor& x = arg(in, 0);
  const auto axes = ints_arg(n, in, 1, "axes");
  std::set<int64_t> drop;
  for (size_t i = 0; i < x.shape.size(); ++i) {
    if (!axes && x.shape[i] == 1) drop.insert(int64_t(i));
  }
  for (int64_t a : axes.value_or(std::vector<int64_t>{})) {
    const int64_t k = norm_axis(a, x.shape.size());
    if (x.shape[size_t(k)] != 1)
      throw CompileError(fmt::format("cannot squeeze axis {} of {}", a, text(x.shape)));
    drop.insert(k);
  }
  Shape s;
  for (size_t i = 0; i < x.shape.size(); ++i) {
    if (!drop.count(int64_t(i))) s.push_back(x.shape[i]);
  }
  return Tensor{s, x.type, x.data};
}

Tensor concat(const NodeProto& n, const Inputs& in) {
  const Tensor& first = arg(in, 0);
  const size_t ax = size_t(norm_axis(attr_i(n, "axis", 0), first.shape.size()));
  Shape s = first.shape;
  s[ax] = 0;
  bool known = true;
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = arg(in, i);
    Shape a = t.shape, b = first.shape;
    if (a.size() != b.size() || (a[ax] = b[ax] = 0, a != b)) {
      throw CompileError(fmt::format("cannot concatenate {} and {} on axis {}", text(first.shape),
                                     text(t.shape), ax));
    }
    s[ax] += t.shape[ax];
    known = known && t.known();
  }
  if (!known) return make(s, first.type);
  const int64_t outer = numel(Shape(s.begin(), s.begin() + long(ax)));
  std::vector<double> d;
  for (int64_t o = 0; o < outer; ++o) {
    for (const Tensor* t : in) {
      const int64_t chunk = numel(t->shape) / std::max<int64_t>(outer, 1);
      d.insert(d.end(), t->data->begin() + o * chunk, t->data->begin() + (o + 1) * chunk);
    }
  }
  return make(s, first.type, std::move(d));
}

Tensor slice(const NodeProto& n, const Inputs& in) {
  const Tensor& x = arg(in, 0);
  const auto starts = ints_arg(n, in, 1, "starts"), ends = ints_arg(n, in, 2, "ends");
  if (!starts || !ends || starts->size() != ends->size())
    throw CompileError("starts and ends must have the same length");
  std::vector<int64_t> axes(starts->size()), steps(starts->size(), 1);
  for (size_t i = 0; i < axes.size(); ++i) axes[i] = int64_t(i);
  if (auto a = ints_arg(n, in, 3, "axes")) axes = *a;
  if (auto st = ints_arg(n, in, 4, "steps")) steps = *st;
  Shape s = x.shape;
  std::vector<int64_t> begin(x.shape.size(), 0), step(x.shape.size(), 1);
  for (size_t i = 0; i < axes.size(); ++i) {
    const size_t k = size_t(norm_axis(axes[i], x.shape.size()));
    const int64_t dim = x.shape[k], st = steps.at(i);
    if (st == 0) throw CompileError("a slice step cannot be 0");
    int64_t b = (*starts)[i], e = (*ends)[i];
    if (b < 0) b = std::max<int64_t>(b, -dim) + dim;
    if (e < 0) e = std::max<int64_t>(e, -dim - 1) + dim;
    b = st > 0 ? std::clamp<int64_t>(b, 0, dim) : std::clamp<int64_t>(b, 0, dim - 1);
    e = st > 0 ? std::clamp<int64_t>(e, 0, dim) : std::clamp<int64_t>(e, -1, dim - 1);
    s[k] = std::max<int64_t>(0, st > 0 ? (e - b + st - 1) / st : (b - e - st - 1) / -st);
    begin[k] = b;
    step[k] = st;
  }
  if (!x.known()) return make(s, x.type);
  std::vector<int64_t> st = strides_in(x.shape, x.shape);
  int64_t base = 0;
  for (size_t k = 0; k < st.size(); ++k) {
    base += begin[k] * st[k];
    st[k] *= step[k];
  }
  std::vector<double> d;
  for_each_index(s, {st}, [&](const std::vector<int64_t>& off) {
    d.push_back((*x.data)[size_t(base + off[0])]);
  });
  return make(s, x.type, std::move(d));
}

Tensor transpose(const NodeProto& n, const Inputs& in) {
  const Tensor& x = arg(in, 0);
  std::vector<int64_t> perm;
  if (const auto* a = find_attr(n, "perm")) {
    perm.assign(a->ints().begin(), a->ints().end());
  } else {
    for (size_t i = x.shape.size(); i-- > 0;) perm.push_back(int64_t(i));
  }
  if (perm.size() != x.shape.size())
    throw CompileError(fmt::format("perm {} does not fit {}", text(perm), text(x.shape)));
  const std::vector<int64_t> xs = strides_in(x.shape, x.shape);
  Shape s;
  std::vector<int64_t> st;
  for (int64_t p : perm) {
    s.push_back(x.shape.at(size_t(p)));
    st.push_back(xs.at(size_t(p)));
  }
  if (!x.known()) return make(s, x.type);
  std::vector<double> d;
  for_each_index(s, {st},
                 [&](const std::vector<int64_t>& off) { d.push_back((*x.data)[size_t(off[0])]); });
  return make(s, x.type, std::move(d));
}

Tensor matmul(const Inputs& in) {
  const Tensor &a = arg(in, 0), &b = arg(in, 1);
  const size_t ra = a.shape.size(), rb = b.shape.size();
  if (ra < 2 || rb < 2 || a.shape[ra - 1] != b.shape[rb - 2]) {
    throw CompileError(fmt::format("cannot multiply {} by {}", text(a.shape), text(b.shape)));
  }
  const int64_t m = a.shape[ra - 2], k = a.shape[ra - 1], n = b.shape[rb - 1];
  const Shape ba(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  const Shape batch = broadcast(ba, bb);
  Shape s = batch;
  s.insert(s.end(), {m, n});
  if (!a.known() || !b.known()) return make(s, a.type);
  std::vector<int64_t> sa = strides_in(ba, batch), sb = strides_in(bb, batch);
  for (int64_t& x : sa) x *= m * k;
  for (int64_t& x : sb) x *= k * n;
  std::vector<double> d;
  for_each_index(batch, {sa, sb}, [&](const std::vector<int64_t>& off) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p)
          acc += (*a.data)[size_t(off[0] + i * k + p)] * (*b.data)[size_t(off[1] + p * n + j)];
        d.push_back(to_type(a.type, acc));
      }
    }
  });
  return make(s, a.type, std::move(d));
}

Tensor constant(const NodeProto& n) {
  if (const auto* a = find_attr(n, "value")) return from_proto(a->t());
  if (const auto* a = find_attr(n, "value_float"))
    return make({}, TensorProto::FLOAT, std::vector<double>{a->f()});
  if (const auto* a = find_attr(n, "value_int"))
    return make({}, TensorProto::INT64, std::vector<double>{double(a->i())});
  if (const auto* a = find_attr(n, "value_floats")) {
    return make({a->floats_size()}, TensorProto::FLOAT,
                std::vector<double>(a->floats().begin(), a->floats().end()));
  }
  if (const auto* a = find_attr(n, "value_ints")) {
    return make({a->ints_size()}, TensorProto::INT64,
                std::vector<double>(a->ints().begin(), a->ints().end()));
  }
  throw CompileError("only tensor, float and int constants are supported");
}

using Kernel = std::function<Tensor(const NodeProto&, const Inputs&)>;

// The ops this importer understands. Each computes the output's shape and type, and its values
// when all inputs are known; ReduceMean and Softmax only ever see activations, so they give shapes.
const std::map<std::string, Kernel>& kernels() {
  static const std::map<std::string, Kernel> k = {
      {"Constant", [](const NodeProto& n, const Inputs&) { return constant(n); }},
      {"Identity", [](const NodeProto&, const Inputs& in) { return arg(in, 0); }},
      {"Cast",
       [](const NodeProto& n, const Inputs& in) {
         const int to = int(attr_i(n, "to", TensorProto::FLOAT));
         return elementwise({&arg(in, 0)}, to, [](const std::vector<double>& a) { return a[0]; });
       }},
      {"Shape",
       [](const NodeProto& n, const Inputs& in) {
         const Shape& x = arg(in, 0).shape;
         const int64_t r = int64_t(x.size());
         auto clip = [r](int64_t a) { return std::clamp<int64_t>(a < 0 ? a + r : a, 0, r); };
         const int64_t b = clip(attr_i(n, "start", 0)), e = clip(attr_i(n, "end", r));
         return make({std::max(b, e) - b}, TensorProto::INT64,
                     std::vector<double>(x.begin() + b, x.begin() + std::max(b, e)));
       }},
      {"Gather", gather},
      {"Reshape", reshape},
      {"Unsqueeze", unsqueeze},
      {"Squeeze", squeeze},
      {"Concat", concat},
      {"Slice", slice},
      {"Transpose", transpose},
      {"MatMul", [](const NodeProto&, const Inputs& in) { return matmul(in); }},
      {"Expand",
       [](const NodeProto&, const Inputs& in) {
         return elementwise(
             {&arg(in, 0)}, arg(in, 0).type, [](const std::vector<double>& a) { return a[0]; },
             ints_of(arg(in, 1), "shape"));
       }},
      {"ConstantOfShape",
       [](const NodeProto& n, const Inputs& in) {
         const Shape s = ints_of(arg(in, 0), "shape");
         Tensor v = make({1}, TensorProto::FLOAT, std::vector<double>{0.0});
         if (const auto* a = find_attr(n, "value")) v = from_proto(a->t());
         return make(s, v.type, std::vector<double>(size_t(numel(s)), v.data->at(0)));
       }},
      {"Range",
       [](const NodeProto&, const Inputs& in) {
         const Tensor& start = arg(in, 0);
         if (!start.known() || !arg(in, 1).known() || !arg(in, 2).known())
           throw CompileError("the range must be known at import time");
         const double b = start.data->at(0), e = arg(in, 1).data->at(0),
                      st = arg(in, 2).data->at(0);
         std::vector<double> d;
         for (double v = b; st > 0 ? v < e : v > e; v += st) d.push_back(v);
         const int64_t n = int64_t(d.size());
         return make({n}, start.type, std::move(d));
       }},
      {"Trilu",
       [](const NodeProto& n, const Inputs& in) {
         const Tensor& x = arg(in, 0);
         const int64_t diagonal = in.size() > 1 && in[1] ? ints_of(*in[1], "k").at(0) : 0;
         const bool upper = attr_i(n, "upper", 1) != 0;
         if (x.shape.size() < 2) throw CompileError("Trilu needs a matrix");
         if (!x.known()) return make(x.shape, x.type);
         const int64_t rows = x.shape[x.shape.size() - 2], cols = x.shape.back();
         std::vector<double> d = *x.data;
         for (size_t e = 0; e < d.size(); ++e) {
           const int64_t i = int64_t(e) / cols % rows, j = int64_t(e) % cols;
           if (upper ? j - i < diagonal : j - i > diagonal) d[e] = 0;
         }
         return make(x.shape, x.type, std::move(d));
       }},
      {"Where",
       [](const NodeProto&, const Inputs& in) {
         return elementwise({&arg(in, 0), &arg(in, 1), &arg(in, 2)}, arg(in, 1).type,
                            [](const std::vector<double>& a) { return a[0] != 0 ? a[1] : a[2]; });
       }},
      {"Add",
       [](const NodeProto&, const Inputs& in) {
         return binary(in, arg(in, 0).type, [](double a, double b) { return a + b; });
       }},
      {"Sub",
       [](const NodeProto&, const Inputs& in) {
         return binary(in, arg(in, 0).type, [](double a, double b) { return a - b; });
       }},
      {"Mul",
       [](const NodeProto&, const Inputs& in) {
         return binary(in, arg(in, 0).type, [](double a, double b) { return a * b; });
       }},
      {"Div",
       [](const NodeProto&, const Inputs& in) {
         return binary(in, arg(in, 0).type, [](double a, double b) { return a / b; });
       }},
      {"Pow",
       [](const NodeProto&, const Inputs& in) {
         return binary(in, arg(in, 0).type, [](double a, double b) { return std::pow(a, b); });
       }},
      {"Equal",
       [](const NodeProto&, const Inputs& in) {
         return binary(in, TensorProto::BOOL, [](double a, double b) { return double(a == b); });
       }},
      {"Less",
       [](const NodeProto&, const Inputs& in) {
         return binary(in, TensorProto::BOOL, [](double a, double b) { return double(a < b); });
       }},
      {"Greater",
       [](const NodeProto&, const Inputs& in) {
         return binary(in, TensorProto::BOOL, [](double a, double b) { return double(a > b); });
       }},
      {"Neg",
       [](const NodeProto&, const Inputs& in) { return unary(in, [](double a) { return -a; }); }},
      {"Sqrt", [](const NodeProto&,
                  const Inputs& in) { return unary(in, [](double a) { return std::sqrt(a); }); }},
      {"Reciprocal", [](const NodeProto&,
                        const Inputs& in) { return unary(in, [](double a) { return 1 / a; }); }},
      {"Sigmoid",
       [](const NodeProto&, const Inputs& in) {
         return unary(in, [](double a) { return 1 / (1 + std::exp(-a)); });
       }},
      {"Cos", [](const NodeProto&,
                 const Inputs& in) { return unary(in, [](double a) { return std::cos(a); }); }},
      {"Sin", [](const NodeProto&,
                 const Inputs& in) { return unary(in, [](double a) { return std::sin(a); }); }},
      {"Softmax",
       [](const NodeProto&, const Inputs& in) { return make(arg(in, 0).shape, arg(in, 0).type); }},
      {"ReduceMean",
       [](const NodeProto& n, const Inputs& in) {
         const Tensor& x = arg(in, 0);
         std::vector<int64_t> axes = ints_arg(n, in, 1, "axes").value_or(std::vector<int64_t>{});
         if (axes.empty()) {
           for (size_t i = 0; i < x.shape.size(); ++i) axes.push_back(int64_t(i));
         }
         Shape s = x.shape;
         for (int64_t a : axes) s[size_t(norm_axis(a, x.shape.size()))] = 0;  // reduced
         const bool keep = attr_i(n, "keepdims", 1) != 0;
         Shape out;
         for (int64_t d : s) {
           if (d != 0 || keep) out.push_back(d == 0 ? 1 : d);
         }
         return make(out, x.type);
       }},
  };
  return k;
}

// How an ONNX activation lies in an IR value [tokens, features]: as [batch, seq, features] or
// [tokens, features] (heads == 0), or split into heads: then its ONNX axes are the axes
// (batch, seq, heads, head_dim) in the order perm.
struct Binding {
  int value = -1;
  int64_t heads = 0;
  std::array<int64_t, 4> perm{0, 1, 2, 3};
};
constexpr std::array<int64_t, 4> kHeadsFirst{0, 2, 1, 3};  // [batch, heads, seq, head_dim]

// Nodes a fusion pattern covers besides its root.
using Match = std::vector<int>;

class Importer {
 public:
  Importer(std::string path, const OnnxImportOptions& o) : path_(std::move(path)), opts_(o) {}

  Graph run() {
    load();
    fold();
    fuse();
    return std::move(g_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw CompileError(fmt::format("{}: {}", path_, what));
  }
  const onnx::GraphProto& graph() const { return model_.graph(); }
  const NodeProto& node(int n) const { return graph().node(n); }

  void load() {
    if (!std::filesystem::exists(path_)) fail("no such file");
    if (!std::filesystem::is_regular_file(path_)) fail("not a file");
    std::ifstream in(path_, std::ios::binary);
    if (!in || !model_.ParseFromIstream(&in) || !model_.has_graph() || model_.ir_version() <= 0) {
      fail("not an ONNX model (it does not parse as an ONNX ModelProto)");
    }
    for (const auto& op : model_.opset_import()) {
      if (op.domain().empty() || op.domain() == "ai.onnx") opset_ = op.version();
    }
    std::map<std::string, std::vector<std::string>> unknown;
    for (const NodeProto& n : graph().node()) {
      const bool standard = n.domain().empty() || n.domain() == "ai.onnx";
      if (!standard || !kernels().count(n.op_type())) unknown[n.op_type()].push_back(label(n));
    }
    if (!unknown.empty()) fail("unsupported ONNX op types: " + node_list(unknown));
    for (const TensorProto& t : graph().initializer()) {
      try {
        tensors_[t.name()] = from_proto(t);
      } catch (const CompileError& e) {
        fail(e.what());
      }
      initializers_.insert(t.name());
    }
    std::vector<const onnx::ValueInfoProto*> inputs;
    for (const auto& i : graph().input()) {
      if (!initializers_.count(i.name()))
        inputs.push_back(&i);  // old exports list weights as inputs too
    }
    if (inputs.size() != 1 || graph().output_size() != 1) {
      fail(fmt::format(
          "expected one input (token ids) and one output (logits), found {} inputs and {} outputs",
          inputs.size(), graph().output_size()));
    }
    input_ = inputs[0]->name();
    const auto& type = inputs[0]->type().tensor_type();
    if ((type.elem_type() != TensorProto::INT64 && type.elem_type() != TensorProto::INT32) ||
        type.shape().dim_size() != 2) {
      fail(fmt::format("input '{}' must be token ids: int64 or int32 of shape [batch, seq]",
                       input_));
    }
    batch_ = axis_size(type.shape().dim(0), opts_.batch, "batch");
    seq_ = axis_size(type.shape().dim(1), opts_.seq, "seq");
    if (!opts_.token_ids.empty() && int64_t(opts_.token_ids.size()) != batch_ * seq_) {
      fail(fmt::format("{} token ids given for batch {} x seq {}", opts_.token_ids.size(), batch_,
                       seq_));
    }
    tensors_[input_] = make({batch_, seq_}, type.elem_type());
  }

  // The size of one axis of the token ids: the option when given, else the model's static size.
  int64_t axis_size(const onnx::TensorShapeProto::Dimension& dim, int64_t option,
                    const char* what) const {
    const int64_t declared = dim.has_dim_value() ? dim.dim_value() : 0;
    if (option > 0 && declared > 0 && option != declared) {
      fail(fmt::format("the model was exported for {} {}, not {}", what, declared, option));
    }
    if (option <= 0 && declared <= 0)
      fail(fmt::format("input '{}' has a dynamic {}: give it in OnnxImportOptions", input_, what));
    return option > 0 ? option : declared;
  }

  // Shapes of every tensor and values of all that depend only on constants and shapes.
  void fold() {
    std::vector<bool> folded(size_t(graph().node_size()));
    for (int i = 0; i < graph().node_size(); ++i) {
      const NodeProto& n = node(i);
      Inputs in;
      for (const std::string& name : n.input()) {
        auto it = tensors_.find(name);
        if (!name.empty() && it == tensors_.end())
          fail(fmt::format("node '{}' ({}) reads '{}' before it is defined", label(n), n.op_type(),
                           name));
        in.push_back(name.empty() ? nullptr : &it->second);
      }
      if (n.output_size() != 1)
        fail(fmt::format("node '{}' ({}) has {} outputs; supported: 1", label(n), n.op_type(),
                         n.output_size()));
      try {
        tensors_[n.output(0)] = kernels().at(n.op_type())(n, in);
      } catch (const CompileError& e) {
        fail(fmt::format("node '{}' ({}): {}", label(n), n.op_type(), e.what()));
      }
      folded[size_t(i)] = tensors_[n.output(0)].known();
    }
    // Live activation nodes: those the output depends on through non-folded nodes.
    std::set<std::string> needed;
    for (const auto& o : graph().output()) {
      needed.insert(o.name());
      outputs_.insert(o.name());
    }
    state_.assign(size_t(graph().node_size()), State::Done);
    for (int i = graph().node_size(); i-- > 0;) {
      if (folded[size_t(i)] || !needed.count(node(i).output(0))) continue;
      state_[size_t(i)] = State::Pending;
      producer_[node(i).output(0)] = i;
      for (const std::string& name : node(i).input()) {
        needed.insert(name);
        users_[name].push_back(i);
      }
    }
  }

  // Visits activation nodes in order; a node is either a view (Reshape, Transpose, identity Cast
  // of a bound activation), the root of a fusion pattern whose leaves are bound, or left pending
  // for a later root to take in. Whatever is still pending at the end cannot be mapped.
  void fuse() {
    g_.name = std::filesystem::path(path_).stem().string();
    g_.meta = {{"model", g_.name},
               {"source", path_},
               {"phase", "prefill"},
               {"batch", std::to_string(batch_)},
               {"seq", std::to_string(seq_)}};
    for (int i = 0; i < graph().node_size(); ++i) {
      if (state_[size_t(i)] != State::Pending) continue;
      const std::string& op = node(i).op_type();
      if (op == "Gather") embedding(i);
      if (op == "MatMul") linear(i) || attention(i);
      if (op == "Mul") rms_norm(i) || silu(i) || elementwise(i, OpKind::Mul);
      if (op == "Add") rope(i) || elementwise(i, OpKind::Add);
      if (op == "Reshape" || op == "Transpose" || op == "Cast" || op == "Identity") view(i);
    }
    std::map<std::string, std::vector<std::string>> left;
    for (int i = 0; i < graph().node_size(); ++i) {
      if (state_[size_t(i)] == State::Pending) left[node(i).op_type()].push_back(label(node(i)));
    }
    if (!left.empty())
      fail("cannot map these nodes to the graph IR (no supported pattern covers them): " +
           node_list(left));
    const std::string& out = graph().output(0).name();
    auto b = bound_.find(out);
    if (b == bound_.end() || b->second.heads != 0)
      fail(fmt::format("output '{}' is not computed as [tokens, vocab] logits", out));
    Value& logits = g_.v(b->second.value);
    logits.name = "logits";
    logits.role = Role::Output;
    g_.outputs = {b->second.value};
    assign_layers();
    g_.meta["layers"] = std::to_string(attentions_);
    check(g_);
  }

  // In a pre-norm decoder each layer ends with its second residual Add.
  void assign_layers() {
    const int64_t adds = std::count_if(g_.ops.begin(), g_.ops.end(),
                                       [](const Op& o) { return o.kind == OpKind::Add; });
    if (adds != 2 * attentions_) return;  // another layout: the layers are not known
    int64_t seen = 0;
    for (Op& op : g_.ops) {
      if (op.kind != OpKind::Embedding && seen < adds) op.attrs["layer"] = seen / 2;
      if (op.kind == OpKind::Add) ++seen;
    }
  }

  // ---- matching helpers

  const Tensor& tensor(const std::string& name) const { return tensors_.at(name); }
  const Tensor* known(const std::string& name) const {
    auto it = tensors_.find(name);
    return it != tensors_.end() && it->second.known() ? &it->second : nullptr;
  }
  std::optional<double> scalar(const std::string& name) const {
    const Tensor* t = known(name);
    if (t == nullptr || t->data->size() != 1) return std::nullopt;
    return t->data->at(0);
  }
  const Binding* bound(const std::string& name) const {
    auto it = bound_.find(name);
    return it == bound_.end() ? nullptr : &it->second;
  }
  // The IR value of an activation laid out as [tokens, features]; -1 otherwise.
  int tokens(const std::string& name) const {
    const Binding* b = bound(name);
    return b != nullptr && b->heads == 0 ? b->value : -1;
  }
  bool is_identity_cast(const NodeProto& n) const {
    return (n.op_type() == "Cast" && attr_i(n, "to", 0) == tensor(n.input(0)).type) ||
           n.op_type() == "Identity";
  }

  // The pending node computing `name` when its type is one of `ops` (looking through identity
  // Casts), added to m.
  const NodeProto* take(Match& m, const std::string& name,
                        std::initializer_list<std::string_view> ops) const {
    Match casts;
    for (std::string at = name;;) {
      auto it = producer_.find(at);
      if (it == producer_.end() || state_[size_t(it->second)] != State::Pending) return nullptr;
      const NodeProto& n = node(it->second);
      if (std::find(ops.begin(), ops.end(), n.op_type()) != ops.end()) {
        m.insert(m.end(), casts.begin(), casts.end());
        m.push_back(it->second);
        return &n;
      }
      if (!is_identity_cast(n)) return nullptr;
      casts.push_back(it->second);
      at = n.input(0);
    }
  }

  // Claims the root and its matched nodes, unless something outside the pattern also reads an
  // intermediate result (fusing would then lose it).
  bool commit(const Match& m, int root) {
    std::set<int> inside(m.begin(), m.end());
    inside.insert(root);
    for (int k : m) {
      const std::string& out = node(k).output(0);
      if (state_[size_t(k)] != State::Pending || outputs_.count(out)) return false;
      for (int u : users_[out]) {
        if (!inside.count(u)) return false;
      }
    }
    for (int k : inside) state_[size_t(k)] = State::Done;
    return true;
  }

  int emit(OpKind kind, int root, std::vector<int> in, Shape shape,
           std::map<std::string, AttrValue> attrs = {}) {
    return g_.op(kind, label(node(root)), std::move(in), node(root).output(0), std::move(shape),
                 std::move(attrs));
  }

  // A weight value with the initialiser's data in the IR's layout (transposed for ONNX MatMul's
  // [in, out]). Torch names the transposed copies it folds "onnx::MatMul_123"; the node's scope
  // ("/model/layers.0/mlp/up_proj/MatMul") still names the module, so those take its name.
  int weight(const std::string& name, int user, Shape shape, bool transpose = false) {
    const std::string key = (transpose ? "T:" : "") + name;
    if (auto it = weights_.find(key); it != weights_.end()) return it->second;
    const Tensor& t = tensor(name);
    std::vector<float> d(t.data->begin(), t.data->end());
    if (transpose) {
      const int64_t rows = t.shape.at(0), cols = t.shape.at(1);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c)
          d[size_t(c * rows + r)] = float((*t.data)[size_t(r * cols + c)]);
      }
    }
    std::string ir_name = name;
    const std::string& scope = node(user).name();
    if ((!initializers_.count(name) || name.starts_with("onnx::")) &&
        scope.find('/', 1) != std::string::npos) {
      ir_name = scope.substr(scope[0] == '/' ? 1 : 0, scope.rfind('/') - (scope[0] == '/' ? 1 : 0));
      std::replace(ir_name.begin(), ir_name.end(), '/', '.');
      ir_name += ".weight";
      if (g_.find(ir_name) >= 0) ir_name = name;
    }
    const int v = g_.value(ir_name, std::move(shape), Dtype::Bf16, Role::Weight);
    g_.v(v).data = std::make_shared<const std::vector<float>>(std::move(d));
    weights_[key] = v;
    return v;
  }

  // ---- views: the same IR value seen through another ONNX layout

  bool view(int n) {
    const NodeProto& nd = node(n);
    const Binding* in = bound(nd.input(0));
    if (in == nullptr) return false;
    Binding b = *in;
    const Shape& out = tensor(nd.output(0)).shape;
    const int64_t features = g_.v(b.value).shape[1];
    if (nd.op_type() == "Transpose") {
      const auto* p = find_attr(nd, "perm");
      if (b.heads == 0 || p == nullptr || p->ints_size() != 4) return false;
      for (size_t i = 0; i < 4; ++i) b.perm[i] = in->perm[size_t(p->ints(int(i)))];
    } else if (nd.op_type() == "Reshape") {
      if (b.heads != 0 && b.perm != std::array<int64_t, 4>{0, 1, 2, 3})
        return false;  // not contiguous
      if (out == Shape{batch_, seq_, features} || out == Shape{batch_ * seq_, features}) {
        b = Binding{b.value};
      } else if (out.size() == 4 && out[0] == batch_ && out[1] == seq_ &&
                 out[2] * out[3] == features) {
        b = Binding{b.value, out[2]};
      } else {
        return false;
      }
    } else if (!is_identity_cast(nd)) {
      return false;
    }
    if (!commit({}, n)) return false;
    bound_[nd.output(0)] = b;
    return true;
  }

  // ---- fusion patterns: each matches with its root at node n and emits IR ops, or returns false

  // Gather(table, token ids) -> Embedding
  bool embedding(int n) {
    const NodeProto& nd = node(n);
    const Tensor* table = known(nd.input(0));
    if (table == nullptr || table->shape.size() != 2 || nd.input(1) != input_ ||
        attr_i(nd, "axis", 0) != 0 || !commit({}, n)) {
      return false;
    }
    const int64_t vocab = table->shape[0], hidden = table->shape[1];
    std::vector<int64_t> rows = opts_.token_ids;
    if (rows.empty()) {
      for (int64_t t = 0; t < batch_ * seq_; ++t)
        rows.push_back((t * 7919 + 1) % vocab);  // as the HF frontend
    }
    for (int64_t id : rows) {
      if (id < 0 || id >= vocab)
        fail(fmt::format("token id {} is outside the vocabulary of {}", id, vocab));
    }
    const int w = weight(nd.input(0), n, table->shape);
    bound_[nd.output(0)] = {
        emit(OpKind::Embedding, n, {w}, {batch_ * seq_, hidden}, {{"rows", rows}})};
    return true;
  }

  // MatMul(x, W [in, out]) -> Linear with weight W^T
  bool linear(int n) {
    const NodeProto& nd = node(n);
    const Tensor* w = known(nd.input(1));
    const int x = tokens(nd.input(0));
    if (w == nullptr || w->shape.size() != 2 || x < 0 || g_.v(x).shape[1] != w->shape[0] ||
        !commit({}, n))
      return false;
    const int wv = weight(nd.input(1), n, {w->shape[1], w->shape[0]}, true);
    bound_[nd.output(0)] = {emit(OpKind::Linear, n, {x, wv}, {batch_ * seq_, w->shape[1]})};
    return true;
  }

  // `name` = sqrt(mean(x^2 over the last axis) + eps); sets eps.
  bool root_mean_square(Match& m, const std::string& name, int x, double& eps) const {
    const NodeProto* sqrt = take(m, name, {"Sqrt"});
    const NodeProto* add = sqrt ? take(m, sqrt->input(0), {"Add"}) : nullptr;
    if (add == nullptr) return false;
    const int side = scalar(add->input(1)) ? 1 : 0;
    const auto e = scalar(add->input(side));
    const NodeProto* mean = take(m, add->input(1 - side), {"ReduceMean"});
    if (!e || mean == nullptr || attr_i(*mean, "keepdims", 1) != 1) return false;
    const auto axes = ints_arg(
        *mean, {nullptr, mean->input_size() > 1 ? known(mean->input(1)) : nullptr}, 1, "axes");
    const size_t rank = tensor(mean->input(0)).shape.size();
    if (!axes || axes->size() != 1 || norm_axis(axes->front(), rank) != int64_t(rank) - 1)
      return false;
    const NodeProto* sq = take(m, mean->input(0), {"Pow", "Mul"});
    if (sq == nullptr || tokens(sq->input(0)) != x) return false;
    if (sq->op_type() == "Pow" ? scalar(sq->input(1)) != 2.0 : tokens(sq->input(1)) != x)
      return false;
    // The exporter stored eps as a float: its shortest decimal form is the value the model was
    // given.
    eps = std::stod(fmt::format("{}", float(*e)));
    return true;
  }

  // Mul(w, x * (1 / rms(x))) or Mul(w, x / rms(x)), either operand order -> RmsNorm
  bool rms_norm(int n) {
    const NodeProto& nd = node(n);
    for (int side : {0, 1}) {
      const Tensor* w = known(nd.input(side));
      Match m;
      const NodeProto* y = take(m, nd.input(1 - side), {"Mul", "Div"});
      if (w == nullptr || y == nullptr) continue;
      for (int xs : {0, 1}) {
        Match mm = m;
        const int x = tokens(y->input(xs));
        if (x < 0 || (y->op_type() == "Div" && xs != 0)) continue;
        const int64_t hidden = g_.v(x).shape[1];
        std::string rms = y->input(1 - xs);
        if (y->op_type() == "Mul") {  // x * reciprocal(rms)
          const NodeProto* r = take(mm, rms, {"Reciprocal", "Div"});
          if (r == nullptr || (r->op_type() == "Div" && scalar(r->input(0)) != 1.0)) continue;
          rms = r->input(r->op_type() == "Div" ? 1 : 0);
        }
        double eps = 0;
        if (w->shape.empty() || numel(w->shape) != hidden || w->shape.back() != hidden ||
            !root_mean_square(mm, rms, x, eps) || !commit(mm, n))
          continue;
        const int wv = weight(nd.input(side), n, {hidden});
        bound_[nd.output(0)] = {
            emit(OpKind::RmsNorm, n, {x, wv}, {batch_ * seq_, hidden}, {{"eps", eps}})};
        return true;
      }
    }
    return false;
  }

  // Mul(x, Sigmoid(x)) -> Silu
  bool silu(int n) {
    const NodeProto& nd = node(n);
    for (int side : {0, 1}) {
      Match m;
      const int x = tokens(nd.input(side));
      const NodeProto* s = take(m, nd.input(1 - side), {"Sigmoid"});
      if (x >= 0 && s != nullptr && tokens(s->input(0)) == x && commit(m, n)) {
        bound_[nd.output(0)] = {emit(OpKind::Silu, n, {x}, g_.v(x).shape)};
        return true;
      }
    }
    return false;
  }

  // Add or Mul of two activations of the same shape (residuals, the gated MLP's product)
  bool elementwise(int n, OpKind kind) {
    const NodeProto& nd = node(n);
    const int a = tokens(nd.input(0)), b = tokens(nd.input(1));
    if (a < 0 || b < 0 || g_.v(a).shape != g_.v(b).shape || !commit({}, n)) return false;
    bound_[nd.output(0)] = {emit(kind, n, {a, b}, g_.v(a).shape)};
    return true;
  }

  // The [begin, end) a Slice takes along `axis` (of size dim), when it slices only that axis with
  // step 1.
  std::optional<std::pair<int64_t, int64_t>> slice_range(const NodeProto& s, int64_t axis,
                                                         int64_t dim) const {
    Inputs in;
    for (const std::string& name : s.input()) in.push_back(name.empty() ? nullptr : known(name));
    const auto b = ints_arg(s, in, 1, "starts"), e = ints_arg(s, in, 2, "ends");
    const auto axes = ints_arg(s, in, 3, "axes").value_or(std::vector<int64_t>{0});
    const auto steps = ints_arg(s, in, 4, "steps").value_or(std::vector<int64_t>{1});
    const size_t rank = tensor(s.input(0)).shape.size();
    if (!b || !e || b->size() != 1 || e->size() != 1 || axes.size() != 1 ||
        steps != std::vector<int64_t>{1} || norm_axis(axes[0], rank) != axis) {
      return std::nullopt;
    }
    auto clip = [dim](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + dim : v, 0, dim); };
    return std::pair{clip(b->front()), clip(e->front())};
  }

  // A cos or sin constant broadcast against x (axes perm of (batch, seq, heads, head_dim)) as the
  // IR's [seq, head_dim / 2] table, when it is the same for every batch and head and its two halves
  // of head_dim repeat each other (rotate-half RoPE).
  std::optional<std::vector<float>> rope_table(const Tensor& c, const Shape& xs,
                                               const std::array<int64_t, 4>& perm) const {
    if (c.shape.size() > xs.size() || broadcast(c.shape, xs) != xs) return std::nullopt;
    const std::vector<int64_t> st = strides_in(c.shape, xs);
    Shape dims(4);
    for (size_t k = 0; k < 4; ++k) dims[size_t(perm[k])] = xs[k];
    const int64_t half = dims[3] / 2;
    std::vector<float> table(size_t(dims[1] * half));
    std::array<int64_t, 4> at{};  // (batch, seq, head, d)
    for (at[0] = 0; at[0] < dims[0]; ++at[0]) {
      for (at[1] = 0; at[1] < dims[1]; ++at[1]) {
        for (at[2] = 0; at[2] < dims[2]; ++at[2]) {
          for (at[3] = 0; at[3] < dims[3]; ++at[3]) {
            int64_t off = 0;
            for (size_t k = 0; k < 4; ++k) off += at[size_t(perm[k])] * st[k];
            const double v = (*c.data)[size_t(off)];
            float& t = table[size_t(at[1] * half + at[3] % half)];
            if (at[0] == 0 && at[2] == 0 && at[3] < half) {
              t = float(v);
            } else if (std::abs(v - t) > 1e-6) {
              return std::nullopt;
            }
          }
        }
      }
    }
    return table;
  }

  // The IR's rope.cos / rope.sin values for these tables (shared by every layer that uses them).
  std::pair<int, int> rope_values(std::vector<float> cos, std::vector<float> sin, int64_t seq,
                                  int64_t half) {
    for (const auto& [c, s] : rope_tables_) {
      if (*g_.v(c).data == cos && *g_.v(s).data == sin) return {c, s};
    }
    const std::string suffix = rope_tables_.empty() ? "" : fmt::format(".{}", rope_tables_.size());
    const int c = g_.value("rope.cos" + suffix, {seq, half}, Dtype::Fp32, Role::Weight);
    const int s = g_.value("rope.sin" + suffix, {seq, half}, Dtype::Fp32, Role::Weight);
    g_.v(c).data = std::make_shared<const std::vector<float>>(std::move(cos));
    g_.v(s).data = std::make_shared<const std::vector<float>>(std::move(sin));
    rope_tables_.emplace_back(c, s);
    return {c, s};
  }

  // Add(x * cos, cat(-x2, x1) * sin) with x1, x2 the halves of head_dim -> Rope
  bool rope(int n) {
    const NodeProto& nd = node(n);
    for (int side : {0, 1}) {
      Match m;
      const NodeProto* a = take(m, nd.input(side), {"Mul"});
      const NodeProto* b = take(m, nd.input(1 - side), {"Mul"});
      if (a == nullptr || b == nullptr) continue;
      const int ac = known(a->input(0)) ? 0 : 1, bc = known(b->input(0)) ? 0 : 1;
      const std::string& xname = a->input(1 - ac);
      const Binding* x = bound(xname);
      const Tensor *cos = known(a->input(ac)), *sin = known(b->input(bc));
      const NodeProto* cat = take(m, b->input(1 - bc), {"Concat"});
      if (x == nullptr || x->heads == 0 || cos == nullptr || sin == nullptr || cat == nullptr ||
          cat->input_size() != 2)
        continue;
      const Shape& xs = tensor(xname).shape;
      const int64_t daxis = std::find(x->perm.begin(), x->perm.end(), 3) - x->perm.begin();
      const int64_t dim = xs[size_t(daxis)], half = dim / 2;
      const NodeProto* neg = take(m, cat->input(0), {"Neg"});
      const NodeProto* hi = neg ? take(m, neg->input(0), {"Slice"}) : nullptr;
      const NodeProto* lo = take(m, cat->input(1), {"Slice"});
      auto same_x = [&](const NodeProto* s) {
        const Binding* sb = s ? bound(s->input(0)) : nullptr;
        return sb != nullptr && sb->value == x->value && sb->heads == x->heads &&
               sb->perm == x->perm;
      };
      if (norm_axis(attr_i(*cat, "axis", 0), xs.size()) != daxis || !same_x(hi) || !same_x(lo) ||
          slice_range(*hi, daxis, dim) != std::pair{half, dim} ||
          slice_range(*lo, daxis, dim) != std::pair{int64_t(0), half}) {
        continue;
      }
      auto ct = rope_table(*cos, xs, x->perm), st = rope_table(*sin, xs, x->perm);
      if (!ct || !st || !commit(m, n)) continue;
      const auto [c, s] = rope_values(std::move(*ct), std::move(*st), seq_, half);
      const int out = emit(OpKind::Rope, n, {x->value, c, s}, g_.v(x->value).shape,
                           {{"seq", seq_},
                            {"heads", x->heads},
                            {"head_dim", dim}});
      bound_[nd.output(0)] = {out, x->heads, x->perm};
      return true;
    }
    return false;
  }

  // Keys or values as [batch, heads, seq, head_dim]: a bound activation, or Hugging Face's
  // repeat_kv of one (Unsqueeze at axis 2, Expand, Reshape) for grouped-query attention.
  std::optional<Binding> heads_first(Match& m, const std::string& name) const {
    if (const Binding* b = bound(name)) {
      return b->heads > 0 && b->perm == kHeadsFirst ? std::optional(*b) : std::nullopt;
    }
    const NodeProto* r = take(m, name, {"Reshape"});
    const NodeProto* e = r ? take(m, r->input(0), {"Expand"}) : nullptr;
    const NodeProto* u = e ? take(m, e->input(0), {"Unsqueeze"}) : nullptr;
    const Binding* b = u ? bound(u->input(0)) : nullptr;
    if (b == nullptr || b->heads == 0 || b->perm != kHeadsFirst) return std::nullopt;
    const int64_t kv = b->heads, d = g_.v(b->value).shape[1] / kv;
    const Shape& expanded = tensor(e->output(0)).shape;
    const int64_t rep = expanded.size() == 5 ? expanded[2] : 0;
    if (tensor(u->output(0)).shape != Shape{batch_, kv, 1, seq_, d} ||
        expanded != Shape{batch_, kv, rep, seq_, d} ||
        tensor(r->output(0)).shape != Shape{batch_, kv * rep, seq_, d}) {
      return std::nullopt;
    }
    return *b;
  }

  // True when the mask, broadcast to [batch, heads, seq, seq], is 0 where a query may attend and
  // very negative where it may not (after it): causal.
  bool causal_mask(const Tensor& mask, const Shape& scores) const {
    if (scores.size() != 4 || mask.shape.size() > 4 || broadcast(mask.shape, scores) != scores)
      return false;
    const std::vector<int64_t> st = strides_in(mask.shape, scores);
    bool ok = true;
    for_each_index(scores, {st}, [&, e = int64_t(0)](const std::vector<int64_t>& off) mutable {
      const int64_t i = e / scores[3] % scores[2], j = e % scores[3];
      const double v = (*mask.data)[size_t(off[0])];
      ok = ok && (j > i ? v <= -1e4 : v == 0);
      ++e;
    });
    return ok;
  }

  // MatMul(Softmax(q k^T / sqrt(head_dim) + causal mask), v) -> Attention (q, k, v with heads
  // first; k and v may have fewer heads, repeated for grouped-query attention)
  bool attention(int n) {
    const NodeProto& nd = node(n);
    Match m;
    const NodeProto* softmax = take(m, nd.input(0), {"Softmax"});
    const NodeProto* add = softmax ? take(m, softmax->input(0), {"Add"}) : nullptr;
    if (add == nullptr) return false;
    const int64_t rank = int64_t(tensor(add->output(0)).shape.size());
    if (norm_axis(attr_i(*softmax, "axis", opset_ >= 13 ? -1 : 1), size_t(rank)) != rank - 1)
      return false;
    const int mside = known(add->input(0)) ? 0 : 1;
    const Tensor* mask = known(add->input(mside));
    const NodeProto* scaled = take(m, add->input(1 - mside), {"Div", "Mul"});
    if (mask == nullptr || scaled == nullptr) return false;
    const int cside = known(scaled->input(1)) ? 1 : 0;
    const auto scale = scalar(scaled->input(cside));
    const NodeProto* qk = take(m, scaled->input(1 - cside), {"MatMul"});
    if (!scale || qk == nullptr || (scaled->op_type() == "Div" && cside != 1)) return false;
    const Binding* q = bound(qk->input(0));
    std::optional<Binding> k;
    if (const Binding* kt = bound(qk->input(1));
        kt != nullptr && kt->heads > 0 && kt->perm == std::array<int64_t, 4>{0, 2, 3, 1}) {
      k = *kt;
    } else if (const NodeProto* t = take(m, qk->input(1), {"Transpose"}); t != nullptr) {
      const auto* p = find_attr(*t, "perm");
      if (p != nullptr && std::vector<int64_t>(p->ints().begin(), p->ints().end()) ==
                              std::vector<int64_t>{0, 1, 3, 2}) {
        k = heads_first(m, t->input(0));
      }
    }
    const std::optional<Binding> v = heads_first(m, nd.input(1));
    if (q == nullptr || q->heads == 0 || q->perm != kHeadsFirst || !k || !v ||
        k->heads != v->heads || q->heads % k->heads != 0) {
      return false;
    }
    const int64_t d = g_.v(q->value).shape[1] / q->heads;
    if (g_.v(k->value).shape[1] != k->heads * d || g_.v(v->value).shape[1] != v->heads * d)
      return false;
    const double want =
        scaled->op_type() == "Div" ? std::sqrt(double(d)) : 1 / std::sqrt(double(d));
    if (std::abs(*scale - want) > 1e-6 * want ||
        !causal_mask(*mask, tensor(add->output(0)).shape) || !commit(m, n))
      return false;
    const int64_t capacity = std::max(opts_.cache_capacity, seq_);
    const Shape cache{batch_, k->heads, capacity, d};
    const int kc =
        g_.value(fmt::format("kv_cache.{}.k", attentions_), cache, Dtype::Bf16, Role::KvCache);
    const int vc =
        g_.value(fmt::format("kv_cache.{}.v", attentions_), cache, Dtype::Bf16, Role::KvCache);
    ++attentions_;
    const int out =
        emit(OpKind::Attention, n, {q->value, k->value, v->value, kc, vc}, g_.v(q->value).shape,
             {{"batch", batch_},
              {"seq", seq_},
              {"past", int64_t(0)},
              {"heads", q->heads},
              {"kv_heads", k->heads},
              {"head_dim", d},
              {"causal", int64_t(1)},
              {"capacity", capacity}});
    bound_[nd.output(0)] = {out, q->heads, kHeadsFirst};
    return true;
  }

  enum class State { Pending, Done };  // Done: folded, dead, a view, or mapped to the IR

  std::string path_;
  OnnxImportOptions opts_;
  onnx::ModelProto model_;
  int64_t opset_ = 0;
  std::map<std::string, Tensor> tensors_;
  std::set<std::string> initializers_, outputs_;
  std::string input_;
  int64_t batch_ = 0, seq_ = 0;
  std::vector<State> state_;                       // per node
  std::map<std::string, int> producer_;            // activation -> live node computing it
  std::map<std::string, std::vector<int>> users_;  // activation -> live nodes reading it
  std::map<std::string, Binding> bound_;           // activation -> where it lies in the IR
  std::map<std::string, int> weights_;
  std::vector<std::pair<int, int>> rope_tables_;
  int64_t attentions_ = 0;
  Graph g_;
};

}  // namespace

Graph import_onnx(const std::string& path, const OnnxImportOptions& options) {
  return Importer(path, options).run();
}

}  // namespace tessera::compiler
