// serve(): request traffic replayed on replicas of a system, each iteration's time and energy
// from the simulator, and what it comes to: throughput, latency percentiles, SLO attainment,
// KV-cache occupancy, energy and cost. The CLI's `serve` verb and the Python module call this.
//
// A replica is the whole system (its chips split the model by tensor parallelism); requests go
// to replicas in turn (round robin in arrival order) and each replica schedules its own
// (sim/serving/scheduler.hpp). Its KV cache holds the blocks the HBM left free by the compiled
// model (weights and the activations of the largest iteration) has room for. Iteration costs
// come from simulations on a grid (sim/serving/interpolated_cost.hpp), or with `exact` from
// simulating every iteration as the ragged step it is.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "sim/serving/metrics.hpp"
#include "sim/serving/scheduler.hpp"
#include "tools/api/run.hpp"
#include "workloads/requests.hpp"

namespace tessera::api {

// The traffic to replay: a trace file (Azure's CSV schema), or synthetic requests (their
// lengths may be resampled from the trace); then a window of it, played at a rate scale.
struct Traffic {
  std::string requests;   // trace path
  std::string synthetic;  // workloads::parse_synthetic's spec
  double from = 0;        // seconds
  double duration = std::numeric_limits<double>::infinity();
  double rate_scale = 1.0;
};
std::vector<workloads::Request> load_traffic(const Traffic& t);

struct ServeSpec {
  std::string model;  // shipped name or config.json path
  std::string dtype = "bf16", kv_dtype = "bf16";
  sim::serving::SchedulerConfig scheduler;  // blocks 0: from the HBM the compiled model leaves free
  int64_t replicas = 1;
  std::string slo;             // "ttft=500ms,tpot=50ms" (empty: no targets)
  int64_t grid_per_octave = 4;  // the cost grid's density (sim/serving::Grid)
  bool exact = false;          // simulate every iteration whole (slow: for checking the grid)
};

struct ServeProgress {
  int64_t finished = 0, requests = 0;  // requests done of all, over the replicas so far
  int64_t simulations = 0;
};

struct ServeReport {
  std::string system, model, pricing;
  int64_t replicas = 1, chips = 1, tp = 1;  // chips per replica, split by tensor parallelism
  sim::serving::SchedulerConfig scheduler;  // with the blocks
  double kv_bytes_per_token = 0;            // per replica
  sim::serving::Slo slo;
  sim::serving::ServeMetrics metrics;       // over all replicas
  std::vector<sim::serving::ServeResult> results;  // per replica
  std::vector<int64_t> replica_of;                 // each request's replica, in the order given
  int64_t simulations = 0;   // simulator runs the costs took
  bool exact = false;
  int64_t grid_per_octave = 0;
  double avg_power_w = 0;    // all replicas, over the traffic's span
  double usd_per_hour = 0;   // all replicas
  double usd_per_million_tokens = 0, usd_per_million_output_tokens = 0;
  double host_seconds = 0;

  // Without `requests`, only the summary (no per-request results).
  nlohmann::json to_json(bool requests = true) const;
  // A Perfetto timeline: a track of iterations per replica, and counters of queue depth, KV
  // occupancy and preemptions.
  void write_trace(std::ostream& out) const;
};

// A replica's iteration costs as serve() takes them: interpolated on the grid, or (spec.exact)
// every iteration simulated whole. `system` is the replica with its parallelism fixed (serve()
// does it: tensor parallelism over all its chips).
class ReplicaCost : public sim::serving::IterationCost {
 public:
  ReplicaCost(const arch::Arch& system, const ServeSpec& spec, const RunOptions& options);
  ~ReplicaCost() override;
  sim::serving::IterationCostResult cost(const std::vector<sim::serving::SequenceWork>& batch) override;
  sim::serving::IterationCostResult grid_cost(const std::vector<sim::serving::SequenceWork>& batch);
  sim::serving::IterationCostResult exact_cost(const std::vector<sim::serving::SequenceWork>& batch);
  // KV-cache blocks of `block_tokens` the HBM holds beside the weights and the activations of
  // an iteration of up to `tokens` tokens.
  int64_t kv_blocks(int64_t tokens, int64_t block_tokens);
  double kv_bytes_per_token() const;  // the replica's, over its chips
  int64_t simulations() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

ServeReport serve(const arch::Arch& a, const std::vector<workloads::Request>& traffic, const ServeSpec& spec,
                  const RunOptions& options, const std::function<void(const ServeProgress&)>& progress = {});

}  // namespace tessera::api
