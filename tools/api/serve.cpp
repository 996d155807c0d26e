#include "tools/api/serve.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <stdexcept>

#include "arch/derived.hpp"
#include "compiler/hf_frontend.hpp"
#include "sim/energy.hpp"
#include "sim/serving/interpolated_cost.hpp"
#include "sim/topology.hpp"
#include "tools/api/api.hpp"

namespace tessera::api {
namespace {

using sim::serving::IterationCostResult;
using sim::serving::SequenceWork;

// Operators after the last layer, which see one row per sequence.
bool head_op(const Report::Row& r) {
  return r.share.name == "final_norm" || r.share.name == "lm_head" || r.share.name == "last_tokens";
}

// The parts of an iteration's cost (sim/serving/interpolated_cost.hpp), simulated:
//   decodes, chunk: the model's attention operator alone on one chip (its share of the heads
//     under tensor parallelism), times the layers; energy times the chips.
//   body(T), head(n): whole-model steps with no past: up to `head_limit` tokens T sequences of
//     one token (which give both), above it sequences of 16. The body is every operator but the
//     head, less the attention parts of that step's own (short) attention: what is left is the
//     rest and what attention costs in a model beyond its cost alone (on a chip that prefetches
//     a GEMM's weights during the operator before it, the next projection's stream).
class SimulatedParts : public sim::serving::PartCosts {
 public:
  SimulatedParts(const arch::Arch& system, const compiler::ModelConfig& cfg, const ServeSpec& spec,
                 const RunOptions& options, int64_t head_limit)
      : system_(system), chip_(system), cfg_(cfg), spec_(spec), options_(options), head_limit_(head_limit) {
    chip_.system.chips = 1;
    chip_.system.parallelism = {1, 1, 1};
    options_.trace.clear();
    tp_ = system.system.chips;
  }

  IterationCostResult body(int64_t tokens) override {
    const IterationCostResult r = step(tokens).body;
    const sim::serving::AttentionPart own = attention(step_sequences(tokens));
    return {r.seconds - own.seconds, r.joules - own.joules};
  }

  IterationCostResult head(int64_t sequences) override { return step(sequences).head; }

  // count - 1 decodes at one context and one at the longest, `mean` on average.
  sim::serving::AttentionPart decodes(int64_t count, int64_t mean, int64_t longest) override {
    const int64_t rest = count > 1 ? std::max<int64_t>(0, (count * mean - longest + (count - 1) / 2) / (count - 1)) : 0;
    std::vector<compiler::SequenceStep> steps(size_t(count - 1), {rest, 1});
    steps.push_back({longest, 1});
    return attention(std::move(steps));
  }

  sim::serving::AttentionPart chunk(int64_t tokens, int64_t context) override { return attention({{context, tokens}}); }

  // The sequences of the whole-model step of `tokens`.
  std::vector<compiler::SequenceStep> step_sequences(int64_t tokens) const {
    if (tokens <= head_limit_) return std::vector<compiler::SequenceStep>(size_t(tokens), {0, 1});
    std::vector<compiler::SequenceStep> s(size_t(tokens / 16), {0, 16});
    if (tokens % 16) s.push_back({0, tokens % 16});
    return s;
  }

  // What the whole-model step of `tokens` comes to: its operators but the head, the head's, and
  // the HBM a chip uses.
  struct Step {
    IterationCostResult body, head;
    double hbm_used = 0;
  };
  const Step& step(int64_t tokens) {
    const auto it = steps_.find(tokens);
    if (it != steps_.end()) return it->second;
    RunSpec s = base();
    s.phase = "mixed";
    s.sequences = step_sequences(tokens);
    ++runs_;
    const Report r = run(system_, s, options_);
    Step out;
    for (const Report::Row& row : r.ops) {
      IterationCostResult& part = head_op(row) ? out.head : out.body;
      part.seconds += row.share.seconds, part.joules += row.energy.total();
    }
    out.hbm_used = r.utilization.at("capacity") * arch::derive(system_).hbm_capacity;
    return steps_.emplace(tokens, out).first->second;
  }

