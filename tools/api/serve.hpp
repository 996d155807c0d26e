// serve(): request traffic replayed on a fleet of replicas of a system, each iteration's time
// and energy from the simulator, and what it comes to: throughput, latency percentiles, SLO
// attainment, KV-cache occupancy, energy and cost. plan(): the fewest replicas of each system
// (over its parallel mappings, co-located or as disaggregated prefill and decode pools) that
// meet an SLO at a load, the cheapest system, and $ per user-month. The CLI's `serve` verb and
// the Python module call these.
//
// A replica is `tp` chips of a system (all of them by default) splitting the model by tensor
// parallelism; fleets deal requests to replicas in turn (sim/serving/fleet.hpp) and each replica
// schedules its own (sim/serving/scheduler.hpp). Its KV cache holds the blocks the HBM left free
// by the compiled model (weights and the activations of the largest iteration) has room for;
// swapped blocks go over the chips' host links (system.host). KV caches between disaggregated
// pools take the route between a replica's chips and the next replica's over the system's
// links (within a scale-up domain, or through the scale-out network). Iteration costs come from
// simulations on a grid (sim/serving/interpolated_cost.hpp), or with `exact` from simulating
// every iteration as the ragged step it is.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "sim/serving/fleet.hpp"
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
  std::string prefix_sharing;  // workloads::parse_prefix_sharing's spec (empty: no shared prefixes)
};
std::vector<workloads::Request> load_traffic(const Traffic& t);

struct ServeSpec {
  std::string model;  // shipped name or config.json path
  std::string dtype = "bf16", kv_dtype = "bf16";
  sim::serving::SchedulerConfig scheduler;  // blocks 0: from the HBM the compiled model leaves free
  int64_t replicas = 1;         // co-located replicas
  int64_t prefill_replicas = 0, decode_replicas = 0;  // disaggregated pools instead (both or neither)
  int64_t tp = 0;               // chips a replica spans; 0: the whole system
  std::string preemption = "recompute";  // or "swap" (to host memory)
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
  sim::serving::Pools pools;
  int64_t replicas = 1, chips = 1, tp = 1;  // all replicas; chips per replica, split by tensor parallelism
  sim::serving::SchedulerConfig scheduler;  // with the blocks
  double kv_bytes_per_token = 0;            // per replica
  sim::serving::Slo slo;
  sim::serving::ServeMetrics metrics;       // over all replicas
  std::vector<sim::serving::ServeResult> results;  // per replica (disaggregated: the prefill pool's, then the decode pool's)
  std::vector<sim::serving::RequestResult> requests;  // in the order given
  std::vector<int64_t> replica_of;                 // each request's replica (decode replica when disaggregated)
  double transfer_seconds = 0, transfer_joules = 0;  // KV caches moved between pools
  int64_t simulations = 0;   // simulator runs the costs took
  bool exact = false;
  int64_t grid_per_octave = 0;
  double avg_power_w = 0;    // all replicas, over the traffic's span
  double utilization = 0;    // share of the replicas' time spent in iterations
  double usd_per_hour = 0;   // all replicas
  double usd_per_million_tokens = 0, usd_per_million_output_tokens = 0;
  double host_seconds = 0;

