// Serving: a replica replays request traffic the way the engines users run do (vLLM, SGLang):
// continuous batching under limits on running sequences and batched tokens, chunked prefill
// mixed with decodes in one iteration, a paged KV cache of fixed-size blocks, admission while
// blocks last, preemption when they run out (by recompute, or by swapping the KV cache to host
// memory), and prefix caching (full blocks of a shared prompt prefix computed once and reused
// while they stay cached). Each iteration's time and energy come from an IterationCost (the
// facade's: the simulator); the scheduler only keeps time. Depends on workloads/ (requests).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "workloads/requests.hpp"

namespace tessera::sim::serving {

// One sequence's share of an iteration: `tokens` new tokens after `context` tokens already in
// its KV cache; prefill (a chunk of its prompt, or of its recomputed prompt and output) or a
// decode step (one token).
struct SequenceWork {
  int64_t request = 0;  // its position among the requests replayed
  int64_t context = 0;
  int64_t tokens = 0;
  bool prefill = false;
};

struct IterationCostResult {
  double seconds = 0;
  double joules = 0;
};

class IterationCost {
 public:
  virtual ~IterationCost() = default;
  virtual IterationCostResult cost(const std::vector<SequenceWork>& batch) = 0;
};

// The replica's link to host memory for swapped KV blocks: a copy of n blocks each way takes
// latency + n x block_bytes / bandwidth, in series with the iteration that needs it.
struct SwapLink {
  double block_bytes = 0;      // a KV block, over the replica's chips
  double bandwidth = 0;        // bytes/s, the replica's chips together
  double latency = 0;          // seconds, per copy
  double joules_per_byte = 0;
  int64_t blocks = 0;          // host space for swapped blocks
  IterationCostResult copy(int64_t n) const {
    if (n == 0) return {};
    const double bytes = double(n) * block_bytes;
    return {latency + bytes / bandwidth, bytes * joules_per_byte};
  }
};

struct SchedulerConfig {
  int64_t max_running = 256;         // sequences in the batch at once (vLLM max_num_seqs)
  int64_t max_batched_tokens = 8192;  // tokens an iteration computes (max_num_batched_tokens)
  bool chunked_prefill = true;       // prompts split over iterations to fit the token budget
  int64_t block_tokens = 16;         // tokens per KV-cache block
  int64_t blocks = 0;                // KV-cache blocks of the replica (from the HBM left free)
  // Positions a sequence may reach (the model's): a longer request is rejected on arrival, as
  // engines refuse prompts beyond their max_model_len. 0: no limit.
  int64_t max_context = 0;
  // Prefix caching (vLLM's automatic prefix caching): a request's shared prefix
  // (Request::prefix_group, prefix_tokens) in full blocks another request of its group computed
  // is reused, not computed again. Cached blocks no running sequence uses stay until the space
  // is needed (least recently used first).
  bool prefix_caching = true;
  // Preemption frees a sequence's blocks: recompute drops its KV cache (its prompt and output
  // are prefilled again later); swap copies it to host memory over `swap` and back when it is
  // readmitted, falling back to recompute while the host space is full.
  enum class Preemption { Recompute, Swap };
  Preemption preemption = Preemption::Recompute;
  SwapLink swap;
  // A decode pool of disaggregated serving: every request arrives with its prompt's KV cache
  // (moved from a prefill replica) and its first token, and only decodes.
  bool arrives_prefilled = false;
};

// What happened to one request. Times in seconds from the start of the traffic.
struct RequestResult {
  int64_t id = 0;
  double arrival = 0;
  double scheduled = -1;    // first iteration that computed any of it
  double first_token = -1;  // end of the iteration that finished its prompt
  double finished = -1;     // end of the iteration that produced its last token
  int64_t prompt_tokens = 0, output_tokens = 0;
  int64_t preemptions = 0;
  int64_t swaps = 0;          // of its preemptions, those swapped to host memory
  int64_t cached_tokens = 0;  // prompt tokens found in the prefix cache, not computed
  bool rejected = false;  // longer than max_context: never served
  double ttft() const { return first_token - arrival; }
  double tpot() const { return output_tokens > 1 ? (finished - first_token) / double(output_tokens - 1) : 0.0; }
  double latency() const { return finished - arrival; }
  double queueing() const { return scheduled - arrival; }
};

// One iteration, for timelines: when, how long, what it held and the state it left.
struct IterationRecord {
  double start = 0, seconds = 0, joules = 0;
  int64_t prefill_tokens = 0, decode_tokens = 0, sequences = 0;
  int64_t waiting = 0;      // requests arrived and not running after it
  int64_t blocks_used = 0;  // KV-cache blocks held after it
  int64_t preempted = 0;    // sequences preempted to make room for it
  int64_t swapped_out = 0, swapped_in = 0;  // KV blocks copied to and from host memory for it
};

struct ServeResult {
  std::vector<RequestResult> requests;  // in the order given
  std::vector<IterationRecord> iterations;
  double seconds = 0;  // end of the last iteration
  double joules = 0;   // of the iterations (idle time is the caller's to price)
};

// Replays `requests` (sorted by arrival) on one replica. A request whose prompt and output
// cannot fit the whole KV cache is an error naming it. `progress` (may be empty) is called
// with the requests finished so far.
ServeResult serve(const std::vector<workloads::Request>& requests, const SchedulerConfig& config,
                  IterationCost& cost, const std::function<void(int64_t)>& progress = {});

}  // namespace tessera::sim::serving
