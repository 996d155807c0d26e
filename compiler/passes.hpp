// The compiler's passes, in the order compile() runs them. Each has one job, can be run and
// tested alone, and leaves a readable trace in the graph (op notes) for `--emit`.
#pragma once

#include "arch/arch.hpp"
#include "compiler/graph.hpp"
#include "compiler/lowering.hpp"
#include "isa/program.hpp"

namespace tessera::compiler {

// Derives every op's output shape from its inputs and attributes and checks the ones given.
void infer_shapes(Graph& g);

// Rewrites patterns into fewer, larger ops:
//  - Linear layers reading the same input (q/k/v, gate/up) become one Linear over their
//    concatenated weights (a Concat the memory planner resolves by placement), then a Split;
//  - silu(gate) * up over the two halves of one Linear becomes SwiGlu;
//  - an activation right after a Linear moves into the Linear (the MATMUL epilogue).
// Framework::PyTorch fuses none of these (plain PyTorch launches each op), only an MoE's
// expert weights are stacked (a layout).
void fuse(Graph& g, Framework framework = Framework::Fused);

// Weights, activations and KV caches take the requested dtypes (norm weights, biases and
// tables stay as they are; logits are fp32).
void assign_dtypes(Graph& g, const CompileOptions& o);

// Chooses how each op's work spreads over the tiles (Strategy) and which ops prefetch, and
// under Framework::PyTorch the kernels PyTorch launches besides each op (OpPlan::eager).
Lowering partition(Graph g, const arch::Arch& a, Framework framework = Framework::Fused);

// Cuts each op to fit the arrays and its share of SRAM (GEMM blocks, weight chunks, row
// chunks, query blocks).
void tile(Lowering& l, const arch::Arch& a, const CompileOptions& o = {});

// Decides which tiles do what (grid orientation on the mesh, unit ranges), as notes.
void place(Lowering& l, const arch::Arch& a);

// HBM addresses for weights, KV caches and activations (reusing activation memory, residual
// adds in place, per-layer tensors at a fixed stride); fails when the model does not fit.
void plan_memory(Lowering& l, const arch::Arch& a, const CompileOptions& o);

// Orders synchronisation between ops (a barrier where a consumer may read another tile's
// output; prefetches hoisted above it).
void schedule(Lowering& l);

// The program: every op with work begins with `mark id` on every tile (id = its index in
// `marks`, named in the program's metadata as mark.<id>). With `layer_loops`, the index of the
// layer loop's `loop` instruction in each tile's stream (empty when the layers are emitted one
// by one).
struct MarkedOp;
isa::Program codegen(const Lowering& l, const arch::Arch& a, std::vector<size_t>* layer_loops = nullptr,
                     std::vector<MarkedOp>* marks = nullptr, int64_t sample_rounds = 0, int chip = 0);

}  // namespace tessera::compiler
