#include "tools/api/mapping.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "arch/derived.hpp"
#include "arch/network.hpp"

namespace tessera::api {

int64_t microbatches(int64_t batch, int64_t pp) {
  for (int64_t m = std::min(batch, pp); m > 1; --m) {
    if (batch % m == 0) return m;
  }
  return 1;
}

double pipeline_seconds(const std::vector<double>& stage, const std::vector<double>& transfer, int64_t microbatches,
                        compiler::Phase phase) {
  if (stage.empty() || transfer.size() + 1 != stage.size() || microbatches < 1) {
    throw std::logic_error("a pipeline needs a transfer between each two of its stages");
  }
  if (phase == compiler::Phase::Decode) {
    double trip = 0, busiest = 0;
    for (double t : stage) trip += t, busiest = std::max(busiest, t);
    for (double c : transfer) trip += c;
    return std::max(trip, double(microbatches) * busiest);
  }
  std::vector<double> arrive(size_t(microbatches), 0.0);  // into the current stage, per microbatch
  double done = 0;
  for (size_t s = 0; s < stage.size(); ++s) {
    double free = 0, link = 0;  // when the stage, and the link after it, are next free
    for (double& a : arrive) {
      done = free = std::max(a, free) + stage[s];
      if (s + 1 < stage.size()) a = link = std::max(done, link) + transfer[s];
    }
  }
  return done;
}

namespace {

// An all-reduce of `bytes` over a scale-up domain of n chips joined as `sys` says, on the formula
// of the algorithm the compiler picks there (kernels/collective.hpp), without the adds.
double domain_all_reduce(const arch::SystemParams& sys, int64_t n, double bytes) {
  if (n < 2) return 0;
  const double latency = sys.link.latency, per_link = sys.link.bandwidth;
  if (sys.topology == arch::Topology::Switch || sys.topology == arch::Topology::FullyConnected) {
    return 2 * ((double(n) - 1) / double(n) * bytes / (double(sys.link.count) * per_link) + latency);
  }
  const double bundle = double(sys.link.count / arch::link_neighbours(sys.topology, n)) * per_link;
  double t = 0;
  for (int d : arch::torus_dims(sys.topology, n)) {  // a ring per dimension, on what the one before left
    t += 2.0 * (d - 1) / d * bytes / bundle + 2.0 * (d - 1) * latency;
    bytes /= d;
  }
  return t;
}

// Over tp chips of the system: within a domain, or across domains (hierarchical: within each,
// then the domain's part directly across the scale-out switch).
double all_reduce_seconds(const arch::SystemParams& sys, int64_t tp, double bytes) {
  const int64_t domain = std::min(sys.domain(), tp);
  double t = domain_all_reduce(sys, domain, bytes);
  if (tp > domain) {
    const double m = double(tp / domain), part = bytes / double(domain);
    t += 2 * ((m - 1) / m * part / (double(sys.scale_out.count) * sys.scale_out.bandwidth) + sys.scale_out.latency);
  }
  return t;
}

// E[max of `count` independent Binomial(n, q)] = sum over k >= 1 of P(max >= k).
double expected_max_binomial(int64_t n, double q, int64_t count) {
  std::vector<double> pmf(size_t(n + 1));
  for (int64_t k = 0; k <= n; ++k) {
    pmf[size_t(k)] = std::exp(std::lgamma(double(n + 1)) - std::lgamma(double(k + 1)) - std::lgamma(double(n - k + 1))) *
                     std::pow(q, double(k)) * std::pow(1.0 - q, double(n - k));
  }
  double below = 0.0, expected = 0.0;  // below: P(one < k)
  for (int64_t k = 1; k <= n; ++k) {
    below += pmf[size_t(k - 1)];
    expected += 1.0 - std::pow(below, double(count));
  }
  return expected;
}

}  // namespace

double estimate_seconds(const arch::Arch& a, const compiler::ModelConfig& m, const compiler::Workload& w,
                        const Mapping& mapping, double dtype_bytes) {
  const arch::Derived d = arch::derive(a);
  const double flops_peak = d.peak_flops.count("bf16") ? d.peak_flops.at("bf16") : d.peak_flops.begin()->second;
  // A microbatch's tokens, the cache positions its sequences hold after the step and the
  // (query, key) pairs its attention scores.
  const std::vector<compiler::SequenceStep> steps = w.steps();
  const int64_t mb = microbatches(int64_t(steps.size()), mapping.pp);
  double tokens = 0, positions = 0, pairs = 0;
  for (const compiler::SequenceStep& s : steps) {
    tokens += double(s.tokens) / double(mb), positions += double(s.past + s.tokens) / double(mb);
    pairs += double(s.tokens) * double(s.past + s.tokens) / double(mb);
  }
  const double tp = double(mapping.tp);
  const double head = double(m.vocab * m.hidden);
  const double per_layer = (double(m.parameters()) - head * (m.tie_embeddings ? 1 : 2)) / double(m.layers);
  // MoE: a token runs k of the E experts; an expert's weights are read when any token chose it
  // (uniform routing).
  const double experts = double(m.experts) * 3.0 * double(m.hidden * m.intermediate);
  const double routed = m.experts > 0 ? double(m.experts_per_token) / double(m.experts) : 1.0;
  const double active = 1.0 - std::pow(1.0 - routed, tokens);
  const double per_layer_flops = per_layer - experts * (1.0 - routed);
  // Expert parallelism: a chip reads the chosen experts of its group, and the step waits for
  // the group with the most: E[max over ep groups of Binomial(E / ep, active)] of E x active.
  const double busiest = m.experts > 0 ? expected_max_binomial(m.experts / mapping.ep, active, mapping.ep) * double(mapping.ep) /
                                             (double(m.experts) * active)
                                       : 1.0;
  const double per_layer_read = per_layer - experts + experts * active * busiest;
  const double kv_per_token = 2.0 * double(m.kv_heads * m.head_dim) * 2.0;  // keys and values, bf16
  const double kv_split = std::min(tp, double(m.kv_heads));                   // more chips replicate heads
  const double bytes = tokens * double(m.hidden) * 2.0;  // a microbatch's hidden state, bf16
  const double all_reduce = all_reduce_seconds(a.system, mapping.tp, bytes);
  std::vector<double> stage;
  for (int64_t s = 0; s < mapping.pp; ++s) {
    const compiler::PipelineStage ps{mapping.pp, s};
    const auto [first, end] = ps.layers(m.layers);
    const double layers = double(end - first);
    const double weights = (layers * per_layer_read + (ps.last() ? head : 0)) * dtype_bytes / tp;
    const double kv = layers * kv_per_token * positions / kv_split;
    const double flops = 2 * tokens * (layers * per_layer_flops + (ps.last() ? head : 0)) / tp +
                         4 * pairs * layers * double(m.heads * m.head_dim) / tp;
    stage.push_back(std::max(flops / flops_peak, (weights + kv) / d.hbm_bandwidth) + layers * 2 * all_reduce);
  }
  const double hop = bytes / (a.system.link.bandwidth > 0 ? a.system.link.bandwidth : 1) + a.system.link.latency;
  return pipeline_seconds(stage, std::vector<double>(size_t(mapping.pp - 1), hop), mb, w.phase);
}

std::vector<Candidate> candidate_mappings(const arch::Arch& a, const compiler::ModelConfig& m,
                                          const compiler::Workload& w, double dtype_bytes) {
  const int64_t chips = a.system.chips;
  const arch::ParallelismParams& given = a.system.parallelism;
  std::vector<Candidate> out;
  std::vector<std::string> why;
  for (int64_t tp = 1; tp <= chips; ++tp) {
    if (chips % tp != 0) continue;
    const int64_t pp = chips / tp;
    if ((given.tp > 0 && tp != given.tp) || (given.pp > 0 && pp != given.pp)) continue;
    // A tp the system fixes is left to the compiler, whose refusal names the chip counts that work.
    if (const std::string p = compiler::tensor_parallel_problem(m, tp); !p.empty() && given.tp == 0) {
      why.push_back(fmt::format("tp {}: {}", tp, p));
      continue;
    }
    if (given.ep > 0 && tp % given.ep != 0) {
      why.push_back(fmt::format("tp {}: not a multiple of ep {}", tp, given.ep));
      continue;
    }
    if (pp > m.layers) {
      why.push_back(fmt::format("pp {}: more stages than {}'s {} layers", pp, m.name, m.layers));
      continue;
    }
    for (int64_t ep = 1; ep <= tp; ++ep) {
      const bool fits = tp % ep == 0 && (ep == 1 || (m.experts > 0 && m.experts % ep == 0));
      if (given.ep > 0 ? ep != given.ep : !fits) continue;
      const Mapping mapping{tp, pp, ep};
      out.push_back({mapping, estimate_seconds(a, m, w, mapping, dtype_bytes)});
    }
  }
  if (out.empty()) {
    std::string reasons;
    for (const std::string& r : why) reasons += (reasons.empty() ? "" : "; ") + r;
    throw std::runtime_error(fmt::format("{} cannot be mapped onto {} chips: {}", m.name, chips, reasons));
  }
  std::stable_sort(out.begin(), out.end(), [](const Candidate& x, const Candidate& y) { return x.estimate < y.estimate; });
  const double best = out.front().estimate;
  std::erase_if(out, [&](const Candidate& c) { return c.estimate > kSearchSlack * best; });
  if (out.size() > kSearchMax) out.resize(kSearchMax);
  return out;
}

}  // namespace tessera::api