  int64_t runs() const { return runs_; }
  int64_t tp() const { return tp_; }

 private:
  RunSpec base() const {
    RunSpec s;
    s.model = spec_.model, s.dtype = spec_.dtype, s.kv_dtype = spec_.kv_dtype;
    return s;
  }

  // The tiles busy: those whose arrays did any work.
  sim::serving::AttentionPart attention(std::vector<compiler::SequenceStep> steps) {
    RunSpec s;
    s.op = "attention";
    s.shape = {cfg_.heads / tp_, cfg_.kv_heads >= tp_ ? cfg_.kv_heads / tp_ : 1, cfg_.head_dim};
    s.kv_dtype = spec_.kv_dtype;
    s.phase = "mixed";
    s.sequences = std::move(steps);
    ++runs_;
    const Report r = run(chip_, s, options_);
    const double layers = double(cfg_.layers);
    int64_t busy = 0;
    for (const sim::Stat& st : r.stats.all()) {
      if (st.value > 0 && st.name.ends_with(".sa.busy_ps")) ++busy;
    }
    return {r.seconds * layers, r.energy.dynamic() * layers * double(tp_),
            std::clamp(double(busy) / double(chip_.tiles()), 1.0 / double(chip_.tiles()), 1.0)};
  }

  const arch::Arch& system_;
  arch::Arch chip_;
  const compiler::ModelConfig& cfg_;
  const ServeSpec& spec_;
  RunOptions options_;
  int64_t head_limit_, tp_ = 1, runs_ = 0;
  std::map<int64_t, Step> steps_;
};

// Every iteration simulated whole, as the ragged step it is.
class WholeIterations : public sim::serving::IterationCost {
 public:
  WholeIterations(const arch::Arch& system, const ServeSpec& spec, const RunOptions& options)
      : system_(system), spec_(spec), options_(options) {
    options_.trace.clear();
  }
  IterationCostResult cost(const std::vector<SequenceWork>& batch) override {
    if (batch.empty()) return {};
    RunSpec s;
    s.model = spec_.model, s.dtype = spec_.dtype, s.kv_dtype = spec_.kv_dtype, s.phase = "mixed";
    for (const SequenceWork& w : batch) s.sequences.push_back({w.context, w.tokens});
    ++runs_;
    const Report r = run(system_, s, options_);
    return {r.seconds, r.energy.total()};
  }
  int64_t runs() const { return runs_; }

