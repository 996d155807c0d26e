// tessera serve --arch SYSTEM --model M (--requests FILE | --synthetic SPEC) [--from T] [--duration T]
//               [--rate-scale X] [--replicas N] [--slo ttft=..,tpot=..] [--json] [--trace out.json]
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
  std::string arch, from, duration, trace;
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
  t.add({"system", fmt::format("{}: {} replica{} of {} chip{}", r.system, r.replicas, r.replicas > 1 ? "s" : "", r.chips,
                               r.chips > 1 ? fmt::format("s (tp {})", r.tp) : "")});
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
  t.add({"KV occupancy", fmt::format("mean {:.1f}%, peak {:.1f}%; {} preemptions", 100 * m.kv_occupancy_mean,
                                     100 * m.kv_occupancy_peak, m.preemptions)});
  t.add({"energy", fmt::format("{:.4g} kJ, {:.3g} J per output token, {:.0f} W average", m.joules / 1e3,
                               m.joules_per_output_token, r.avg_power_w)});
  t.add({"cost (" + r.pricing + ")", fmt::format("${:.2f}/hour, ${:.3f}/M tokens, ${:.3f}/M output tokens", r.usd_per_hour,
                                                r.usd_per_million_tokens, r.usd_per_million_output_tokens)});
  t.add({"simulations", r.exact ? fmt::format("{} (every iteration)", r.simulations)
                                : fmt::format("{} (grid of {} points an octave)", r.simulations, r.grid_per_octave)});
  t.print(std::cout, true);
}

}  // namespace

void add_serve_commands(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* c = app.add_subcommand(
      "serve", "replay request traffic on replicas of a system with continuous batching; report latency, throughput, "
               "energy and cost");
  c->add_option("--arch", o->arch, "preset name or architecture file (a replica)")->required();
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
  c->add_option("--grid", o->spec.grid_per_octave,
                "iteration-cost grid: points simulated per doubling of tokens, sequences and context (default 4)")
      ->check(CLI::Range(1, 64));
  c->add_flag("--exact", o->spec.exact, "simulate every iteration as it is instead of interpolating on the grid (slow)");
  c->add_option("-s,--set", o->overrides, "override an architecture parameter: key.path=value");
  c->add_option("--pricing", o->run.pricing, "owned (capex amortised + energy) or cloud ($/hour)")
      ->check(CLI::IsMember({"owned", "cloud"}));
  c->add_flag("--json", o->json, "print the report as JSON, with every request's times");
  c->add_option("--trace", o->trace, "write a Perfetto timeline of iterations, queue depth and KV occupancy here");
  c->callback([o] {
    o->spec.scheduler.chunked_prefill = !o->no_chunked_prefill;
    if (!o->from.empty()) o->traffic.from = seconds_of("--from", o->from);
    if (!o->duration.empty()) o->traffic.duration = seconds_of("--duration", o->duration);
    const std::vector<workloads::Request> requests = api::load_traffic(o->traffic);
    const arch::Arch a = arch::load_arch(o->arch, o->overrides);
    // Progress on a terminal only, a few times a second.
    const bool terminal = isatty(STDERR_FILENO) != 0;
    auto last = std::chrono::steady_clock::now();
    auto progress = [&](const api::ServeProgress& p) {
      const auto now = std::chrono::steady_clock::now();
      if (!terminal || now - last < std::chrono::milliseconds(200)) return;
      last = now;
      std::cerr << fmt::format("\rserve: {}/{} requests done, {} simulations", p.finished, p.requests, p.simulations)
                << std::flush;
    };
    const api::ServeReport r = api::serve(a, requests, o->spec, o->run, progress);
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
