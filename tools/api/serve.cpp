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

ServeReport serve(const arch::Arch& a, const std::vector<workloads::Request>& traffic, const ServeSpec& spec,
                  const RunOptions& options, const std::function<void(const ServeProgress&)>& progress) {
  const auto host_start = std::chrono::steady_clock::now();
  if (traffic.empty()) throw std::runtime_error("serve: no requests to replay");
  if (spec.replicas < 1) throw std::runtime_error(fmt::format("serve: replicas must be at least 1, got {}", spec.replicas));
  if (spec.model.empty()) throw std::runtime_error("serve: no model given");
  const compiler::ModelConfig cfg = compiler::load_model_config(spec.model);
  // A replica's chips split the model by tensor parallelism (a ragged step runs on no pipeline).
  arch::Arch system = a;
  const int64_t chips = a.system.chips;
  if (const std::string why = compiler::tensor_parallel_problem(cfg, chips); !why.empty()) {
    throw std::runtime_error(fmt::format("serve: a replica of {} splits {} over its {} chips: {}", a.name, cfg.name,
                                         chips, why));
  }
  system.system.parallelism.tp = chips, system.system.parallelism.pp = 1;
  system.system.parallelism.ep = std::max<int64_t>(1, a.system.parallelism.ep);

  ServeReport rep;
  rep.system = a.name, rep.model = cfg.name, rep.pricing = options.pricing;
  rep.replicas = spec.replicas, rep.chips = chips, rep.tp = chips;
  rep.exact = spec.exact, rep.grid_per_octave = spec.grid_per_octave;
  rep.slo = spec.slo.empty() ? sim::serving::Slo{} : sim::serving::parse_slo(spec.slo);
  rep.scheduler = spec.scheduler;
  sim::serving::SchedulerConfig& sc = rep.scheduler;
  sc.max_context = cfg.max_positions;
  if (sc.max_running < 1 || sc.max_batched_tokens < 1 || sc.block_tokens < 1 || sc.blocks < 0) {
    throw std::runtime_error("serve: max running sequences, batched tokens and block tokens must be at least 1");
  }

  ReplicaCost cost(system, spec, options);
  rep.kv_bytes_per_token = cost.kv_bytes_per_token();
  if (sc.blocks == 0) sc.blocks = cost.kv_blocks(std::max(sc.max_batched_tokens, sc.max_running), sc.block_tokens);
  const double static_watts = sim::EnergyPrices::from(a).static_power * double(chips);
  auto simulations = [&] { return cost.simulations(); };

  // Requests to replicas in turn.
  std::vector<std::vector<workloads::Request>> shares(size_t(spec.replicas));
  rep.replica_of.resize(traffic.size());
  for (size_t i = 0; i < traffic.size(); ++i) {
    rep.replica_of[i] = int64_t(i % size_t(spec.replicas));
    shares[i % size_t(spec.replicas)].push_back(traffic[i]);
  }
  sim::serving::ServeResult all;
  int64_t done = 0;
  for (const auto& share : shares) {
    rep.results.push_back(sim::serving::serve(share, sc, cost, [&](int64_t finished) {
      if (progress) progress({done + finished, int64_t(traffic.size()), simulations()});
    }));
    const sim::serving::ServeResult& r = rep.results.back();
    done += int64_t(share.size());
    all.requests.insert(all.requests.end(), r.requests.begin(), r.requests.end());
    all.iterations.insert(all.iterations.end(), r.iterations.begin(), r.iterations.end());
    all.seconds = std::max(all.seconds, r.seconds), all.joules += r.joules;
  }
  rep.metrics = sim::serving::summarize(all, sc, rep.slo, static_watts, spec.replicas);
  rep.simulations = simulations();

  // Cost of the replicas over the traffic's span.
  const sim::serving::ServeMetrics& m = rep.metrics;
  const double chip_count = double(chips * spec.replicas);
  rep.avg_power_w = m.seconds > 0 ? m.joules / m.seconds : 0.0;
  if (options.pricing == "cloud") {
    if (!a.cost.cloud_price) throw std::runtime_error(a.name + " has no cost.cloud_price for cloud pricing");
    rep.usd_per_hour = *a.cost.cloud_price * chip_count;
  } else {
    rep.usd_per_hour = arch::derive(a).capex_per_chip * chip_count / (a.cost.amortization_years * arch::kHoursPerYear) +
                       rep.avg_power_w * a.cost.pue * 3600.0 * a.cost.electricity_price;
  }
  const double usd = rep.usd_per_hour * m.seconds / 3600.0;
  if (m.tokens_per_s > 0) {
    rep.usd_per_million_tokens = usd / (m.tokens_per_s * m.seconds) * 1e6;
    rep.usd_per_million_output_tokens = usd / (m.output_tokens_per_s * m.seconds) * 1e6;
  }
  rep.host_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - host_start).count();
  return rep;
}

nlohmann::json ServeReport::to_json(bool requests) const {
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
         {"rejected", m.rejected},
         {"kv_occupancy_mean", m.kv_occupancy_mean},
         {"kv_occupancy_peak", m.kv_occupancy_peak},
         {"busy_seconds", m.busy_seconds},
         {"joules", m.joules},
         {"joules_per_output_token", m.joules_per_output_token},
         {"avg_power_w", avg_power_w},
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
  if (!requests) return j;
  json list = json::array();
  std::vector<size_t> next(results.size(), 0);
  for (size_t i = 0; i < replica_of.size(); ++i) {
    const size_t rr = size_t(replica_of[i]);
    const sim::serving::RequestResult& x = results[rr].requests[next[rr]++];
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