 private:
  const arch::Arch& system_;
  const ServeSpec& spec_;
  RunOptions options_;
  int64_t runs_ = 0;
};

}  // namespace

std::vector<workloads::Request> load_traffic(const Traffic& t) {
  if (t.requests.empty() && t.synthetic.empty()) throw std::runtime_error("serve: give a trace or synthetic traffic");
  if (!(t.rate_scale > 0) || !std::isfinite(t.rate_scale)) {
    throw std::runtime_error(fmt::format("serve: the rate scale must be a number above 0, got {}", t.rate_scale));
  }
  if (!(t.from >= 0) || !(t.duration > 0)) {
    throw std::runtime_error(fmt::format("serve: a window from {} s for {} s (from 0 or later, for a time above 0)",
                                         t.from, t.duration));
  }
  std::vector<workloads::Request> trace;
  if (!t.requests.empty()) trace = workloads::read_trace(t.requests);
  std::vector<workloads::Request> r =
      t.synthetic.empty() ? trace : workloads::synthesize(workloads::parse_synthetic(t.synthetic, trace));
  r = workloads::window(r, t.from, t.duration);
  if (t.rate_scale != 1.0) r = workloads::scale_rate(r, t.rate_scale);
  if (!t.prefix_sharing.empty()) r = workloads::assign_prefixes(std::move(r), workloads::parse_prefix_sharing(t.prefix_sharing));
  if (r.empty()) throw std::runtime_error(fmt::format("serve: no requests arrive in the window from {} s for {} s", t.from, t.duration));
  return r;
}

struct ReplicaCost::Impl {
  Impl(const arch::Arch& sys, const ServeSpec& sp, const RunOptions& options)
      : system(sys), spec(sp), cfg(compiler::load_model_config(sp.model)),
        parts(system, cfg, spec, options, spec.scheduler.max_running),
        grid(parts, sim::serving::Grid{spec.grid_per_octave},
             sim::EnergyPrices::from(system).static_power * double(system.system.chips)),
        whole(system, spec, options) {
    const int64_t chips = system.system.chips, kv_heads = cfg.kv_heads >= chips ? cfg.kv_heads / chips : 1;
    kv_per_token_chip = 2.0 * double(cfg.layers * kv_heads * cfg.head_dim) *
                        double(isa::dtype_bytes(parse_dtype("kv_dtype", spec.kv_dtype), 1));
  }
  const arch::Arch system;
  const ServeSpec spec;
  const compiler::ModelConfig cfg;
  SimulatedParts parts;
  sim::serving::InterpolatedCost grid;
  WholeIterations whole;
  double kv_per_token_chip = 0;
};

ReplicaCost::ReplicaCost(const arch::Arch& system, const ServeSpec& spec, const RunOptions& options)
    : impl_(std::make_unique<Impl>(system, spec, options)) {}
ReplicaCost::~ReplicaCost() = default;

IterationCostResult ReplicaCost::cost(const std::vector<SequenceWork>& batch) {
  return impl_->spec.exact ? exact_cost(batch) : grid_cost(batch);
}
IterationCostResult ReplicaCost::grid_cost(const std::vector<SequenceWork>& batch) { return impl_->grid.cost(batch); }
IterationCostResult ReplicaCost::exact_cost(const std::vector<SequenceWork>& batch) { return impl_->whole.cost(batch); }
int64_t ReplicaCost::simulations() const { return impl_->parts.runs() + impl_->whole.runs(); }
double ReplicaCost::kv_bytes_per_token() const { return impl_->kv_per_token_chip * double(impl_->system.system.chips); }

int64_t ReplicaCost::kv_blocks(int64_t tokens, int64_t block_tokens) {
  // The whole-model step at the grid point at or above `tokens`, less its own small KV cache.
  const int64_t largest = impl_->grid.bracket_tokens(tokens).second;
  const double capacity = arch::derive(impl_->system).hbm_capacity;
  const double used = impl_->parts.step(largest).hbm_used - double(largest) * impl_->kv_per_token_chip;
  const int64_t blocks = int64_t((capacity - used) / (impl_->kv_per_token_chip * double(block_tokens)));
  if (blocks < 1) {
    throw std::runtime_error(fmt::format(
        "serve: {} leaves no HBM for a KV cache on {}: weights and activations take {:.1f} of {:.1f} GB a chip",
        impl_->cfg.name, impl_->system.name, used / 1e9, capacity / 1e9));
  }
  return blocks;
}

KvRoute kv_route(const arch::Arch& a, int64_t tp) {
  // The replica and the next one: in the system when it holds both, else in as many more of
  // its scale-up domains as they take.
  arch::SystemParams pair = a.system;
  const int64_t domain = a.system.domain();
  pair.chips = std::max(a.system.chips, 2 * tp);
  if (a.system.scale_out.domain > 0) pair.chips = (pair.chips + domain - 1) / domain * domain;
  const std::unique_ptr<sim::Topology> topology = sim::make_topology(pair);
  KvRoute r;
  for (int64_t i = 0; i < tp; ++i) {
    double latency = 0, bandwidth = std::numeric_limits<double>::infinity(), pj = 0;
    for (const int l : topology->route(int(i), int(tp + i))) {
      const sim::LinkSpec& link = topology->links()[size_t(l)];
      latency += link.latency, bandwidth = std::min(bandwidth, link.bandwidth);
      pj += link.scale_out ? a.system.scale_out.energy_per_bit : a.system.link.energy_per_bit;
    }
    r.latency.push_back(latency), r.bandwidth.push_back(bandwidth);
    r.joules_per_byte += 8.0 * pj;
  }
  return r;
}

sim::serving::IterationCostResult KvRoute::cost(double bytes_per_chip) const {
  sim::serving::IterationCostResult out;
  for (size_t i = 0; i < latency.size(); ++i) out.seconds = std::max(out.seconds, latency[i] + bytes_per_chip / bandwidth[i]);
  out.joules = bytes_per_chip * joules_per_byte;
  return out;
}

double usd_per_hour(const arch::Arch& a, double chips, double avg_power_w, const std::string& pricing) {
  if (pricing == "cloud") return a.cost.cloud_price ? *a.cost.cloud_price * chips : std::nan("");
  return arch::derive(a).capex_per_chip * chips / (a.cost.amortization_years * arch::kHoursPerYear) +
         avg_power_w * a.cost.pue * 3600.0 * a.cost.electricity_price;
}

struct Deployment::Impl {
  Impl(const arch::Arch& a, int64_t chips, const ServeSpec& sp, const RunOptions& options)
      : system(a), replica(replica_arch(a, chips, sp)), spec(sp), pricing(options.pricing), cost(replica, spec, options) {
    if (pricing == "cloud" && !a.cost.cloud_price) throw std::runtime_error(a.name + " has no cost.cloud_price for cloud pricing");
    tp = replica.system.chips;
    sim::serving::SchedulerConfig& sc = config;
    sc = spec.scheduler;
    sc.max_context = compiler::load_model_config(spec.model).max_positions;
    if (sc.max_running < 1 || sc.max_batched_tokens < 1 || sc.block_tokens < 1 || sc.blocks < 0) {
      throw std::runtime_error("serve: max running sequences, batched tokens and block tokens must be at least 1");
    }
    if (sc.blocks == 0) sc.blocks = cost.kv_blocks(std::max(sc.max_batched_tokens, sc.max_running), sc.block_tokens);
    kv_per_token_chip = cost.kv_bytes_per_token() / double(tp);
    const arch::HostParams& host = a.system.host;
    if (spec.preemption == "swap") {
      if (!(host.bandwidth > 0 && host.memory > 0)) {
        throw std::runtime_error(fmt::format("serve: swap preemption on {} needs system.host.bandwidth and system.host.memory",
                                             a.name));
      }
      sc.preemption = sim::serving::SchedulerConfig::Preemption::Swap;
      // Each chip copies its share of a block over its own host link.
      sc.swap.block_bytes = cost.kv_bytes_per_token() * double(sc.block_tokens);
      sc.swap.bandwidth = host.bandwidth * double(tp);
      sc.swap.latency = host.latency;
      sc.swap.joules_per_byte = host.energy_per_bit * 8.0;
      sc.swap.blocks = int64_t(host.memory * double(tp) / sc.swap.block_bytes);
    } else if (spec.preemption != "recompute") {
      throw std::runtime_error(fmt::format("serve: preemption '{}' is not recompute or swap", spec.preemption));
    }
    idle_watts = sim::EnergyPrices::from(a).static_power * double(tp);
    kv_path = kv_route(a, tp);
  }
  // The replica: tp chips of the system, tensor parallel (a ragged step runs on no pipeline).
  static arch::Arch replica_arch(const arch::Arch& a, int64_t chips, const ServeSpec& spec) {
    const compiler::ModelConfig cfg = compiler::load_model_config(spec.model);
    const int64_t tp = chips > 0 ? chips : a.system.chips;
    if (tp > a.system.chips || a.system.chips % tp != 0) {
      throw std::runtime_error(fmt::format("serve: a replica of {} chips does not divide {}'s {}", tp, a.name, a.system.chips));
    }
    if (const std::string why = compiler::tensor_parallel_problem(cfg, tp); !why.empty()) {
      throw std::runtime_error(fmt::format("serve: {} does not split over {} chips of {}: {}", cfg.name, tp, a.name, why));
    }
    arch::Arch r = a;
    r.system.chips = tp;
    r.system.parallelism.tp = tp, r.system.parallelism.pp = 1;
    r.system.parallelism.ep = std::max<int64_t>(1, a.system.parallelism.ep);
    if (r.system.domain() == tp) r.system.scale_out.domain = 0;  // the replica is one domain
    return r;
  }
  const arch::Arch system, replica;
  const ServeSpec spec;
  const std::string pricing;
  ReplicaCost cost;
  sim::serving::SchedulerConfig config;
  int64_t tp = 1;
  double kv_per_token_chip = 0, idle_watts = 0;
  KvRoute kv_path;  // to the next replica, for disaggregated pools
};

Deployment::Deployment(const arch::Arch& a, int64_t tp, const ServeSpec& spec, const RunOptions& options)
    : impl_(std::make_unique<Impl>(a, tp, spec, options)) {}
Deployment::~Deployment() = default;
const arch::Arch& Deployment::system() const { return impl_->system; }
const arch::Arch& Deployment::replica() const { return impl_->replica; }
int64_t Deployment::tp() const { return impl_->tp; }
const sim::serving::SchedulerConfig& Deployment::config() const { return impl_->config; }
double Deployment::idle_watts() const { return impl_->idle_watts; }
ReplicaCost& Deployment::cost() { return impl_->cost; }
sim::serving::IterationCostResult Deployment::transfer(int64_t tokens) const {
  return impl_->kv_path.cost(double(tokens) * impl_->kv_per_token_chip);
}

ServeReport Deployment::serve(const std::vector<workloads::Request>& traffic, const sim::serving::Pools& pools,
                              const std::function<void(const ServeProgress&)>& progress) {
  const auto host_start = std::chrono::steady_clock::now();
  if (traffic.empty()) throw std::runtime_error("serve: no requests to replay");
  const ServeSpec& spec = impl_->spec;
  ServeReport rep;
  rep.system = impl_->system.name, rep.model = compiler::load_model_config(spec.model).name;
  rep.pools = pools, rep.replicas = pools.replicas(), rep.chips = impl_->tp, rep.tp = impl_->tp;
  rep.exact = spec.exact, rep.grid_per_octave = spec.grid_per_octave;
  rep.slo = spec.slo.empty() ? sim::serving::Slo{} : sim::serving::parse_slo(spec.slo);
  rep.scheduler = impl_->config;
  rep.kv_bytes_per_token = impl_->cost.kv_bytes_per_token();
  ReplicaCost& cost = impl_->cost;
  const int64_t before = cost.simulations();
  sim::serving::FleetResult f = sim::serving::serve_fleet(
      traffic, rep.scheduler, pools, cost, [this](int64_t tokens) { return transfer(tokens); },
      [&](int64_t finished) {
        if (progress) progress({finished, int64_t(traffic.size()), cost.simulations()});
      });
  rep.metrics = sim::serving::summarize(f.all, rep.scheduler, rep.slo, impl_->idle_watts, pools.replicas());
  rep.results = std::move(f.replicas);
  rep.requests = std::move(f.all.requests);
  rep.replica_of = std::move(f.replica_of);
  rep.transfer_seconds = f.transfer_seconds, rep.transfer_joules = f.transfer_joules;
  rep.simulations = cost.simulations() - before;

  // Cost of the replicas over the traffic's span.
  const sim::serving::ServeMetrics& m = rep.metrics;
  const double chips = double(impl_->tp * pools.replicas());
  rep.avg_power_w = m.seconds > 0 ? m.joules / m.seconds : 0.0;
  rep.utilization = m.seconds > 0 ? m.busy_seconds / (double(pools.replicas()) * m.seconds) : 0.0;
  rep.pricing = impl_->pricing;
  rep.usd_per_hour = usd_per_hour(impl_->system, chips, rep.avg_power_w, rep.pricing);
  const double usd = rep.usd_per_hour * m.seconds / 3600.0;
  if (m.tokens_per_s > 0) {
    rep.usd_per_million_tokens = usd / (m.tokens_per_s * m.seconds) * 1e6;
    rep.usd_per_million_output_tokens = usd / (m.output_tokens_per_s * m.seconds) * 1e6;
  }
  rep.host_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - host_start).count();
  return rep;
}

