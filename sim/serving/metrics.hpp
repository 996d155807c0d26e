// What a replay of traffic comes to: throughput, latency percentiles, SLO attainment and
// goodput, KV-cache occupancy, preemptions and energy.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "sim/serving/scheduler.hpp"

namespace tessera::sim::serving {

// Latency targets per request, in seconds: time to first token, and time per output token
// after the first. A request meets the SLO when it meets both.
struct Slo {
  double ttft = std::numeric_limits<double>::infinity();
  double tpot = std::numeric_limits<double>::infinity();
};

// "ttft=500ms,tpot=50ms" (times as in arch files; either key may be left out). Errors name the key.
Slo parse_slo(const std::string& spec);

// Linear interpolation between closest ranks, as numpy.percentile's default.
struct Percentiles {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
};
Percentiles percentiles(std::vector<double> values);

struct ServeMetrics {
  int64_t requests = 0;
  double seconds = 0;  // from the first arrival to the last token
  double requests_per_s = 0;
  double output_tokens_per_s = 0;
  double tokens_per_s = 0;  // prompt and output tokens
  Percentiles ttft, tpot, latency, queueing;
  double slo_attainment = 0;  // share of the requests meeting the SLO
  double ttft_attainment = 0, tpot_attainment = 0;  // meeting each target
  double goodput = 0;         // requests meeting the SLO per second
  int64_t preemptions = 0, swaps = 0;
  int64_t prompt_tokens = 0, cached_tokens = 0;  // prompt tokens of the served requests; found in the prefix cache
  int64_t rejected = 0;  // requests longer than the model's context: in no other figure but SLO attainment
  double kv_occupancy_mean = 0, kv_occupancy_peak = 0;  // of the blocks, time-weighted over iterations
  double busy_seconds = 0;                              // in iterations
  double joules = 0;                                    // iterations, and idle power between them
  double joules_per_output_token = 0;
};

// `idle_watts`: a replica's power when it has no iteration to run; `r` may hold the requests and
// iterations of `replicas` replicas, each idle when it runs no iteration.
ServeMetrics summarize(const ServeResult& r, const SchedulerConfig& config, const Slo& slo, double idle_watts,
                       int64_t replicas = 1);

}  // namespace tessera::sim::serving
