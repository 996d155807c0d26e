// tessera serve --arch SYSTEM --model M (--requests FILE | --synthetic SPEC) [--from T] [--duration T]
//               [--rate-scale X] [--replicas N | --disaggregate P:D] [--tp N] [--slo ttft=..,tpot=..]
//               [--json] [--trace out.json]
// tessera serve --plan --systems A,B --model M (--requests FILE | --synthetic SPEC) --slo ..
//               [--attainment 0.99] [--loads 1,2,4] [--requests-per-user-month N] [--json]
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <memory>

#include "arch/loader.hpp"
#include "arch/quantity.hpp"
#include "tools/api/serve.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/table.hpp"

namespace tessera::cli {
namespace {

struct ServeOptions {
  std::string arch, from, duration, trace, disaggregate;
  bool plan = false, no_prefix_caching = false, no_disaggregation = false;
  int64_t grid = 0;  // 0: serve()'s or plan()'s default
  std::vector<std::string> systems;
  api::PlanSpec plan_spec;
  api::Traffic traffic;
  std::vector<std::string> overrides;
  api::ServeSpec spec;
  api::RunOptions run;
  bool no_chunked_prefill = false, json = false;
};

// "300" (seconds) or a time with its unit ("5min" is not one: "300s").
double seconds_of(const std::string& option, const std::string& text) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  try {
    return arch::parse_quantity(text, arch::Dim::Time);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("{}: {}", option, e.what()));
  }
}

std::string ms(double s) { return fmt::format("{:.1f} ms", s * 1e3); }

void print_serve(const api::ServeReport& r) {
  const sim::serving::ServeMetrics& m = r.metrics;
  Table t({"metric", "value"});
  const std::string fleet = r.pools.disaggregated()
                                ? fmt::format("{} prefill + {} decode replicas", r.pools.prefill, r.pools.decode)
                                : fmt::format("{} replica{}", r.replicas, r.replicas > 1 ? "s" : "");
  t.add({"system", fmt::format("{}: {} of {} chip{}", r.system, fleet, r.chips, r.chips > 1 ? fmt::format("s (tp {})", r.tp) : "")});
  t.add({"model", r.model});
  t.add({"traffic", fmt::format("{} requests over {:.1f} s{}", m.requests, m.seconds,
                                m.rejected > 0 ? fmt::format(" ({} rejected: longer than the model's {} positions)",
                                                             m.rejected, r.scheduler.max_context)
                                               : "")});
  t.add({"KV cache", fmt::format("{} blocks of {} tokens a replica ({:.0f} KB a token)", r.scheduler.blocks,
                                 r.scheduler.block_tokens, r.kv_bytes_per_token / 1e3)});
  t.add({"throughput", fmt::format("{:.3g} req/s, {:.4g} output tok/s, {:.4g} tok/s", m.requests_per_s,
                                   m.output_tokens_per_s, m.tokens_per_s)});
  auto row = [&](const char* name, const sim::serving::Percentiles& p) {
    t.add({name, fmt::format("mean {}, p50 {}, p90 {}, p99 {}", ms(p.mean), ms(p.p50), ms(p.p90), ms(p.p99))});
  };
  row("TTFT", m.ttft);
  row("TPOT", m.tpot);
  row("latency", m.latency);
  row("queueing", m.queueing);
  if (std::isfinite(r.slo.ttft) || std::isfinite(r.slo.tpot)) {
    t.add({"SLO", fmt::format("{:.1f}% of requests met it, goodput {:.3g} req/s", 100 * m.slo_attainment, m.goodput)});
  }
  t.add({"KV occupancy", fmt::format("mean {:.1f}%, peak {:.1f}%; {} preemptions ({} swapped to host)",
                                     100 * m.kv_occupancy_mean, 100 * m.kv_occupancy_peak, m.preemptions, m.swaps)});
  if (m.cached_tokens > 0) {
    t.add({"prefix cache", fmt::format("{} of {} prompt tokens ({:.1f}%) found cached", m.cached_tokens, m.prompt_tokens,
                                       100.0 * double(m.cached_tokens) / double(m.prompt_tokens))});
  }
  if (r.pools.disaggregated()) {
    t.add({"KV transfers", fmt::format("{:.3g} s in all, {:.4g} J", r.transfer_seconds, r.transfer_joules)});
  }
  t.add({"utilization", fmt::format("{:.1f}% of the replicas' time in iterations", 100 * r.utilization)});
  t.add({"energy", fmt::format("{:.4g} kJ, {:.3g} J per output token, {:.0f} W average", m.joules / 1e3,
                               m.joules_per_output_token, r.avg_power_w)});
  t.add({"cost (" + r.pricing + ")", fmt::format("${:.2f}/hour, ${:.3f}/M tokens, ${:.3f}/M output tokens", r.usd_per_hour,
                                                r.usd_per_million_tokens, r.usd_per_million_output_tokens)});
  t.add({"simulations", r.exact ? fmt::format("{} (every iteration)", r.simulations)
                                : fmt::format("{} (grid of {} points an octave)", r.simulations, r.grid_per_octave)});
  t.print(std::cout, true);
}

