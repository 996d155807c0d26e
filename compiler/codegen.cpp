// Code generation: walks the planned ops and has each kernel emit its instructions on every
// tile, with a barrier between ops. Weight streams request their first chunks before the
// barrier that ends the previous op. Layers that are alike become one loop body whose weight
// and KV-cache addresses are relative to two registers advanced every iteration.
#include <fmt/format.h>

#include <memory>
#include <set>

#include "arch/describe.hpp"
#include "compiler/error.hpp"
#include "compiler/compile.hpp"
#include "compiler/kernels/collective.hpp"
#include "compiler/passes.hpp"
#include "compiler/specs.hpp"

namespace tessera::compiler {
namespace {

isa::Role role_of(Role r) {
  switch (r) {
    case Role::Weight: return isa::Role::Weight;
    case Role::KvCache: return isa::Role::KvCache;
    case Role::Input: return isa::Role::Input;
    case Role::Output: return isa::Role::Output;
    default: return isa::Role::Activation;
  }
}

// Only names the assembly text can spell become symbols.
std::string symbol_name(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.') ? c : '_';
  if (out.empty() || std::isdigit(static_cast<unsigned char>(out[0]))) out = "v_" + out;
  if (!isa::valid_name(out)) out = "v_" + out;
  return out;
}

// A kernel with its scratch context, kept alive between its prefetch and its body.
struct Pending {
  std::unique_ptr<KernelContext> ctx;
  std::unique_ptr<StreamKernel> stream;
};

}  // namespace

isa::Program codegen(const Lowering& l, const arch::Arch& a, std::vector<size_t>* layer_loops,
                     std::vector<MarkedOp>* marks, int64_t sample_rounds, int chip) {
  const Graph& g = l.graph;
  ProgramBuilder pb(a, chip);
  isa::Program& p = pb.program();
  for (const auto& [k, v] : g.meta) p.meta[k] = v;
  p.meta["arch"] = a.name;
  p.meta["arch_fingerprint"] = fmt::format("{:016x}", arch::fingerprint(a));
  const uint64_t w = l.region_bytes.at("weights"), kv = l.region_bytes.at("kv_cache"),
                 c = l.region_bytes.at("constants"), act = l.region_bytes.at("activations");
  if (w > 0) p.regions.push_back({"weights", isa::RegionKind::Weights, 0, w});
  if (kv > 0) p.regions.push_back({"kv_cache", isa::RegionKind::KvCache, w, kv});
  if (c > 0) p.regions.push_back({"constants", isa::RegionKind::Weights, w + kv, c});
  if (act > 0) p.regions.push_back({"activations", isa::RegionKind::Activations, w + kv + c, act});
  std::set<int> stacks;
  for (const Op& op : g.ops) {
    if (op.kind == OpKind::Concat) stacks.insert(op.outputs[0]);
  }
  std::set<std::string> names;
  for (size_t i = 0; i < g.values.size(); ++i) {
    const Value& v = g.values[i];
    if (v.role == Role::Activation || stacks.count(int(i)) || !l.places[i].placed) continue;
    std::string name = symbol_name(v.name);
    while (!names.insert(name).second) name += "_";
    p.symbols.push_back({name, v.dtype, v.shape, isa::Space::Hbm, -1, l.places[i].addr, role_of(v.role)});
  }

  const bool loop = l.layers > 0;
  LayerRegs regs;
  if (loop) regs.weights = pb.reg_alloc(), regs.kv = pb.reg_alloc();
  auto layer = [&](size_t i) { return g.ops[i].i("layer", -1); };
  std::vector<int> order;  // ops that run, in order
  for (size_t i = 0; i < g.ops.size(); ++i) {
    if (l.plans[i].strategy == Strategy::None) continue;
    if (loop && layer(i) > 0) continue;
    order.push_back(int(i));
  }

  // Mark ids: the ops that run, in order.
  std::map<size_t, int64_t> mark_of;
  for (size_t k = 0; k < order.size(); ++k) {
    const Op& op = g.ops[size_t(order[k])];
    mark_of[size_t(order[k])] = int64_t(k);
    p.meta[fmt::format("mark.{}", k)] = op.name;
    if (marks) marks->push_back({op.name, std::string(op_kind_name(op.kind)), loop && layer(size_t(order[k])) == 0});
  }
  auto mark_all = [&](size_t op, bool resume) {
    for (int t = 0; t < pb.tiles(); ++t) pb.emit(t, mark(mark_of.at(op), resume));
  };

  Pending pending;
  int pending_op = -1;
  bool in_loop = false;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = size_t(order[k]);
    const Op& op = g.ops[i];
    const OpPlan& plan = l.plans[i];
    if (loop && !in_loop && layer(i) == 0) {
      for (int t = 0; t < pb.tiles(); ++t) {
        pb.emit(t, li(regs.weights, 0));
        pb.emit(t, li(regs.kv, 0));
        if (layer_loops) layer_loops->push_back(pb.size(t));
        pb.emit(t, compiler::loop(l.layers));
      }
      in_loop = true;
    }
    mark_all(i, pending_op == int(i));  // a prefetched op began with its prefetch
    try {
      KernelContext ctx(pb, plan.half);
      ctx.mark_id = mark_of.at(i), ctx.sample_rounds = sample_rounds;
      for (const Traffic& t : plan.eager) {  // what PyTorch launches besides the op (kernels/eager.hpp)
        KernelContext traffic(pb);
        traffic.nest_in(ctx, 0);
        emit_traffic(traffic, plan.eager_scratch, t);
        pb.barrier_all(/*kernel=*/true);
      }
      switch (plan.strategy) {
        case Strategy::Gather: {
          const Operand2 table = operand(l, op.inputs[0], regs);
          emit_gather(ctx, table, g.v(op.inputs[0]).shape[1], op.ints("rows"), operand(l, op.outputs[0], regs));
          break;
        }
        case Strategy::Gemm: emit_gemm(ctx, gemm_spec(l, op, regs), plan.gemm); break;
        case Strategy::Stream:
          if (pending_op == int(i)) {
            pending.stream->body();
          } else {
            StreamKernel kernel(ctx, stream_spec(l, op, regs), plan.stream);
            kernel.prefetch();
            kernel.body();
          }
          break;
        case Strategy::Rows:
          emit_rows(ctx, rows_spec(l, op, regs), plan.rows);
          break;
        case Strategy::Experts: emit_moe(ctx, plan.half, moe_spec(l, op, regs), plan.moe); break;
        case Strategy::Heads: emit_attention(ctx, attention_spec(l, op, regs), plan.attention); break;
        case Strategy::Collective: {
          const Value& x = g.v(op.inputs[0]);
          CollectiveSpec s;
          s.elements = x.elements(), s.dtype = x.dtype;
          s.buf = operand(l, op.inputs[0], regs).addr, s.scratch = hbm(int64_t(plan.collective_scratch));
          s.tag = int64_t(k % 256) * 256;  // apart from nearby ops' tags (matching is in order anyway)
          emit_all_reduce(ctx, op.ints("group"), s);
          break;
        }
        default: throw CompileError("no kernel for this strategy");
      }
      if (marks) {
        MarkedOp& m = (*marks)[k];
        m.rounds = ctx.rounds, m.rounds_emitted = ctx.rounds_emitted;
        if (ctx.instance_weights().size() > 1) m.instance_weights = ctx.instance_weights();
      }
      // The next op may start loading its weights before this op's barrier.
      const bool next_in_same_segment = k + 1 < order.size() && (!loop || (layer(size_t(order[k + 1])) == 0) == (layer(i) == 0));
      pending_op = -1;
      if (next_in_same_segment && l.plans[size_t(order[k + 1])].prefetch) {
        const size_t j = size_t(order[k + 1]);
        pending.ctx = std::make_unique<KernelContext>(pb, l.plans[j].half);
        pending.stream = std::make_unique<StreamKernel>(*pending.ctx, stream_spec(l, g.ops[j], regs), l.plans[j].stream);
        mark_all(j, false);
        pending.stream->prefetch();
        mark_all(i, true);
        pending_op = int(j);
      }
    } catch (const CompileError& e) {
      throw CompileError(fmt::format("op {} ({}): {}", op.name, op_kind_name(op.kind), e.what()));
    }
    pb.barrier_all(/*kernel=*/true);
    const bool loop_ends = in_loop && (k + 1 == order.size() || layer(size_t(order[k + 1])) != 0);
    if (loop_ends) {
      for (int t = 0; t < pb.tiles(); ++t) {
        pb.emit(t, addi(regs.weights, regs.weights, int64_t(l.weight_stride)));
        pb.emit(t, addi(regs.kv, regs.kv, int64_t(l.kv_stride)));
        pb.emit(t, end_loop());
      }
      in_loop = false;
    }
  }
  return pb.take();
}

}  // namespace tessera::compiler
