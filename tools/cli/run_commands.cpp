// tessera run --arch A (--model M --phase P --batch B (--seq S | --context L) | --op gemm --shape
// M,K,N
//                      | --op attention --shape H,KVH,D ...) [--json] [--trace out.json]
// tessera compare [--systems A,B,C] [workload options] [--json | --csv] [--report F] [--trace F]
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "arch/loader.hpp"
#include "tools/api/run.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/table.hpp"

namespace tessera::cli {
namespace {

struct WorkloadOptions {
  api::RunSpec spec;
  std::string shape;
  std::vector<std::string> overrides;
  int64_t chips = 0, tp = 0, pp = 0, ep = 0;
  api::RunOptions run;
  bool full = false;
  bool json = false;
  bool breakdown = false;
};

void add_workload_options(CLI::App* c, WorkloadOptions& o) {
  c->add_option("--model", o.spec.model,
                "shipped model name or path to a Hugging Face config.json");
  c->add_option("--op", o.spec.op,
                "an operator instead of a model: gemm, attention or copy (HBM to HBM)")
      ->check(CLI::IsMember({"gemm", "attention", "copy"}));
  c->add_option("--shape", o.shape, "gemm: M,K,N; attention: HEADS,KV_HEADS,HEAD_DIM; copy: BYTES");
  c->add_option("--phase", o.spec.phase, "prefill or decode")
      ->check(CLI::IsMember({"prefill", "decode"}));
  c->add_option("--batch", o.spec.batch, "sequences in the batch");
  c->add_option("--seq", o.spec.seq, "prefill: prompt tokens per sequence");
  c->add_option("--context", o.spec.context, "decode: tokens already in each sequence's KV cache");
  c->add_option("--dtype", o.spec.dtype, "weight dtype: bf16, fp8e4m3, fp8e5m2");
  c->add_option("--kv-dtype", o.spec.kv_dtype, "KV-cache dtype: bf16, fp8e4m3, fp8e5m2");
  c->add_option("--chips", o.chips, "chips in the system (every system; the same as -s system.chips=N)")
      ->check(CLI::PositiveNumber);
  c->add_option("--tp", o.tp,
                "chips each layer is split over by tensor parallelism (-s system.parallelism.tp=N; default: "
                "searched with --pp)")
      ->check(CLI::PositiveNumber);
  c->add_option("--pp", o.pp, "pipeline stages of the layers, tp x pp = chips (-s system.parallelism.pp=N)")
      ->check(CLI::PositiveNumber);
  c->add_option("--ep", o.ep,
                "MoE: groups of a stage's chips the experts are dealt over, dividing tp (-s system.parallelism.ep=N; "
                "1: every chip a slice of every expert; default: searched with tp and pp)")
      ->check(CLI::PositiveNumber);
  c->add_option("--capacity-factor", o.spec.capacity_factor,
                "MoE: an expert takes at most this x tokens x k / experts of a routed block, the rest dropped "
                "(default 0: dropless)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--routing-skew", o.run.routing_skew,
                "MoE in performance mode: experts drawn with probability ~ 1 / rank^SKEW (default 0: uniform)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--routing-seed", o.run.routing_seed, "MoE in performance mode: seed of the routing draws");
  c->add_option("--framework", o.spec.framework,
                "whose kernels: fused (the compiler's, default) or pytorch (plain PyTorch's: every torch op of the "
                "model's reference code a kernel, nothing fused)")
      ->check(CLI::IsMember({"fused", "pytorch"}));
  c->add_option("--launch", o.run.launch,
                "how the host launches kernels on chips that run kernels (GPUs): graph (a CUDA graph, default) or "
                "eager (one by one, chip.launch.host each)")
      ->check(CLI::IsMember({"graph", "eager"}));
  c->add_option("-s,--set", o.overrides,
                "override an architecture parameter: key.path=value (every system)");
  c->add_option("--pricing", o.run.pricing, "owned (capex amortised + energy) or cloud ($/hour)")
      ->check(CLI::IsMember({"owned", "cloud"}));
  c->add_flag("--full", o.full, "simulate every layer and every round of long operators instead of a sample");
  c->add_flag("--json", o.json, "print the report as JSON");
  c->add_flag("--breakdown", o.breakdown,
              "also print where the time goes: per operator and per layer, time, FLOPs, HBM bytes "
              "and the bound");
  c->add_option("--trace", o.run.trace,
                "write a Perfetto/Chrome trace (JSON) of the (first) run to this file");
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> out;
  if (text.empty()) return out;
  std::stringstream s(text);
  std::string part;
  while (std::getline(s, part, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoll(part, &used));
      if (used != part.size()) throw std::invalid_argument(part);
    } catch (const std::exception&) {
      throw std::runtime_error(fmt::format("--shape: '{}' is not a list of integers", text));
    }
  }
  return out;
}

void finish(WorkloadOptions& o) {
  o.spec.shape = parse_shape(o.shape);
  if (o.chips > 0) o.overrides.push_back(fmt::format("system.chips={}", o.chips));
  if (o.tp > 0) o.overrides.push_back(fmt::format("system.parallelism.tp={}", o.tp));
  if (o.pp > 0) o.overrides.push_back(fmt::format("system.parallelism.pp={}", o.pp));
  if (o.ep > 0) o.overrides.push_back(fmt::format("system.parallelism.ep={}", o.ep));
  if (o.full) o.run.sample_layers = 0, o.run.sample_rounds = 0;
}

std::string si(double x, const char* unit) {
  if (x >= 1e12) return fmt::format("{:.3g} T{}", x / 1e12, unit);
  if (x >= 1e9) return fmt::format("{:.3g} G{}", x / 1e9, unit);
  if (x >= 1e6) return fmt::format("{:.3g} M{}", x / 1e6, unit);
  if (x >= 1e3) return fmt::format("{:.3g} k{}", x / 1e3, unit);
  return fmt::format("{:.3g} {}", x, unit);
}

std::string latency(double s) {
  return s >= 1e-3 ? fmt::format("{:.3f} ms", s * 1e3) : fmt::format("{:.1f} us", s * 1e6);
}

void print_report(const api::Report& r) {
  Table t({"metric", "value"});
  t.add({"system", r.system});
  t.add({"workload", r.workload});
  if (r.chips > 1) {
    std::string mapping =
        fmt::format("{} chips: tp {} x pp {}{}", r.chips, r.tp, r.pp, r.ep > 1 ? fmt::format(", ep {}", r.ep) : "");
    if (r.pp > 1) mapping += fmt::format(", {} microbatches", r.microbatches);
    if (!r.mapping_search.empty()) mapping += fmt::format(" (fastest of {} simulated)", r.mapping_search.size());
    t.add({"mapping", mapping});
  }
  t.add({"latency", latency(r.seconds)});
  if (r.throttled_seconds > 0) {
    t.add({"power-throttled", fmt::format("{} of it (the clock lowered to hold the power limit)",
                                          latency(r.throttled_seconds))});
  }
  if (r.tokens > 0) t.add({"tokens/s", fmt::format("{:.1f}", r.tokens_per_s)});
  t.add({"throughput", si(r.flops / r.seconds, "FLOP/s")});
  t.add({"HBM traffic",
         fmt::format("{} ({}/s)", si(r.hbm_bytes, "B"), si(r.hbm_bytes / r.seconds, "B"))});
  for (const auto& [k, u] : r.utilization)
    t.add({"utilization " + k, fmt::format("{:.1f}%", u * 100)});
  t.add({"bound by", r.bound});
  t.add({"energy", fmt::format("{:.4g} J", r.energy.total())});
  t.add({"power avg / peak / TDP",
         fmt::format("{:.0f} / {:.0f} / {:.0f} W", r.avg_power_w, r.peak_power_w, r.tdp_w)});
  if (r.tokens > 0) t.add({"energy per token", fmt::format("{:.4g} mJ", r.joules_per_token * 1e3)});
  t.add({"cost per hour", fmt::format("${:.3f} ({})", r.usd_per_hour, r.pricing)});
  if (r.tokens > 0) {
    t.add({"cost per million tokens", fmt::format("${:.4g}", r.usd_per_million_tokens)});
    t.add({"tokens/s per $1k capex", fmt::format("{:.3g}", r.tokens_per_s_per_capex_usd * 1e3)});
  }
  t.add({"layers simulated", fmt::format("{} of {}", r.layers_simulated, r.layers)});
  if (!r.rounds_sampled.empty()) t.add({"rounds simulated", fmt::format("{} operators in part", r.rounds_sampled.size())});
  t.add({"host time", fmt::format("{:.2f} s", r.host_seconds)});
  t.print(std::cout);
  for (const std::string& w : r.warnings) spdlog::warn("{}: {}", r.system, w);
}

// Per operator and per layer: time (and share), FLOPs, HBM bytes, the busiest resources and
// the bound.
void print_breakdown(const api::Report& r) {
  auto table = [&](const std::vector<api::Report::Row>& rows, const char* what) {
    Table t({what, "time", "share", "TFLOP/s", "HBM GB/s", "compute", "HBM", "NoC", "bound"});
    for (size_t i = 0; i < rows.size(); ++i) {
      const api::Report::Row& x = rows[i];
      const double s = x.share.seconds, active = x.share.active;  // rates over the active time
      std::string name = x.share.name;
      if (x.share.layers > 0) name += fmt::format(" (x{} layers)", x.share.layers);
      if (x.share.extrapolated) {  // the extrapolated layers are alike: one row for them all
        name = fmt::format("layers {}-{} (extrapolated), each", i, rows.size() - 1);
        i = rows.size();
      }
      auto pct = [&](const char* k) {  // the power_throttle row has no utilisation
        const auto u = x.utilization.find(k);
        return u == x.utilization.end() ? std::string("-") : fmt::format("{:.0f}%", u->second * 100);
      };
      t.add({name, latency(s), fmt::format("{:.1f}%", s / r.seconds * 100),
             fmt::format("{:.1f}", active > 0 ? x.flops / active / 1e12 : 0.0),
             fmt::format("{:.0f}", active > 0 ? x.hbm_bytes / active / 1e9 : 0.0), pct("compute"),
             pct("hbm_bandwidth"), pct("noc"), x.bound});
    }
    t.print(std::cout);
  };
  table(r.ops, "operator");
  if (!r.layer_rows.empty()) table(r.layer_rows, "layer");
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

// One row per workload and system; a failed run shows its error instead of figures (in CSV, in
// a last column "error").
void print_comparison(const api::Comparison& c, bool csv) {
  std::vector<std::string> header{"workload",
                                  "system",
                                  "chips",
                                  "latency",
                                  "tokens/s",
                                  "vs",
                                  "power W",
                                  "tokens/J",
                                  "vs",
                                  "$/M tok",
                                  "vs",
                                  "tok/s per $1k capex",
                                  "vs",
                                  "replicas at 1st's capex",
                                  "their tok/s",
                                  "bound"};
  if (csv) header.push_back("error");
  Table t(header);
  for (size_t w = 0; w < c.workloads.size(); ++w) {
    const api::Report& first = c.reports[w].front();
    auto vs = [&](double x, double x0) {
      return first.error.empty() ? fmt::format("{:.2f}x", x / x0) : std::string("-");
    };
    for (const api::Report& r : c.reports[w]) {
      if (!r.error.empty()) {
        if (csv) {
          std::vector<std::string> row(header.size());
          row[0] = r.workload, row[1] = r.system, row.back() = r.error;
          t.add(std::move(row));
        } else {
          t.add_spanning({r.workload, r.system, "", "failed: " + r.error});
        }
        continue;
      }
      const double tpj = 1 / r.joules_per_token, tpj0 = 1 / first.joules_per_token;
      const int64_t replicas = api::replicas_for(first, r);
      std::vector<std::string> row{
          r.workload, r.system, r.pp > 1 || r.ep > 1 ? fmt::format("{} (tp {} x pp {}{})", r.chips, r.tp, r.pp, r.ep > 1 ? fmt::format(", ep {}", r.ep) : "")
                               : std::to_string(r.chips),
          latency(r.seconds), fmt::format("{:.1f}", r.tokens_per_s),
          vs(r.tokens_per_s, first.tokens_per_s), fmt::format("{:.0f}", r.avg_power_w),
          fmt::format("{:.2f}", tpj), vs(tpj, tpj0), fmt::format("{:.3f}", r.usd_per_million_tokens),
          vs(r.usd_per_million_tokens, first.usd_per_million_tokens),
          fmt::format("{:.3g}", r.tokens_per_s_per_capex_usd * 1e3),
          vs(r.tokens_per_s_per_capex_usd, first.tokens_per_s_per_capex_usd),
          first.error.empty() ? std::to_string(replicas) : "-",
          first.error.empty() ? fmt::format("{:.0f}", double(replicas) * r.tokens_per_s) : "-", r.bound};
      if (csv) row.emplace_back();
      t.add(std::move(row));
    }
  }
  if (csv) {
    t.print_csv(std::cout);
  } else {
    t.print(std::cout, true);
  }
}

}  // namespace

void add_run_commands(CLI::App& app) {
  {
    struct Options : WorkloadOptions {
      std::string arch;
    };
    auto opt = std::make_shared<Options>();
    CLI::App* c = app.add_subcommand(
        "run", "compile and simulate a model step or an operator; report speed, energy, cost");
    c->add_option("--arch", opt->arch, "preset name or architecture file")->required();
    add_workload_options(c, *opt);
    c->callback([opt] {
      finish(*opt);
      const api::Report r =
          api::run(arch::load_arch(opt->arch, opt->overrides), opt->spec, opt->run);
      if (opt->json) {
        std::cout << r.to_json().dump(2) << "\n";
        for (const std::string& w : r.warnings) spdlog::warn("{}: {}", r.system, w);
        return;
      }
      print_report(r);
      if (opt->breakdown) print_breakdown(r);
    });
  }
  {
    struct Options : WorkloadOptions {
      std::string systems, report;
      bool csv = false;
    };
    auto opt = std::make_shared<Options>();
    CLI::App* c = app.add_subcommand(
        "compare",
        "run workloads on several systems side by side (default: Llama-3-8B decode and prefill on "
        "maia100-class, h100-sxm, h200-sxm)");
    c->add_option("--systems", opt->systems,
                  "comma-separated presets or architecture files (the first is the baseline)");
    add_workload_options(c, *opt);
    c->add_flag("--csv", opt->csv, "print the table as CSV");
    c->add_option("--report", opt->report,
                  "also write the full comparison (with stats) as JSON to this file");
    c->callback([opt] {
      finish(*opt);
      std::vector<arch::Arch> systems;
      for (const std::string& s :
           opt->systems.empty() ? api::default_systems() : split_list(opt->systems)) {
        systems.push_back(arch::load_arch(s, opt->overrides));
      }
      const bool given = !opt->spec.model.empty() || !opt->spec.op.empty();
      const std::vector<api::RunSpec> workloads =
          given ? std::vector<api::RunSpec>{opt->spec} : api::default_workloads();
      const api::Comparison cmp = api::compare(systems, workloads, opt->run);
      if (!opt->report.empty()) {
        std::ofstream out(opt->report);
        if (!out) throw std::runtime_error(opt->report + ": cannot write");
        out << cmp.to_json(true).dump(1) << "\n";
      }
      if (opt->json) {
        std::cout << cmp.to_json().dump(2) << "\n";
      } else {
        print_comparison(cmp, opt->csv);
      }
      for (const auto& reports : cmp.reports) {
        for (const api::Report& r : reports) {
          for (const std::string& w : r.warnings)
            spdlog::warn("{} on {}: {}", r.workload, r.system, w);
        }
      }
      if (cmp.failed()) throw CLI::RuntimeError(1);  // after every row
    });
  }
}

}  // namespace tessera::cli