// Dollars to the cent, or to 3 figures below $10; "-" when there is no price.
std::string usd(double x) {
  if (!std::isfinite(x)) return "-";
  return x >= 10 ? fmt::format("${:.2f}", x) : fmt::format("${:.3g}", x);
}

std::string pools_of(const api::PlanRow& r) {
  const sim::serving::Pools& p = r.fleet.pools;
  return p.disaggregated() ? fmt::format("{}P + {}D", p.prefill, p.decode) : std::to_string(p.colocated);
}

void print_plan(const api::PlanReport& r, size_t requests, double span) {
  std::cout << fmt::format("Plan for {}: the SLO (ttft {}, tpot {}) met by {:.3g}% of the requests; {} requests over "
                           "{:.0f} s at 1x; $ per user-month at {:.0f} requests a user\n\n",
                           r.model, std::isfinite(r.slo.ttft) ? ms(r.slo.ttft) : "any",
                           std::isfinite(r.slo.tpot) ? ms(r.slo.tpot) : "any", 100 * r.attainment, requests, span,
                           r.requests_per_user_month);
  Table t({"system", "load", "tp", "mode", "replicas", "chips", "SLO met", "TTFT p99", "TPOT p99", "busy", "$/h owned",
           "$/h cloud", "$/M tok owned", "$/M tok cloud", "$/user-mo owned", "$/user-mo cloud"});
  for (const api::PlanRow& row : r.rows) {
    const sim::serving::ServeMetrics& m = row.fleet.metrics;
    std::vector<std::string> cells{row.system, fmt::format("{:g}x", row.load), std::to_string(row.tp),
                                   row.disaggregated ? "disaggregated" : "co-located"};
    if (!row.fleet.feasible) {
      cells.push_back(fmt::format("never: {:.1f}% met at {} replicas (TTFT p99 {}, TPOT p99 {})", 100 * m.slo_attainment,
                                  pools_of(row), ms(m.ttft.p99), ms(m.tpot.p99)));
      t.add_spanning(cells);
      continue;
    }
    for (const std::string& c :
         {pools_of(row), std::to_string(row.chips), fmt::format("{:.1f}%", 100 * m.slo_attainment), ms(m.ttft.p99),
          ms(m.tpot.p99), fmt::format("{:.0f}%", 100 * row.utilization), usd(row.usd_per_hour_owned),
          usd(row.usd_per_hour_cloud), usd(row.usd_per_million_tokens_owned),
          usd(row.usd_per_million_tokens_cloud), usd(row.usd_per_user_month_owned),
          usd(row.usd_per_user_month_cloud)}) {
      cells.push_back(c);
    }
    t.add(cells);
  }
  t.print(std::cout, true);
  std::cout << "\n";
  for (size_t i = 0; i < r.best.size(); ++i) {
    if (r.best[i] < 0) {
      std::cout << fmt::format("at {:g}x: no system meets the SLO\n", r.loads[i]);
      continue;
    }
    const api::PlanRow& b = r.rows[size_t(r.best[i])];
    const bool cloud = r.pricing == "cloud";
    std::cout << fmt::format("cheapest at {:g}x ({}): {}, tp {}, {}, {} replica{} ({} chip{}): {}/hour, {}/M tokens, {} "
                             "per user-month\n",
                             r.loads[i], r.pricing, b.system, b.tp, b.disaggregated ? "disaggregated" : "co-located",
                             pools_of(b), b.fleet.pools.replicas() > 1 ? "s" : "", b.chips, b.chips > 1 ? "s" : "",
                             usd(cloud ? b.usd_per_hour_cloud : b.usd_per_hour_owned),
                             usd(cloud ? b.usd_per_million_tokens_cloud : b.usd_per_million_tokens_owned),
                             usd(cloud ? b.usd_per_user_month_cloud : b.usd_per_user_month_owned));
  }
  for (const std::string& s : r.skipped) std::cout << "skipped " << s << "\n";
  std::cout << fmt::format("{} fleet replays, {} simulations, {:.0f} s\n", r.replays, r.simulations, r.host_seconds);
}

}  // namespace

