#include "sim/serving/metrics.hpp"

#include "arch/quantity.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string_view>

namespace tessera::sim::serving {

Slo parse_slo(const std::string& spec) {
  Slo s;
  std::string_view rest = spec;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const size_t eq = item.find('=');
    const std::string key(item.substr(0, eq));
    if (eq == std::string_view::npos) throw std::runtime_error(fmt::format("--slo {}: expected KEY=TIME", key));
    const std::string_view value = item.substr(eq + 1);
    double x = 0;
    try {
      x = arch::parse_quantity(value, arch::Dim::Time);
    } catch (const arch::QuantityError& e) {
      throw std::runtime_error(fmt::format("--slo {}: {}", key, e.what()));
    }
    if (!(x > 0)) throw std::runtime_error(fmt::format("--slo {}: '{}' is not a time above 0", key, value));
    if (key == "ttft") s.ttft = x;
    else if (key == "tpot") s.tpot = x;
    else throw std::runtime_error(fmt::format("--slo {}: unknown target (ttft, tpot)", key));
  }
  return s;
}

Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    const double pos = q * double(v.size() - 1);
    const size_t lo = size_t(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
  };
  p.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  p.p50 = at(0.50), p.p90 = at(0.90), p.p99 = at(0.99);
  return p;
}

ServeMetrics summarize(const ServeResult& r, const SchedulerConfig& config, const Slo& slo, double idle_watts,
                       int64_t replicas) {
  ServeMetrics m;
  m.requests = int64_t(r.requests.size());
  if (r.requests.empty()) return m;
  std::vector<double> ttft, tpot, latency, queueing;
  int64_t output = 0, prompt = 0, met = 0, met_ttft = 0, met_tpot = 0;
  double first = r.requests.front().arrival, last = 0;
  for (const RequestResult& x : r.requests) {
    if (x.rejected) {
      ++m.rejected;
      continue;
    }
    ttft.push_back(x.ttft());
    if (x.output_tokens > 1) tpot.push_back(x.tpot());
    latency.push_back(x.latency());
    queueing.push_back(x.queueing());
    output += x.output_tokens, prompt += x.prompt_tokens;
    m.preemptions += x.preemptions, m.swaps += x.swaps, m.cached_tokens += x.cached_tokens;
    met_ttft += x.ttft() <= slo.ttft, met_tpot += x.tpot() <= slo.tpot;
    if (x.ttft() <= slo.ttft && x.tpot() <= slo.tpot) ++met;
    first = std::min(first, x.arrival), last = std::max(last, x.finished);
  }
  m.seconds = last - first;
  const double span = m.seconds > 0 ? m.seconds : 1.0;
  m.requests_per_s = double(m.requests - m.rejected) / span;
  m.output_tokens_per_s = double(output) / span;
  m.tokens_per_s = double(output + prompt) / span;
  m.ttft = percentiles(ttft), m.tpot = percentiles(tpot), m.latency = percentiles(latency);
  m.queueing = percentiles(queueing);
  m.prompt_tokens = prompt;
  m.slo_attainment = double(met) / double(m.requests);
  m.ttft_attainment = double(met_ttft) / double(m.requests), m.tpot_attainment = double(met_tpot) / double(m.requests);
  m.goodput = double(met) / span;
  double weighted = 0;
  for (const IterationRecord& it : r.iterations) {
    m.busy_seconds += it.seconds;
    const double occupancy = double(it.blocks_used) / double(config.blocks);
    weighted += occupancy * it.seconds;
    m.kv_occupancy_peak = std::max(m.kv_occupancy_peak, occupancy);
  }
  m.kv_occupancy_mean = m.busy_seconds > 0 ? weighted / m.busy_seconds : 0.0;
  m.joules = r.joules + idle_watts * std::max(0.0, double(replicas) * m.seconds - m.busy_seconds);
  m.joules_per_output_token = output > 0 ? m.joules / double(output) : 0.0;
  return m;
}

}  // namespace tessera::sim::serving
