// tessera sim --arch A PROGRAM [--functional] [--json] [--trace out.json]
#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>

#include "arch/loader.hpp"
#include "compiler/target.hpp"
#include "isa/verify.hpp"
#include "sim/simulation.hpp"
#include "tools/api/api.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/table.hpp"

namespace tessera::cli {

void add_sim_commands(CLI::App& app) {
  struct Options {
    std::string program, arch, trace;
    std::vector<std::string> overrides;
    bool functional = false, json = false, all_stats = false;
    double time_limit = 0;
    uint64_t chunk = sim::SimOptions{}.dma_chunk_bytes;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* sim = app.add_subcommand("sim", "run a program on the SystemC model of a chip (or of a system of chips)");
  sim->add_option("program", opt->program, "program (.tbin or .tasm)")->required();
  sim->add_option("--arch", opt->arch, "preset name or architecture file")->required();
  sim->add_option("-s,--set", opt->overrides, "override an architecture parameter: key.path=value");
  sim->add_flag("--functional", opt->functional, "move and compute real data (default: timing only)");
  sim->add_flag("--json", opt->json, "print every statistic as JSON");
  sim->add_option("--trace", opt->trace, "write a Perfetto/Chrome trace (JSON) to this file");
  sim->add_option("--time-limit", opt->time_limit, "stop after this many simulated seconds");
  sim->add_option("--dma-chunk", opt->chunk, "bytes a DMA moves per chunk (timing granularity)")->capture_default_str();
  sim->add_flag("--all-stats", opt->all_stats, "list every statistic, not only the summary");
  sim->callback([opt] {
    const arch::Arch a = arch::load_arch(opt->arch, opt->overrides);
    const isa::Program p = api::load_program(opt->program);
    isa::verify_or_throw(p, compiler::target_for(a));
    sim::SimOptions so;
    so.dma_chunk_bytes = opt->chunk;
    so.time_limit = sim::seconds_to_ticks(opt->time_limit);
    sim::Simulation simulation(a, opt->functional ? sim::Mode::Functional : sim::Mode::Performance, so);
    std::unique_ptr<sim::Trace> trace;
    if (!opt->trace.empty()) trace = std::make_unique<sim::Trace>();
    const auto start = std::chrono::steady_clock::now();
    const sim::RunResult r = simulation.run(p, trace.get());
    const double host = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (trace) {
      std::ofstream out(opt->trace);
      if (!out) throw std::runtime_error(opt->trace + ": cannot write");
      trace->write(out);
    }
    if (opt->json) {
      nlohmann::json j;
      j["seconds"] = r.seconds();
      j["instructions"] = r.instructions;
      j["host_seconds"] = host;
      j["stats"] = r.stats.to_json();
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::cout << fmt::format("{} on {}: {:.3f} us simulated, {} instructions, {:.3f} s host\n", opt->program, a.name,
                             r.seconds() * 1e6, r.instructions, host);
    std::cout << fmt::format("  HBM read {:.3f} MB, written {:.3f} MB; MACs {:.4g}\n", r.activity.hbm_read / 1e6,
                             r.activity.hbm_write / 1e6, r.activity.total_macs());
    if (a.system.chips > 1) {
      std::cout << fmt::format("  sent between chips {:.3f} MB ({:.3f} MB-hops on links)\n",
                               r.stats.sum("system.chip", ".comm.sent_bytes") / 1e6, r.activity.link_bits / 8e6);
    }
    if (opt->all_stats) {
      Table t({"stat", "value", "unit"});
      for (const auto& s : r.stats.all()) {
        if (s.value != 0) t.add({s.name, fmt::format("{:.6g}", s.value), s.unit});
      }
      t.print(std::cout);
    }
  });
}

}  // namespace tessera::cli