  // Without `with_requests`, only the summary (no per-request results).
  nlohmann::json to_json(bool with_requests = true) const;
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

// One kind of replica: `tp` chips of system `a` (0: all of them) splitting the model by tensor
// parallelism, its iteration costs, scheduler settings (KV blocks, swap link, the model's
// context) and KV transfers to a replica beside it. A clear error when the model does not split
// over `tp` chips or leaves no HBM for a KV cache.
class Deployment {
 public:
  Deployment(const arch::Arch& a, int64_t tp, const ServeSpec& spec, const RunOptions& options);
  ~Deployment();
  const arch::Arch& system() const;   // as given
  const arch::Arch& replica() const;  // its tp chips
  int64_t tp() const;
  const sim::serving::SchedulerConfig& config() const;
  double idle_watts() const;  // a replica's static power
  ReplicaCost& cost();
  sim::serving::IterationCostResult transfer(int64_t tokens) const;
  // Replays `traffic` on a fleet of these replicas.
  ServeReport serve(const std::vector<workloads::Request>& traffic, const sim::serving::Pools& pools,
                    const std::function<void(const ServeProgress&)>& progress = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The routes a KV cache takes from each chip of a replica of `tp` chips of system `a` to its
// peer in the next replica (chips i and tp + i), all chips at once, each over its own route:
// latency plus bytes over the route's slowest link; energy per bit for every link crossed.
struct KvRoute {
  std::vector<double> latency, bandwidth;  // per chip
  double joules_per_byte = 0;              // every chip's route, summed
  sim::serving::IterationCostResult cost(double bytes_per_chip) const;
};
KvRoute kv_route(const arch::Arch& a, int64_t tp);

// A fleet of `chips` chips of system `a` drawing `avg_power_w`: capex amortised and energy at
// the PUE and electricity price (owned), or the cloud price (NaN when the preset has none).
double usd_per_hour(const arch::Arch& a, double chips, double avg_power_w, const std::string& pricing);

ServeReport serve(const arch::Arch& a, const std::vector<workloads::Request>& traffic, const ServeSpec& spec,
                  const RunOptions& options, const std::function<void(const ServeProgress&)>& progress = {});

// Capacity planning over systems at one or more loads.
struct PlanSpec {
  // A plan replays many fleets of many mappings: its cost grid is coarser than serve()'s (2
  // points an octave: on a 5-minute window of the code trace, SLO attainment within 0.1 point of 4's with 2.3x fewer
  // simulations).
  PlanSpec() { serve.grid_per_octave = 2; }
  ServeSpec serve;                 // model, dtypes, scheduler, SLO, grid, preemption (pools and tp: searched)
  double attainment = 0.9;         // share of requests that must meet the SLO (DistServe's 90%)
  std::vector<double> loads{1.0};  // the traffic at these multiples of its rate
  double requests_per_user_month = 1000;  // the usage profile for $ per user-month
  std::vector<int64_t> tp;         // mappings to try; empty: every divisor of a system's chips
  bool disaggregation = true;      // also plan disaggregated prefill and decode pools
  int64_t max_replicas = 64;       // a pool's
};

struct PlanRow {
  std::string system;
  double load = 1;
  int64_t tp = 1;
  bool disaggregated = false;
  sim::serving::FleetPlan fleet;  // feasible, pools, metrics and $/hour (by the options' pricing)
  int64_t chips = 0;              // over the pools
  double avg_power_w = 0, utilization = 0;
  // Owned and cloud (NaN when the system has no cloud price).
  double usd_per_hour_owned = 0, usd_per_hour_cloud = 0;
  double usd_per_million_tokens_owned = 0, usd_per_million_tokens_cloud = 0;
  double usd_per_user_month_owned = 0, usd_per_user_month_cloud = 0;
};

struct PlanReport {
  std::string model, pricing;
  sim::serving::Slo slo;
  double attainment = 0, requests_per_user_month = 0;
  std::vector<double> loads;
  std::vector<PlanRow> rows;          // every system, mapping and mode, by load
  std::vector<std::string> skipped;   // mappings that cannot serve the model, and why
  std::vector<int64_t> best;          // per load: the cheapest feasible row by `pricing`, or -1
  int64_t simulations = 0, replays = 0;
  double host_seconds = 0;
  nlohmann::json to_json() const;
};

struct PlanProgress {
  std::string stage;  // "hgx-h100x8 tp 8 co-located at 2x"
  int64_t replays = 0, simulations = 0;
};

PlanReport plan(const std::vector<arch::Arch>& systems, const std::vector<workloads::Request>& traffic,
                const PlanSpec& spec, const RunOptions& options,
                const std::function<void(const PlanProgress&)>& progress = {});

}  // namespace tessera::api
