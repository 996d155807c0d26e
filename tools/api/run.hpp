// run(): the whole pipeline for one system and one workload (compile, simulate, price) and the
// report users read. The CLI's `run` and `compare` verbs and the Python module call this.
//
// Sampled layers. A model's layers compile into one loop body, and every iteration does the
// same work at other addresses. By default the loop runs 3 of the model's L layers and every
// time and count is extrapolated to all of them, per operator (tools/api/breakdown.hpp):
//   x(L) = x(3 layers) + (L - 3) * mean(x of layers 1 and 2)
// A test checks this against simulating every layer. `sample_layers = 0` simulates all.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "compiler/hf_frontend.hpp"
#include "sim/energy.hpp"
#include "tools/api/breakdown.hpp"
#include "sim/stats.hpp"

namespace tessera::api {

// What to run: a model's prefill or decode step, a ragged iteration of a serving engine, or one
// operator.
struct RunSpec {
  std::string model;             // shipped name or config.json path; empty for an operator
  std::string op;                // with no model: "gemm", "attention" or "copy"
  std::vector<int64_t> shape;    // gemm: M,K,N; attention: heads,kv_heads,head_dim; copy: bytes
  std::string phase = "decode";  // prefill or decode (models and attention), or mixed (models)
  int64_t batch = 1;
  int64_t seq = 0;             // prefill: prompt tokens per sequence
  int64_t context = -1;        // decode: tokens already in each sequence's KV cache
  // mixed: each sequence's past and new tokens (continuous batching: prompts' chunks and decodes).
  std::vector<compiler::SequenceStep> sequences;
  std::string dtype = "bf16";  // weights (and GEMM operands)
  std::string kv_dtype = "bf16";
  // MoE: > 0 caps the tokens an expert takes at factor x tokens x k / experts (the rest are
  // dropped); 0: dropless.
  double capacity_factor = 0.0;
  // Whose kernels: "fused" (the compiler's) or "pytorch" (plain PyTorch's: every torch op of the
  // model's reference code a kernel of its own; compiler::Framework).
  std::string framework = "fused";

  std::string describe() const;  // "llama-3-8b decode b32 ctx1024", "gemm 4096x4096x4096"
};

struct RunOptions {
  int64_t sample_layers = 3;  // layers simulated (at least 2) when a model has more; 0: all
  // Rounds simulated of an operator whose work repeats in equal rounds (GEMM passes, attention's
  // query-block pairs: long prefills), when it has more; 0: all (CompileOptions::sample_rounds).
  int64_t sample_rounds = 4;
  std::string trace;  // write a Perfetto trace of the (last) simulation here
  std::string pricing = "owned";  // owned: capex amortised + energy; cloud: the preset's $/hour
  double power_window = 1e-6;     // seconds: the window of peak power
  // MoE routing in performance mode (which has no data to route on): expert e drawn with
  // probability proportional to 1 / rank^skew (0: uniform), seeded.
  double routing_skew = 0.0;
  uint64_t routing_seed = 1;
  // How the host launches the program's kernels on chips that run kernels (chip.launch):
  // "graph" all at once (a CUDA graph), "eager" one by one as the framework reaches them.
  std::string launch = "graph";
};

struct Report {
  std::string system, workload;
  // Why the run failed (compare() only: run() throws); then only system and workload are set.
  std::string error;
  std::string pricing;
  int64_t chips = 1;
  // The mapping onto the chips (mapping.hpp): tensor parallelism over tp chips, pp pipeline
  // stages; a pipeline's microbatches, each stage's seconds per microbatch and each boundary's
  // transfer. When the system left the mapping open, every candidate the search simulated.
  int64_t tp = 1, pp = 1, microbatches = 1;
  int64_t ep = 1;  // an MoE's experts dealt over ep groups of a stage's chips
  std::vector<double> stage_seconds, transfer_seconds;
  struct Tried {
    int64_t tp = 1, pp = 1, ep = 1;
    double estimate = 0, seconds = 0;
    std::string error;  // why it did not run
  };
  std::vector<Tried> mapping_search;
  // Performance.
  double seconds = 0;
  double tokens = 0;  // tokens produced or consumed by the step (0 for operators)
  double tokens_per_s = 0;
  double flops = 0;  // 2 x MACs executed
  double hbm_bytes = 0;
  double instructions = 0;
  int64_t layers = 0, layers_simulated = 0;
  // Operators simulated in part (some of their rounds, extrapolated): the raw stats then cover
  // only what was simulated (and extrapolated over layers); every other figure covers the step.
  std::vector<std::string> rounds_sampled;
  // Energy and power.
  sim::Energy energy;
  double avg_power_w = 0, peak_power_w = 0, tdp_w = 0;
  // Time the power limit added: the clock lowered to hold power.limit (then bound "power").
  double throttled_seconds = 0;
  double joules_per_token = 0;
  // Cost.
  double capex_usd = 0;  // chips x (chip + board share)
  double usd_per_hour = 0;
  double capex_usd_per_hour = 0, energy_usd_per_hour = 0;  // owned pricing's parts
  double usd_per_million_tokens = 0;
  double tokens_per_s_per_capex_usd = 0;
  // What limits it: utilisation (0..1) of compute, hbm_bandwidth, interconnect, the busiest
  // NoC link, DMA engine, vector unit, SRAM ports and shared memory, and HBM capacity; the
  // resource that is saturated (bound_of).
  std::map<std::string, double> utilization;
  std::string bound;
  // Where the time goes, per operator and per layer (breakdown.hpp), with each row's figures.
  struct Row {
    Share share;
    double flops = 0, hbm_bytes = 0;
    sim::Energy energy;  // its events' and the active power's energy by component (static power is the run's)
    std::map<std::string, double> utilization;
    std::string bound;
  };
  std::vector<Row> ops, layer_rows;
  std::vector<std::string> warnings;
  double host_seconds = 0;
  sim::Stats stats;

  nlohmann::json to_json(bool with_stats = true) const;
};

Report run(const arch::Arch& a, const RunSpec& spec, const RunOptions& options = {});

// Every system on every workload. A run that fails (the model does not fit a system's HBM, say)
// becomes a report with its error and the others go on; mistakes in the request itself (options,
// dtypes, the workload, the model's config, an operator's shape) throw before any run. The trace
// option, if any, records the first run that succeeds.
struct Comparison {
  std::vector<RunSpec> workloads;
  std::vector<std::vector<Report>> reports;  // [workload][system], systems in the order given
  bool failed() const;                       // any run
  // Per workload, each system's report and its ratios to the first system's (where both ran).
  nlohmann::json to_json(bool with_stats = false) const;
};
Comparison compare(const std::vector<arch::Arch>& systems, const std::vector<RunSpec>& workloads,
                   const RunOptions& options = {});

// How many copies of `r`'s system the capex of `first`'s buys (data-parallel replicas serving
// the same workload): an 8-GPU server against as many in-house chips as its price buys.
int64_t replicas_for(const Report& first, const Report& r);

// The built-in default comparison: Llama-3-8B on an in-house design and two GPUs, a decode
// step (batch 32, context 1024) and a prefill (batch 1, 2048 tokens).
std::vector<std::string> default_systems();
std::vector<RunSpec> default_workloads();

// Figures compared across systems, each with whether higher is better.
struct Metric {
  const char* key;  // member of Report::to_json()
  bool higher_is_better;
};
const std::vector<Metric>& compared_metrics();

}  // namespace tessera::api