void add_serve_commands(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* c = app.add_subcommand(
      "serve", "replay request traffic on replicas of a system with continuous batching; report latency, throughput, "
               "energy and cost");
  c->add_option("--arch", o->arch, "preset name or architecture file (a replica: all its chips, or --tp of them)");
  c->add_option("--model", o->spec.model, "shipped model name or path to a Hugging Face config.json")->required();
  c->add_option("--requests", o->traffic.requests, "a trace CSV with TIMESTAMP, ContextTokens and GeneratedTokens (Azure's)");
  c->add_option("--synthetic", o->traffic.synthetic,
                "synthetic traffic: rate=R,prompt=..,output=..[,arrivals=poisson|gamma,cv=..][,count=N|duration=S]"
                "[,seed=N]; lengths N, uniform:LO:HI, lognormal:MEDIAN:SIGMA[:LO:HI] or trace (from --requests)");
  c->add_option("--from", o->from, "start of the window of the traffic (seconds, or a time such as 600s)");
  c->add_option("--duration", o->duration, "length of the window (default: to the end)");
  c->add_option("--rate-scale", o->traffic.rate_scale, "play the traffic at this many times its request rate");
  c->add_option("--replicas", o->spec.replicas, "replicas of the system, requests dealt to them in turn")
      ->check(CLI::PositiveNumber);
  c->add_option("--tp", o->spec.tp, "chips a replica spans, splitting the model by tensor parallelism (default: all)")
      ->check(CLI::PositiveNumber);
  c->add_option("--disaggregate", o->disaggregate,
                "P:D: a pool of P prefill replicas and one of D decode replicas, KV caches moved over the links");
  c->add_option("--preemption", o->spec.preemption, "when the KV cache is full: recompute, or swap to host memory")
      ->check(CLI::IsMember({"recompute", "swap"}));
  c->add_option("--prefix-sharing", o->traffic.prefix_sharing,
                "shared prompt prefixes: fraction=F,groups=N[,requests=R][,seed=S] (each prompt's first F from one of N "
                "prefixes, for a share R of the requests)");
  c->add_flag("--no-prefix-caching", o->no_prefix_caching, "compute shared prefixes again instead of reusing them");
  c->add_flag("--plan", o->plan, "capacity planning: the fewest replicas of each of --systems that meet --slo, the cheapest");
  c->add_option("--systems", o->systems, "--plan: comma-separated presets or architecture files")->delimiter(',');
  c->add_option("--attainment", o->plan_spec.attainment, "--plan: the share of requests that must meet the SLO")
      ->check(CLI::Range(1e-9, 1.0));
  c->add_option("--loads", o->plan_spec.loads, "--plan: the traffic at these multiples of its rate, e.g. 1,2,4,8,16")
      ->delimiter(',');
  c->add_option("--requests-per-user-month", o->plan_spec.requests_per_user_month,
                "--plan: a user's requests a month, for $ per user-month")
      ->check(CLI::PositiveNumber);
  c->add_option("--mappings", o->plan_spec.tp, "--plan: chips a replica may span (default: every divisor of a system's)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  c->add_flag("--no-disaggregation", o->no_disaggregation, "--plan: co-located fleets only");
  c->add_option("--max-replicas", o->plan_spec.max_replicas, "--plan: a pool's replicas at most")
      ->check(CLI::PositiveNumber);
  c->add_option("--slo", o->spec.slo, "latency targets, e.g. ttft=500ms,tpot=50ms");
  c->add_option("--max-running", o->spec.scheduler.max_running, "sequences in a batch at most (vLLM max_num_seqs)")
      ->check(CLI::PositiveNumber);
  c->add_option("--max-batched-tokens", o->spec.scheduler.max_batched_tokens,
                "tokens an iteration computes at most (vLLM max_num_batched_tokens)")
      ->check(CLI::PositiveNumber);
  c->add_flag("--no-chunked-prefill", o->no_chunked_prefill, "a prompt's prefill in one iteration, not split");
  c->add_option("--block-tokens", o->spec.scheduler.block_tokens, "tokens per KV-cache block")
      ->check(CLI::PositiveNumber);
  c->add_option("--kv-blocks", o->spec.scheduler.blocks,
                "KV-cache blocks a replica (default: as many as the HBM left by the model holds)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--dtype", o->spec.dtype, "weight dtype: bf16, fp8e4m3, fp8e5m2");
  c->add_option("--kv-dtype", o->spec.kv_dtype, "KV-cache dtype: bf16, fp8e4m3, fp8e5m2");
  c->add_option("--grid", o->grid,
                "iteration-cost grid: points simulated per doubling of tokens, sequences and context (default 4; "
                "--plan: 2)")
      ->check(CLI::Range(1, 64));
  c->add_flag("--exact", o->spec.exact, "simulate every iteration as it is instead of interpolating on the grid (slow)");
  c->add_option("-s,--set", o->overrides, "override an architecture parameter: key.path=value");
  c->add_option("--pricing", o->run.pricing, "owned (capex amortised + energy) or cloud ($/hour)")
      ->check(CLI::IsMember({"owned", "cloud"}));
  c->add_flag("--json", o->json, "print the report as JSON, with every request's times");
  c->add_option("--trace", o->trace, "write a Perfetto timeline of iterations, queue depth and KV occupancy here");
  c->callback([o] {
    o->spec.scheduler.chunked_prefill = !o->no_chunked_prefill;
    o->spec.scheduler.prefix_caching = !o->no_prefix_caching;
    if (o->grid > 0) o->spec.grid_per_octave = o->grid;
    if (!o->from.empty()) o->traffic.from = seconds_of("--from", o->from);
    if (!o->duration.empty()) o->traffic.duration = seconds_of("--duration", o->duration);
    if (!o->disaggregate.empty()) {
      const size_t colon = o->disaggregate.find(':');
      try {
        if (colon == std::string::npos) throw std::invalid_argument("no colon");
        size_t used = 0;
        o->spec.prefill_replicas = std::stoll(o->disaggregate.substr(0, colon), &used);
        if (used != colon) throw std::invalid_argument("trailing");
        o->spec.decode_replicas = std::stoll(o->disaggregate.substr(colon + 1), &used);
        if (used != o->disaggregate.size() - colon - 1) throw std::invalid_argument("trailing");
      } catch (const std::exception&) {
        throw std::runtime_error(fmt::format("--disaggregate {}: expected P:D, the prefill and decode replicas", o->disaggregate));
      }
    }
    const std::vector<workloads::Request> requests = api::load_traffic(o->traffic);
    // Progress on a terminal only, a few times a second.
    const bool terminal = isatty(STDERR_FILENO) != 0;
    auto last = std::chrono::steady_clock::now();
    auto show = [&](const std::string& line) {
      const auto now = std::chrono::steady_clock::now();
      if (!terminal || now - last < std::chrono::milliseconds(200)) return;
      last = now;
      std::cerr << "\r\033[K" << line << std::flush;
    };
    if (o->plan) {
      if (o->systems.empty()) throw std::runtime_error("serve --plan: give the systems to compare (--systems A,B)");
      if (!o->arch.empty()) throw std::runtime_error("serve --plan takes --systems, not --arch");
      std::vector<arch::Arch> systems;
      for (const std::string& s : o->systems) systems.push_back(arch::load_arch(s, o->overrides));
      const int64_t grid = o->plan_spec.serve.grid_per_octave;
      o->plan_spec.serve = o->spec, o->plan_spec.disaggregation = !o->no_disaggregation;
      o->plan_spec.serve.grid_per_octave = o->grid > 0 ? o->grid : grid;
      const api::PlanReport r = api::plan(systems, requests, o->plan_spec, o->run, [&](const api::PlanProgress& p) {
        show(fmt::format("plan: {} ({} replays, {} simulations)", p.stage, p.replays, p.simulations));
      });
      if (terminal) std::cerr << "\r\033[K" << std::flush;
      if (o->json) std::cout << r.to_json().dump(1) << "\n";
      else print_plan(r, requests.size(), requests.back().arrival - requests.front().arrival);
      return;
    }
    if (o->arch.empty()) throw std::runtime_error("serve: give the system to serve on (--arch), or --plan with --systems");
    const arch::Arch a = arch::load_arch(o->arch, o->overrides);
    const api::ServeReport r = api::serve(a, requests, o->spec, o->run, [&](const api::ServeProgress& p) {
      show(fmt::format("serve: {}/{} requests done, {} simulations", p.finished, p.requests, p.simulations));
    });
    if (terminal) std::cerr << "\r\033[K" << std::flush;
    if (!o->trace.empty()) {
      std::ofstream out(o->trace);
      if (!out) throw std::runtime_error(o->trace + ": cannot write");
      r.write_trace(out);
    }
    if (o->json) {
      std::cout << r.to_json().dump(1) << "\n";
    } else {
      print_serve(r);
    }
  });
}

}  // namespace tessera::cli
