#include "compiler/compile.hpp"

#include <fmt/format.h>

#include <cmath>
#include <set>
#include <stdexcept>

#include "compiler/passes.hpp"
#include "compiler/target.hpp"
#include "isa/verify.hpp"

namespace tessera::compiler {
namespace {

// The passes up to code generation; records the intermediate texts.
Lowering lower(Graph g, const arch::Arch& a, const CompileOptions& o, CompileResult& r) {
  if (!(o.capacity_factor >= 0.0 && std::isfinite(o.capacity_factor))) {
    throw CompileError(fmt::format("capacity_factor must be a finite number >= 0 (0: dropless), got {}",
                                   o.capacity_factor));
  }
  infer_shapes(g);
  fuse(g, o.framework);
  assign_dtypes(g, o);
  r.graph_text = print(g);
  Lowering l = partition(std::move(g), a, o.framework);
  l.capacity_factor = o.capacity_factor;
  tile(l, a, o);
  place(l, a);
  plan_memory(l, a, o);
  schedule(l);
  r.tiled_text = print(l.graph);
  return l;
}

// Chip `chip`'s program and tensors (from its graph's values when given: a model split across
// chips, whose chips' lowerings differ only in which parts of the weights their values hold),
// and the marks when asked for (every chip's are alike).
void generate(const Lowering& l, const arch::Arch& a, const CompileOptions& o, int chip, const Graph* own,
              std::vector<MarkedOp>* marks, CompileResult& r) {
  r.layer_loops.emplace_back();
  isa::Program p = codegen(l, a, &r.layer_loops.back(), marks, o.sample_rounds, chip);
  if (o.verify) isa::verify_or_throw(p, target_for(a));
  if (r.program.streams.empty()) {
    r.program = std::move(p);
  } else {
    for (isa::Stream& s : p.streams) r.program.streams.push_back(std::move(s));
  }
  std::set<int> stacks;
  for (const Op& op : l.graph.ops) {
    if (op.kind == OpKind::Concat) stacks.insert(op.outputs[0]);
  }
  for (size_t i = 0; i < l.graph.values.size(); ++i) {
    const Value& v = l.graph.values[i];
    if (v.role == Role::Activation || stacks.count(int(i)) || !l.places[i].placed) continue;
    // The chip's own part: which slice of a weight (tensor parallelism), which experts (expert
    // parallelism).
    const Value& mine = own && i < own->values.size() ? own->values[i] : v;
    r.tensors.push_back({mine.name, l.places[i].addr, v.shape, v.dtype, v.role, v.data, chip, mine.shard});
  }
}

void sizes(const Lowering& l, CompileResult& r) {
  r.weight_bytes = l.region_bytes.at("weights");
  r.kv_bytes = l.region_bytes.at("kv_cache");
  r.activation_bytes = l.region_bytes.at("activations");
  r.layers_looped = l.layers;
}

}  // namespace

CompileResult compile(Graph g, const arch::Arch& a, const CompileOptions& o) {
  CompileResult r;
  const Lowering l = lower(std::move(g), a, o, r);
  generate(l, a, o, o.chip, nullptr, &r.marks, r);
  sizes(l, r);
  return r;
}

CompileResult compile_model(const ModelConfig& m, const Workload& w, const arch::Arch& a, const CompileOptions& o,
                            const PipelineStage& stage) {
  const int64_t chips = a.system.chips;
  if (const int64_t stages = a.system.pipeline_stages(); stages > 1) {
    throw CompileError(fmt::format("{} maps the model as {} pipeline stages: a program covers one stage on its "
                                   "chips (compile a stage with system.chips = tp; `run` composes the pipeline)",
                                   a.name, stages));
  }
  if (chips == 1) return compile(build_graph(m, w, {}, stage), a, o);
  // Every chip's graph has the same ops and shapes (only which parts of the weights its values
  // hold differ), so one lowering serves them all; each chip gets its own code (its place in
  // the collectives) and its own parts.
  CompileResult r;
  auto chip = [&](int64_t c) {
    TensorParallel tp;
    tp.chips = chips, tp.rank = c, tp.experts = std::max<int64_t>(1, a.system.parallelism.ep);
    return build_graph(m, w, tp, stage);
  };
  const Lowering l = lower(chip(0), a, o, r);
  generate(l, a, o, 0, nullptr, &r.marks, r);
  for (int64_t c = 1; c < chips; ++c) {
    const Graph own = chip(c);
    for (size_t i = 0; i < own.values.size(); ++i) {
      if (own.values[i].shape != l.graph.values[i].shape) {
        throw std::logic_error(fmt::format("chip {}'s part of {} differs in shape from chip 0's at %{}", c, m.name,
                                           own.values[i].name));
      }
    }
    if (a.system.parallelism.ep <= 1) {
      generate(l, a, o, int(c), &own, nullptr, r);
      continue;
    }
    // Expert parallelism: the chip's experts are others than chip 0's.
    std::map<std::string, AttrValue> first;
    for (const Op& op : own.ops) {
      if (op.kind == OpKind::MoeExperts) first[op.name] = op.attrs.at("expert_first");
    }
    Lowering mine = l;
    for (Op& op : mine.graph.ops) {
      if (op.kind == OpKind::MoeExperts) op.attrs["expert_first"] = first.at(op.name);
    }
    generate(mine, a, o, int(c), &own, nullptr, r);
  }
  r.program.meta["tensor_parallel"] = std::to_string(chips);
  sizes(l, r);
  return r;
}

}  // namespace tessera::compiler