ServeReport serve(const arch::Arch& a, const std::vector<workloads::Request>& traffic, const ServeSpec& spec,
                  const RunOptions& options, const std::function<void(const ServeProgress&)>& progress) {
  const auto host_start = std::chrono::steady_clock::now();
  if (traffic.empty()) throw std::runtime_error("serve: no requests to replay");
  if (spec.model.empty()) throw std::runtime_error("serve: no model given");
  sim::serving::Pools pools{spec.replicas, 0, 0};
  if (spec.prefill_replicas > 0 || spec.decode_replicas > 0) {
    if (spec.prefill_replicas < 1 || spec.decode_replicas < 1) {
      throw std::runtime_error(fmt::format("serve: disaggregated pools need a prefill and a decode replica at least, got {} and {}",
                                           spec.prefill_replicas, spec.decode_replicas));
    }
    pools = {0, spec.prefill_replicas, spec.decode_replicas};
  } else if (spec.replicas < 1) {
    throw std::runtime_error(fmt::format("serve: replicas must be at least 1, got {}", spec.replicas));
  }
  Deployment d(a, spec.tp, spec, options);
  ServeReport rep = d.serve(traffic, pools, progress);
  rep.simulations = d.cost().simulations();
  rep.host_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - host_start).count();
  return rep;
}

