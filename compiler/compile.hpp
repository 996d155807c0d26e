// The compiler's entry point: a graph and a target architecture in, a verified program out,
// with the text of the intermediate stages (`--emit graph`, `--emit tiled`) and the HBM address
// of every named tensor (weights to load, KV caches, the logits to read).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "compiler/graph.hpp"
#include "compiler/hf_frontend.hpp"
#include "compiler/lowering.hpp"
#include "isa/program.hpp"

namespace tessera::compiler {

struct TensorPlacement {
  std::string name;  // as the frontend named it (Hugging Face names for HF models)
  uint64_t addr = 0;
  std::vector<int64_t> shape;
  isa::Dtype dtype = isa::Dtype::Bf16;
  Role role = Role::Weight;
  std::shared_ptr<const std::vector<float>> data;  // contents known at compile time (tables)
  int chip = 0;                                     // whose HBM it is in
  std::optional<Shard> shard{};                     // the part of `name` it holds (split models)
};

// An operator of the graph as the program marks it (`mark id`, id = its index here): the
// simulator accounts time and work to it.
struct MarkedOp {
  std::string name;  // the op's name ("l0.attention", "lm_head")
  std::string kind;  // its kind ("attention", "linear")
  bool in_layer_loop = false;  // its instances are per layer
  // Rounds of equal work its kernel has, and how many it emitted (CompileOptions::
  // sample_rounds: the first ones and the last two): when fewer, each emitted round is an
  // instance of its own (and, in an MoE, each emitted round of a kernel within an emitted
  // expert), weighted by what it stands for; none when every round is emitted.
  int64_t rounds = 1, rounds_emitted = 1;
  std::vector<double> instance_weights{};
  int64_t instances_per_layer() const { return std::max<int64_t>(1, int64_t(instance_weights.size())); }
  double instance_weight(int64_t i) const { return instance_weights.empty() ? 1.0 : instance_weights[size_t(i)]; }
};

struct CompileResult {
  isa::Program program;
  std::string graph_text;  // after fusion and dtype assignment
  std::string tiled_text;  // after partitioning, tiling, placement, memory planning, scheduling
  std::vector<TensorPlacement> tensors;  // weights, KV caches and outputs
  uint64_t weight_bytes = 0, kv_bytes = 0, activation_bytes = 0;
  int64_t layers_looped = 0;  // 0 when every layer is emitted separately
  // Per chip and tile, the index of the layer loop's `loop` instruction in its stream (when
  // looped).
  std::vector<std::vector<size_t>> layer_loops;
  std::vector<MarkedOp> marks;
};

CompileResult compile(Graph g, const arch::Arch& a, const CompileOptions& o = {});

// Model config + workload -> program, the usual path: the whole model, or one stage of a
// pipeline (PipelineStage). On a system of several chips the model (or the stage) is split over
// them by tensor parallelism (TensorParallel): every chip's graph is compiled for it and the
// programs joined (each chip's streams; the memory map they share). The sizes and the marks are
// each chip's (alike); `tensors` lists every chip's.
CompileResult compile_model(const ModelConfig& m, const Workload& w, const arch::Arch& a, const CompileOptions& o = {},
                            const PipelineStage& stage = {});

}  // namespace tessera::compiler
