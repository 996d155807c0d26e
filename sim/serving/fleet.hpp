// A fleet of replicas serving one stream of traffic: co-located (every replica prefills and
// decodes; requests dealt to replicas in turn, in arrival order), or disaggregated (Splitwise,
// DistServe): a pool of prefill replicas computes each prompt and its first token, the KV cache
// moves over the links to a decode replica (requests dealt in turn as their caches arrive),
// which produces the rest (the prefill replica frees the cache when the prompt is done: the
// copy is taken to overlap what it computes next). All replicas of a fleet are alike and share
// one IterationCost. A plan finds the fewest replicas that meet an SLO.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "sim/serving/metrics.hpp"
#include "sim/serving/scheduler.hpp"

namespace tessera::sim::serving {

// Replicas of a fleet: `prefill` and `decode` pools, or `colocated` replicas (pools 0).
struct Pools {
  int64_t colocated = 0;
  int64_t prefill = 0, decode = 0;
  bool disaggregated() const { return colocated == 0; }
  int64_t replicas() const { return colocated + prefill + decode; }
};

// Time and energy to move a sequence's KV cache of `tokens` tokens from a prefill replica to a
// decode replica. A prefill replica sends one cache at a time, in the order they are ready.
using KvTransfer = std::function<IterationCostResult(int64_t tokens)>;

struct FleetResult {
  Pools pools;
  std::vector<ServeResult> replicas;  // co-located ones, or the prefill pool's then the decode pool's
  std::vector<int64_t> replica_of;    // each request's replica in `replicas` (its decode replica when it has one)
  ServeResult all;  // requests in the order given (times from arrival to the last token), every iteration, all joules
  double transfer_seconds = 0, transfer_joules = 0;  // KV caches moved between pools (each transfer's time summed)
};

// `config` is a co-located replica's; disaggregated, the prefill pool takes it as it is and the
// decode pool with `arrives_prefilled`. `progress` gets the requests finished so far.
FleetResult serve_fleet(const std::vector<workloads::Request>& requests, const SchedulerConfig& config,
                        const Pools& pools, IterationCost& cost, const KvTransfer& transfer = {},
                        const std::function<void(int64_t)>& progress = {});

// The fewest n in [1, max] for which `meets(n)` holds, taking it to hold for every larger n
// once it holds (more replicas of a fleet never serve worse): doubling, then bisection. 0 when
// even `max` does not meet it, or when doubling stops helping (`gain(n, 2n)` false).
int64_t fewest(const std::function<bool(int64_t)>& meets, int64_t max,
               const std::function<bool(int64_t, int64_t)>& gain = {});

// What a plan needs of one kind of replica.
struct FleetSpec {
  SchedulerConfig config;
  IterationCost* cost = nullptr;
  KvTransfer transfer;    // disaggregated pools only
  double idle_watts = 0;  // a replica's when it runs no iteration
  std::function<double(const Pools&, const ServeMetrics&)> usd_per_hour;  // the fleet's
};

struct FleetPlan {
  bool feasible = false;
  Pools pools;           // the fewest that meet the target (the largest tried when none does)
  ServeMetrics metrics;  // at those pools
  double usd_per_hour = 0;
  int64_t replays = 0;   // fleets replayed to find it
};

// The fewest co-located replicas, or disaggregated the fewest prefill replicas whose TTFT meets
// the SLO for `attainment` of the requests and then the fewest decode replicas with which the
// whole SLO does, each up to `max_replicas`. Infeasible when more replicas stop helping (a
// request too long to prefill within the TTFT target on any number of them).
FleetPlan plan_fleet(const std::vector<workloads::Request>& requests, const FleetSpec& spec, const Slo& slo,
                     double attainment, bool disaggregated, int64_t max_replicas);

// The feasible plan with the lowest $/hour (the first of equals; none without a price), or -1.
int64_t cheapest(const std::vector<FleetPlan>& plans);

}  // namespace tessera::sim::serving