nlohmann::json ServeReport::to_json(bool with_requests) const {
  using nlohmann::json;
  const sim::serving::ServeMetrics& m = metrics;
  auto pct = [](const sim::serving::Percentiles& p) {
    return json{{"mean", p.mean}, {"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}};
  };
  int64_t iterations = 0;
  for (const auto& r : results) iterations += int64_t(r.iterations.size());
  json j{{"system", system},
         {"model", model},
         {"replicas", replicas},
         {"pools", {{"colocated", pools.colocated}, {"prefill", pools.prefill}, {"decode", pools.decode}}},
         {"chips_per_replica", chips},
         {"tensor_parallel", tp},
         {"scheduler",
          {{"max_running", scheduler.max_running},
           {"max_batched_tokens", scheduler.max_batched_tokens},
           {"chunked_prefill", scheduler.chunked_prefill},
           {"block_tokens", scheduler.block_tokens},
           {"blocks", scheduler.blocks}}},
         {"kv_bytes_per_token", kv_bytes_per_token},
         {"slo", {{"ttft", slo.ttft}, {"tpot", slo.tpot}}},
         {"requests", m.requests},
         {"seconds", m.seconds},
         {"requests_per_s", m.requests_per_s},
         {"output_tokens_per_s", m.output_tokens_per_s},
         {"tokens_per_s", m.tokens_per_s},
         {"ttft", pct(m.ttft)},
         {"tpot", pct(m.tpot)},
         {"latency", pct(m.latency)},
         {"queueing", pct(m.queueing)},
         {"slo_attainment", m.slo_attainment},
         {"goodput", m.goodput},
         {"preemptions", m.preemptions},
         {"swaps", m.swaps},
         {"prompt_tokens", m.prompt_tokens},
         {"cached_prompt_tokens", m.cached_tokens},
         {"kv_transfer_seconds", transfer_seconds},
         {"kv_transfer_joules", transfer_joules},
         {"rejected", m.rejected},
         {"kv_occupancy_mean", m.kv_occupancy_mean},
         {"kv_occupancy_peak", m.kv_occupancy_peak},
         {"busy_seconds", m.busy_seconds},
         {"joules", m.joules},
         {"joules_per_output_token", m.joules_per_output_token},
         {"avg_power_w", avg_power_w},
         {"utilization", utilization},
         {"pricing", pricing},
         {"usd_per_hour", usd_per_hour},
         {"usd_per_million_tokens", usd_per_million_tokens},
         {"usd_per_million_output_tokens", usd_per_million_output_tokens},
         {"iterations", iterations},
         {"simulations", simulations},
         {"exact", exact},
         {"grid_per_octave", grid_per_octave},
         {"host_seconds", host_seconds}};
  // JSON has no infinity: a missing target is null.
  for (const char* k : {"ttft", "tpot"}) {
    if (!std::isfinite(j["slo"][k].get<double>())) j["slo"][k] = nullptr;
  }
  if (!with_requests) return j;
  json list = json::array();
  for (size_t i = 0; i < requests.size(); ++i) {
    const sim::serving::RequestResult& x = requests[i];
    const size_t rr = size_t(replica_of[i]);
    // A rejected request has no times (null).
    auto time = [&](double t) { return x.rejected ? json(nullptr) : json(t); };
    list.push_back({{"id", x.id},
                    {"replica", rr},
                    {"arrival", x.arrival},
                    {"prompt_tokens", x.prompt_tokens},
                    {"output_tokens", x.output_tokens},
                    {"scheduled", time(x.scheduled)},
                    {"first_token", time(x.first_token)},
                    {"finished", time(x.finished)},
                    {"ttft", time(x.ttft())},
                    {"tpot", time(x.tpot())},
                    {"latency", time(x.latency())},
                    {"queueing", time(x.queueing())},
                    {"preemptions", x.preemptions},
                    {"cached_tokens", x.cached_tokens},
                    {"rejected", x.rejected}});
  }
  j["request_results"] = std::move(list);
  return j;
}

void ServeReport::write_trace(std::ostream& out) const {
  // One event a line (an hour of traffic is a few hundred thousand iterations).
  auto us = [](double s) { return s * 1e6; };
  out << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  bool first = true;
  auto event = [&](const std::string& e) {
    out << (first ? "" : ",\n") << e;
    first = false;
  };
  for (size_t r = 0; r < results.size(); ++r) {
    event(fmt::format(R"({{"ph":"M","name":"process_name","pid":{},"args":{{"name":"replica {}"}}}})", r, r));
    event(fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":0,"args":{{"name":"iterations"}}}})", r));
    for (const sim::serving::IterationRecord& it : results[r].iterations) {
      event(fmt::format(
          R"({{"ph":"X","name":"iteration","pid":{},"tid":0,"ts":{:.3f},"dur":{:.3f},"args":{{"prefill_tokens":{},"decode_tokens":{},"sequences":{},"joules":{:.6g}}}}})",
          r, us(it.start), us(it.seconds), it.prefill_tokens, it.decode_tokens, it.sequences, it.joules));
      const double end = us(it.start + it.seconds);
      event(fmt::format(R"({{"ph":"C","name":"queue","pid":{},"ts":{:.3f},"args":{{"waiting":{}}}}})", r, end, it.waiting));
      event(fmt::format(R"({{"ph":"C","name":"kv_cache","pid":{},"ts":{:.3f},"args":{{"blocks_used":{}}}}})", r, end,
                        it.blocks_used));
      if (it.preempted > 0) {
        event(fmt::format(R"({{"ph":"i","name":"preempted {}","pid":{},"tid":0,"ts":{:.3f},"s":"t"}})", it.preempted, r, end));
      }
    }
  }
  out << "\n]}\n";
}

}  // namespace tessera::api
