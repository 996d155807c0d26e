// Request traffic for serving: requests read from production traces (the Azure LLM inference
// traces' schema: TIMESTAMP,ContextTokens,GeneratedTokens) or generated, and the ways a user
// replays them (a window of the trace, time or rate scaled). Everything here is deterministic:
// the same inputs and seed give the same requests on every machine (the random variates are
// computed here from a specified generator, not by the standard library's distributions).
// Depends on nothing of ours.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace tessera::workloads {

struct Request {
  int64_t id = 0;             // its position in the trace (or in generation order)
  double arrival = 0;         // seconds from the start of the traffic
  int64_t prompt_tokens = 0;  // >= 1
  int64_t output_tokens = 0;  // >= 1
  // A prompt that begins with a prefix other requests share (a system prompt, a document): the
  // first `prefix_tokens` tokens of group `prefix_group`'s prefix; -1: none (the traces carry
  // no text, so this comes from a sharing model: assign_prefixes).
  int64_t prefix_group = -1;
  int64_t prefix_tokens = 0;
};

// Reads a CSV trace with (at least) the columns TIMESTAMP, ContextTokens and GeneratedTokens, in
// any order. TIMESTAMP is a date and time ("2023-11-16 18:17:03.9799600") or a number of
// seconds; arrivals are taken relative to the first request. Errors name the file and line: a
// missing column, a field that is not a number or a time, times that go backwards, token counts
// below 1, a file without requests.
std::vector<Request> read_trace(const std::string& path);

// The requests arriving in [from, from + duration) seconds, with arrivals rebased to start at 0
// and ids kept.
std::vector<Request> window(const std::vector<Request>& requests, double from,
                            double duration = std::numeric_limits<double>::infinity());

// Arrival times multiplied by `factor` (> 0): 2 plays the trace at half its rate.
std::vector<Request> scale_time(const std::vector<Request>& requests, double factor);
// The trace played at `factor` (> 0) times its request rate: arrival times divided by it.
std::vector<Request> scale_rate(const std::vector<Request>& requests, double factor);

// A length distribution: a fixed value, uniform integers in [lo, hi], a log-normal with the
// given median and sigma (of the log) clamped to [lo, hi], or resampled from a trace's lengths.
struct Lengths {
  enum class Kind { Fixed, Uniform, LogNormal, Resample };
  Kind kind = Kind::Fixed;
  int64_t value = 0;             // Fixed
  int64_t lo = 1, hi = 1;        // Uniform; LogNormal's clamp
  double median = 0, sigma = 0;  // LogNormal
  std::vector<int64_t> pool;     // Resample: drawn uniformly from these
};

// Synthetic traffic: `count` requests (or as many as arrive within `duration` seconds, when
// count is 0) at `rate` requests per second. Poisson arrivals, or bursty ones: gamma-distributed
// gaps with coefficient of variation `cv` (cv = 1 is Poisson; above 1, bursts and lulls).
struct Synthetic {
  enum class Arrivals { Poisson, Gamma };
  Arrivals arrivals = Arrivals::Poisson;
  double rate = 1.0;
  double cv = 1.0;  // Gamma only
  int64_t count = 0;
  double duration = 0;
  Lengths prompt, output;
  uint64_t seed = 0;
};

std::vector<Request> synthesize(const Synthetic& s);

// Parses "rate=2.5,prompt=512,output=lognormal:200:0.8,arrivals=gamma,cv=2,count=1000,seed=7"
// (the CLI's --synthetic): prompt and output are N, uniform:LO:HI, lognormal:MEDIAN:SIGMA[:LO:HI]
// or trace (resampled from `trace`, which must then be non-empty). Errors name the key.
Synthetic parse_synthetic(const std::string& spec, const std::vector<Request>& trace = {});

// A prompt-sharing model: each request (of a share `requests` of them, drawn with `seed`)
// begins with the first `fraction` of its prompt taken from one of `groups` shared prefixes,
// drawn uniformly. Requests of a group with prefixes of different lengths share the shorter.
struct PrefixSharing {
  double fraction = 0;  // of each prompt, in [0, 1]
  int64_t groups = 1;
  double requests = 1.0;  // share of the requests that have a shared prefix, in [0, 1]
  uint64_t seed = 0;
};
std::vector<Request> assign_prefixes(std::vector<Request> requests, const PrefixSharing& p);
// Parses "fraction=0.5,groups=8[,requests=0.9][,seed=1]" (the CLI's --prefix-sharing).
PrefixSharing parse_prefix_sharing(const std::string& spec);

}  // namespace tessera::workloads
