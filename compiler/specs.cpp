#include "compiler/specs.hpp"

#include <fmt/format.h>

namespace tessera::compiler {
namespace {

isa::Act act_of(const Op& op) {
  const std::string a = op.s("act");
  if (a == "gelu") return isa::Act::Gelu;
  if (a == "relu") return isa::Act::Relu;
  if (a == "silu") return isa::Act::Silu;
  return isa::Act::None;
}

}  // namespace

Operand2 operand(const Lowering& l, int value, LayerRegs regs) {
  const Value& v = l.graph.v(value);
  Operand2 o;
  o.dtype = v.dtype;
  if (size_t(value) < l.places.size()) {
    const Placement& p = l.places[size_t(value)];
    const uint8_t reg = p.layer < 0 ? 0 : p.kv ? regs.kv : regs.weights;
    o.addr = Addr{Space::Hbm, int64_t(isa::kTileSelf), reg, int64_t(p.addr)};
    o.ld = p.ld;
  }
  return o;
}

GemmSpec gemm_spec(const Lowering& l, const Op& op, LayerRegs regs) {
  const Graph& g = l.graph;
  const Operand2 x = operand(l, op.inputs[0], regs), w = operand(l, op.inputs[1], regs), y = operand(l, op.outputs[0], regs);
  GemmSpec s;
  s.m = g.v(op.inputs[0]).shape[0];
  s.k = g.v(op.inputs[0]).shape[1];
  s.n = g.v(op.inputs[1]).shape[0];
  s.dtype = w.dtype;  // activations are converted to the weights' dtype as they are loaded
  s.a_dtype = x.dtype;
  s.out = y.dtype;
  s.a = x.addr, s.lda = x.ld;
  s.b = w.addr;
  s.c = y.addr, s.ldc = y.ld;
  s.b_transposed = true;
  s.act = act_of(op);
  if (op.inputs.size() > 2) {
    const Operand2 b = operand(l, op.inputs[2], regs);
    s.has_bias = true, s.bias = b.addr, s.bias_dtype = b.dtype;
  }
  return s;
}

StreamSpec stream_spec(const Lowering& l, const Op& op, LayerRegs regs) {
  const Graph& g = l.graph;
  const Operand2 x = operand(l, op.inputs[0], regs), w = operand(l, op.inputs[1], regs), y = operand(l, op.outputs[0], regs);
  StreamSpec s;
  s.t = g.v(op.inputs[0]).shape[0];
  s.k = g.v(op.inputs[0]).shape[1];
  s.n = g.v(op.inputs[1]).shape[0];
  s.xdt = x.dtype, s.wdt = w.dtype, s.ydt = y.dtype;
  s.x = x.addr, s.ldx = x.ld;
  s.w = w.addr;
  s.y = y.addr, s.ldy = y.ld;
  s.act = act_of(op);
  if (op.inputs.size() > 2) {
    const Operand2 b = operand(l, op.inputs[2], regs);
    s.has_bias = true, s.bias = b.addr, s.bias_dtype = b.dtype;
  }
  return s;
}

RowsSpec rows_spec(const Lowering& l, const Op& op, LayerRegs regs) {
  const Graph& g = l.graph;
  RowsSpec s;
  s.kind = op.kind;
  const Value& out = g.v(op.outputs[0]);
  s.rows = out.shape[0];
  s.cols = out.shape[1];
  for (size_t i = 0; i < op.inputs.size(); ++i) {
    Operand2 in = operand(l, op.inputs[i], regs);
    const auto& shape = g.v(op.inputs[i]).shape;
    in.broadcast = (op.kind == OpKind::Add || op.kind == OpKind::Mul) && i == 1 &&
                   (shape.size() == 1 || shape[0] == 1) && s.rows > 1;
    s.in.push_back(in);
  }
  s.out = operand(l, op.outputs[0], regs);
  s.eps = op.f("eps", 1e-5);
  if (op.kind == OpKind::Rope) {
    s.heads = op.i("heads");
    s.head_dim = op.i("head_dim");
    s.seq = op.i("seq");
  }
  return s;
}

AttentionSpec attention_spec(const Lowering& l, const Op& op, LayerRegs regs) {
  AttentionSpec s;
  s.batch = op.i("batch");
  if (op.attrs.count("seq_lens")) {
    s.seq_lens = op.ints("seq_lens"), s.past_lens = op.ints("past_lens");
  } else {
    s.seq = op.i("seq"), s.past = op.i("past");
  }
  s.heads = op.i("heads"), s.kv_heads = op.i("kv_heads"), s.head_dim = op.i("head_dim");
  s.causal = op.i("causal", 1) != 0;
  s.capacity = op.i("capacity");
  s.q = operand(l, op.inputs[0], regs);
  s.k = operand(l, op.inputs[1], regs);
  s.v = operand(l, op.inputs[2], regs);
  const Operand2 kc = operand(l, op.inputs[3], regs), vc = operand(l, op.inputs[4], regs);
  s.kcache = kc.addr, s.vcache = vc.addr, s.kv_dtype = kc.dtype;
  s.out = operand(l, op.outputs[0], regs);
  return s;
}

MoeSpec moe_spec(const Lowering& l, const Op& op, LayerRegs regs) {
  const Graph& g = l.graph;
  if (op.inputs.size() != 4) {
    throw CompileError(fmt::format("op {}: the experts' weights must be stacked into [E*2I, H] and [E*H, I] (the fuse "
                                   "pass does it)",
                                   op.name));
  }
  MoeSpec s;
  const auto& x = g.v(op.inputs[0]).shape;
  s.t = x[0], s.hidden = x[1];
  s.experts = op.i("experts"), s.inter = op.i("intermediate"), s.top_k = op.i("top_k");
  s.routed = op.i("routed_experts", s.experts), s.first = op.i("expert_first", 0);
  s.capacity_factor = l.capacity_factor;
  s.x = operand(l, op.inputs[0], regs);
  s.logits = operand(l, op.inputs[1], regs);
  if (g.v(op.inputs[1]).shape != std::vector<int64_t>{s.t, s.routed} || s.logits.dtype != Dtype::Fp32) {
    throw CompileError(fmt::format("op {}: router logits must be [{}, {}] of fp32", op.name, s.t, s.routed));
  }
  const Operand2 w13 = operand(l, op.inputs[2], regs), w2 = operand(l, op.inputs[3], regs);
  s.w13 = w13.addr, s.w2 = w2.addr, s.wdt = w13.dtype;
  s.y = operand(l, op.outputs[0], regs);
  if (g.v(op.inputs[2]).shape != std::vector<int64_t>{s.experts * 2 * s.inter, s.hidden} ||
      g.v(op.inputs[3]).shape != std::vector<int64_t>{s.experts * s.hidden, s.inter}) {
    throw CompileError(fmt::format("op {}: stacked expert weights have the wrong shapes", op.name));
  }
  if (w2.dtype != w13.dtype) throw CompileError(fmt::format("op {}: expert weights of two dtypes", op.name));
  return s;
}

}  // namespace tessera::compiler
