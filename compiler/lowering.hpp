// What the passes decide about a graph on its way to code: per op, how its work is split over
// tiles and cut to fit the arrays and SRAM; per value, where it lives in HBM. The passes fill
// a Lowering in order and write a readable note on each op, so `--emit tiled` shows the plan.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "compiler/graph.hpp"
#include "compiler/kernels/attention.hpp"
#include "compiler/kernels/eager.hpp"
#include "compiler/kernels/gemm.hpp"
#include "compiler/kernels/moe.hpp"
#include "compiler/kernels/stream.hpp"

namespace tessera::compiler {

// Whose kernels the program is: the compiler's own (element-wise work fused into the kernels
// around it, sibling Linear layers stacked), or those plain PyTorch launches for the model's
// reference code (kernels/eager.hpp): every torch op a kernel, nothing fused.
enum class Framework { Fused, PyTorch };

struct CompileOptions {
  isa::Dtype weight_dtype = isa::Dtype::Bf16;
  isa::Dtype activation_dtype = isa::Dtype::Bf16;
  isa::Dtype kv_dtype = isa::Dtype::Bf16;
  bool layer_loop = true;   // emit one layer body in a loop when the layers are alike
  int64_t attention_key_block = 0;  // > 0: attention walks keys in blocks of this many (else only when heads do not fit)
  bool verify = true;       // run the ISA verifier on the result
  // Kernels whose work repeats in rounds of equal cost (GEMM passes, attention's query-block
  // pairs) emit at most this many of them, marked, for a performance run that extrapolates
  // the rest (0: every round; the program then computes the whole op).
  int64_t sample_rounds = 0;
  int chip = 0;  // compile(): the chip this graph's program is for
  // MoE: > 0 caps the tokens an expert takes from a routed block at factor x tokens x k /
  // experts (GShard's capacity; the rest are dropped); 0: dropless (Mixtral's rule).
  double capacity_factor = 0.0;
  Framework framework = Framework::Fused;
};

// How an op's work is spread over the tiles.
enum class Strategy {
  None,    // no work (a view, a constant)
  Gemm,    // large Linear: the multicast GEMM grid (kernels/gemm.hpp)
  Stream,  // small-token Linear: output columns over tiles, weights streamed from HBM
  Rows,    // row-wise ops: token rows over tiles
  Heads,   // attention: (sequence, kv head, query block) units over tiles
  Gather,  // embedding: one DMA per token row
  Experts, // MoE experts: all experts densely, weighted by the routing weights (kernels/moe.hpp)
  Collective,  // across chips: sends, receives and adds (kernels/collective.hpp)
};
std::string_view strategy_name(Strategy s);

struct OpPlan {
  Strategy strategy = Strategy::None;
  GemmPlan gemm;             // Gemm
  StreamPlan stream;         // Stream
  RowsPlan rows;             // Rows (and the MoE router)
  MoePlan moe;               // Experts
  AttentionPlan attention;   // Heads
  uint64_t collective_scratch = 0, collective_scratch_bytes = 0;  // Collective: a received part
  bool prefetch = false;     // Stream: weight loads issued before the previous op's barrier
  // Framework::PyTorch: the kernels launched before the op's own, over scratch of
  // eager_scratch_bytes at eager_scratch.
  std::vector<Traffic> eager;
  uint64_t eager_scratch = 0, eager_scratch_bytes = 0;
  int half = -1;             // scratch half (SRAM, shared memory, semaphores); -1: all of it
};

// Where a value's bytes are: `addr` in HBM (relative to `reg` when the value belongs to a layer
// and the program loops over layers), rows `ld` bytes apart.
struct Placement {
  bool placed = false;
  uint64_t addr = 0;
  int64_t ld = 0;        // bytes between rows of a 2-D view; 0 = packed
  int layer = -1;        // the layer whose register addresses it, -1 = absolute
  bool kv = false;       // addressed by the KV-cache layer register, not the weight one
};

struct Lowering {
  Graph graph;
  std::vector<OpPlan> plans;       // per op
  std::vector<Placement> places;   // per value
  // Layer loop: ops of layer 0 are emitted once inside a loop over `layers`; per-layer weights
  // and KV caches sit `weight_stride` / `kv_stride` bytes apart.
  int64_t layers = 0;
  uint64_t weight_stride = 0, kv_stride = 0;
  std::map<std::string, uint64_t> region_bytes;  // weights, kv_cache, activations, constants
  double capacity_factor = 0.0;                   // CompileOptions::capacity_factor
};

}  // namespace tessera::compiler
