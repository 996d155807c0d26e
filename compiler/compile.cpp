#include "compiler/compile.hpp"

#include <set>

#include "compiler/passes.hpp"
#include "compiler/target.hpp"
#include "isa/verify.hpp"

namespace tessera::compiler {

CompileResult compile(Graph g, const arch::Arch& a, const CompileOptions& o) {
  CompileResult r;
  infer_shapes(g);
  fuse(g);
  assign_dtypes(g, o);
  r.graph_text = print(g);
  Lowering l = partition(std::move(g), a);
  tile(l, a, o);
  place(l, a);
  plan_memory(l, a, o);
  schedule(l);
  r.tiled_text = print(l.graph);
  r.program = codegen(l, a, &r.layer_loops, &r.marks, o.sample_rounds);
  if (o.verify) isa::verify_or_throw(r.program, target_for(a));
  std::set<int> stacks;
  for (const Op& op : l.graph.ops) {
    if (op.kind == OpKind::Concat) stacks.insert(op.outputs[0]);
  }
  for (size_t i = 0; i < l.graph.values.size(); ++i) {
    const Value& v = l.graph.values[i];
    if (v.role == Role::Activation || stacks.count(int(i)) || !l.places[i].placed) continue;
    r.tensors.push_back({v.name, l.places[i].addr, v.shape, v.dtype, v.role, v.data});
  }
  r.weight_bytes = l.region_bytes["weights"];
  r.kv_bytes = l.region_bytes["kv_cache"];
  r.activation_bytes = l.region_bytes["activations"];
  r.layers_looped = l.layers;
  return r;
}

CompileResult compile_model(const ModelConfig& m, const Workload& w, const arch::Arch& a, const CompileOptions& o) {
  return compile(build_graph(m, w), a, o);
}

}  // namespace tessera::compiler
