// Simulator speed: host time to build, verify and simulate programs in performance mode, and
// simulated instructions per host second. Prints a table; not a test.
//   sim_bench [--quick]
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <numeric>

#include "arch/derived.hpp"
#include "arch/loader.hpp"
#include "compiler/kernels/collective.hpp"
#include "compiler/kernels/gemm.hpp"
#include "compiler/target.hpp"
#include "isa/verify.hpp"
#include "sim/simulation.hpp"
#include "sim/topology.hpp"
#include "tools/api/run.hpp"

using namespace tessera;

namespace {

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

struct Row {
  std::string name;
  double build_s, verify_s, sim_s, simulated_s, utilization;
  uint64_t instructions;
};

// Verifies and simulates `p`, which took `build_s` to generate and does `flops` bf16 FLOPs.
Row measure(std::string name, const arch::Arch& a, const isa::Program& p, double build_s,
            double flops) {
  auto t0 = std::chrono::steady_clock::now();
  isa::verify_or_throw(p, compiler::target_for(a));
  const double verify = since(t0);
  t0 = std::chrono::steady_clock::now();
  const sim::RunResult r = sim::Simulation(a).run(p);
  const double simulate = since(t0);
  const double peak = arch::derive(a).peak_flops.at("bf16");
  return {std::move(name), build_s, verify, simulate, r.seconds(), flops / r.seconds() / peak,
          r.instructions};
}

Row gemm(const std::string& preset, int64_t m, int64_t k, int64_t n) {
  const arch::Arch a = arch::load_arch(preset);
  auto t0 = std::chrono::steady_clock::now();
  compiler::ProgramBuilder pb(a);
  compiler::GemmSpec s;
  s.m = m, s.k = k, s.n = n;
  s.a =
      compiler::hbm(int64_t(pb.hbm_region("A", isa::RegionKind::Activations, uint64_t(m * k * 2))));
  s.b = compiler::hbm(int64_t(pb.hbm_region("B", isa::RegionKind::Weights, uint64_t(k * n * 2))));
  s.c =
      compiler::hbm(int64_t(pb.hbm_region("C", isa::RegionKind::Activations, uint64_t(m * n * 2))));
  compiler::KernelContext ctx(pb);
  compiler::emit_gemm(ctx, s, compiler::plan_gemm(a, s, ctx.sram_left(), ctx.shared_left()));
  const isa::Program p = pb.take();
  const double build = since(t0);
  if (const char* dir = std::getenv("SIM_BENCH_SAVE")) {
    isa::save_binary(p, fmt::format("{}/gemm_{}_{}x{}x{}.tbin", dir, preset, m, k, n));
  }
  return measure(fmt::format("gemm {}x{}x{} bf16 on {}", m, k, n, preset), a, p, build,
                 2.0 * double(m * k * n));
}

// Instruction dispatch without memory traffic: every tile loops over a small MATMUL and two
// dependent vector ops on SRAM. Measures the sequencer, scoreboard and event cost per
// instruction, which memory-heavy programs add their DMA and HBM modelling to.
Row dispatch(const std::string& preset, int64_t iterations) {
  const arch::Arch a = arch::load_arch(preset);
  auto t0 = std::chrono::steady_clock::now();
  compiler::ProgramBuilder pb(a);
  const int64_t r = a.chip.tile.systolic.rows, c = a.chip.tile.systolic.cols;
  const uint64_t x = pb.sram_alloc(uint64_t(r * r * 2)), w = pb.sram_alloc(uint64_t(r * c * 2));
  const uint64_t acc = pb.sram_alloc(uint64_t(r * c * 4)), y = pb.sram_alloc(uint64_t(r * c * 4));
  for (int t = 0; t < pb.tiles(); ++t) {
    pb.emit(t, compiler::loop(iterations));
    compiler::MatmulOperands m;
    m.acc = compiler::sram(int64_t(acc)), m.a = compiler::sram(int64_t(x)),
    m.b = compiler::sram(int64_t(w));
    m.m = r, m.k = r, m.n = c;
    pb.emit(t, compiler::matmul(m));
    const compiler::Tensor2 tacc{compiler::sram(int64_t(acc))}, ty{compiler::sram(int64_t(y))};
    pb.emit(t, compiler::vec_binary(isa::Opcode::VAdd, ty, tacc, ty, r, c));
    pb.emit(t, compiler::vec_unary(isa::Opcode::VExp, ty, ty, r, c));
    pb.emit(t, compiler::end_loop());
  }
  const isa::Program p = pb.take();
  const double flops = 2.0 * double(r * r * c) * double(iterations) * pb.tiles();
  return measure(fmt::format("dispatch loop x{} on {}", iterations, preset), a, p, since(t0),
                 flops);
}

// Every tile streams `per_tile` bytes of its own weights from HBM through three SRAM buffers,
// as weight streaming does: the bandwidth the memory system delivers to a whole chip.
struct StreamRow {
  std::string name;
  double sim_s, simulated_s, fraction_of_peak, spread;
};

StreamRow hbm_stream(const std::string& preset, uint64_t per_tile, uint64_t transfer) {
  const arch::Arch a = arch::load_arch(preset);
  compiler::ProgramBuilder pb(a);
  transfer = std::min(transfer, pb.sram_free() / 4 / 4096 * 4096);  // three buffers fit the tile
  const uint64_t base =
      pb.hbm_region("W", isa::RegionKind::Weights, per_tile * uint64_t(pb.tiles()));
  const int sems[3] = {pb.sem_alloc(), pb.sem_alloc(), pb.sem_alloc()};
  const uint64_t bufs[3] = {pb.sram_alloc(transfer), pb.sram_alloc(transfer),
                            pb.sram_alloc(transfer)};
  const int64_t n = int64_t(per_tile / transfer);
  for (int t = 0; t < pb.tiles(); ++t) {
    auto load = [&](int64_t i) {
      compiler::Block b;
      b.d0 = int64_t(transfer / 2);
      const int64_t src = int64_t(base + uint64_t(t) * per_tile + uint64_t(i) * transfer);
      pb.emit(t, compiler::dma(compiler::sram(int64_t(bufs[i % 3])), compiler::hbm(src), b,
                               isa::Dtype::Bf16, isa::Dtype::None,
                               {sems[i % 3], int64_t(isa::kTileSelf)}));
    };
    for (int64_t i = 0; i < std::min<int64_t>(3, n); ++i) load(i);
    for (int64_t i = 0; i < n; ++i) {
      pb.emit(t, compiler::sem_wait(sems[i % 3]));
      if (i + 3 < n) load(i + 3);
    }
  }
  const isa::Program p = pb.take();
  const auto t0 = std::chrono::steady_clock::now();
  const sim::RunResult r = sim::Simulation(a).run(p);
  const double host = since(t0);
  // How much earlier the first tile finished than the last, as a fraction of the run.
  double first = r.seconds();
  for (int t = 0; t < a.tiles(); ++t) {
    first = std::min(first, r.stats.value(fmt::format("system.chip0.tile{}.halt_ps", t)) * 1e-12);
  }
  const double bw = double(per_tile) * a.tiles() / r.seconds();
  return {fmt::format("hbm stream {} MiB/tile, {} KiB DMAs, {}", per_tile >> 20, transfer >> 10,
                      preset),
          host, r.seconds(), bw / arch::derive(a).hbm_bandwidth, 1.0 - first / r.seconds()};
}

// A whole model step through the facade (compile, simulate, price), sampled or every layer.
struct ModelRow {
  std::string name;
  double host_s, simulated_s, hbm_fraction, compute_fraction;
};

ModelRow model_step(const std::string& preset, const api::RunSpec& spec, bool every_layer) {
  api::RunOptions o;
  if (every_layer) o.sample_layers = 0, o.sample_rounds = 0;
  const api::Report r = api::run(arch::load_arch(preset), spec, o);
  return {fmt::format("{} on {}{}", r.workload, preset, every_layer ? ", every layer" : ""),
          r.host_seconds, r.seconds, r.utilization.at("hbm_bandwidth"),
          r.utilization.at("compute")};
}

// An all-reduce of `bytes` of bf16 on every chip of `a`, the one the compiler picks for the
// system (ring, direct or hierarchical): host time, simulated time, and the latter over the ring
// formula's communication time on the domain's links alone (what a flat ring on one domain would
// take).
struct CollectiveRow {
  std::string name;
  double build_s, sim_s, simulated_s, over_ring;
};

CollectiveRow all_reduce(const std::string& preset, std::vector<std::string> overrides, uint64_t bytes) {
  const arch::Arch a = arch::load_arch(preset, overrides);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = a.system.chips, elements = int64_t(bytes / 2);
  std::vector<compiler::ProgramBuilder> chips;
  for (int64_t c = 0; c < n; ++c) chips.emplace_back(a, int(c));
  compiler::CollectiveSpec s;
  s.elements = elements, s.dtype = isa::Dtype::Bf16;
  for (compiler::ProgramBuilder& pb : chips) {
    s.buf = compiler::hbm(int64_t(pb.hbm_region("buf", isa::RegionKind::Io, bytes)));
    s.scratch = compiler::hbm(int64_t(pb.hbm_region("scratch", isa::RegionKind::Io, bytes)));
    compiler::KernelContext ctx(pb);
    std::vector<int64_t> group(static_cast<size_t>(n));
    std::iota(group.begin(), group.end(), 0);
    compiler::emit_all_reduce(ctx, group, s);
  }
  const isa::Program p = compiler::take_system(chips);
  const double build = since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  const sim::RunResult r = sim::Simulation(a).run(p);
  const double simulate = since(t1);
  const auto topology = sim::make_topology(a.system);
  const double link = topology->links()[0].bandwidth;  // a chip's bundle towards its first neighbour
  const double ring = 2.0 * double(n - 1) / double(n) * double(bytes) / link;
  return {fmt::format("all-reduce {} MiB bf16 on {} ({})", bytes >> 20, preset, topology->name()), build, simulate,
          r.seconds(), r.seconds() / ring};
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::vector<Row> rows;
  rows.push_back(dispatch("maia100-class", quick ? 200 : 2000));
  rows.push_back(gemm("maia100-class", 1024, 1024, 1024));
  if (!quick) {
    rows.push_back(gemm("maia100-class", 4096, 4096, 4096));
    rows.push_back(gemm("h100-sxm", 4096, 4096, 4096));
  }
  std::cout << fmt::format("{:<44} {:>9} {:>9} {:>9} {:>12} {:>8} {:>12} {:>14}\n", "case",
                           "build s", "verify s", "sim s", "simulated", "util", "instructions",
                           "instr/host s");
  for (const Row& r : rows) {
    std::cout << fmt::format(
        "{:<44} {:>9.3f} {:>9.3f} {:>9.3f} {:>10.1f}us {:>7.1f}% {:>12} {:>14.3g}\n", r.name,
        r.build_s, r.verify_s, r.sim_s, r.simulated_s * 1e6, r.utilization * 100, r.instructions,
        double(r.instructions) / r.sim_s);
  }
  api::RunSpec decode;
  decode.model = "llama-3-8b", decode.phase = "decode", decode.batch = 32, decode.context = 1024;
  api::RunSpec prefill;
  prefill.model = "llama-3-8b", prefill.phase = "prefill", prefill.batch = 1, prefill.seq = 2048;
  std::vector<ModelRow> models{model_step("maia100-class", decode, false)};
  if (!quick) {
    models.push_back(model_step("maia100-class", decode, true));
    models.push_back(model_step("maia100-class", prefill, false));
    models.push_back(model_step("h100-sxm", decode, false));
  }
  std::cout << fmt::format("\n{:<62} {:>9} {:>12} {:>9} {:>9}\n", "model step (compile + simulate)",
                           "host s", "simulated", "HBM bw", "compute");
  for (const ModelRow& r : models) {
    std::cout << fmt::format("{:<62} {:>9.3f} {:>10.3f}ms {:>8.1f}% {:>8.1f}%\n", r.name, r.host_s,
                             r.simulated_s * 1e3, r.hbm_fraction * 100, r.compute_fraction * 100);
  }
  std::vector<CollectiveRow> collectives{
      all_reduce("maia100-class", {"system.chips=4", "system.topology=fully_connected"}, 64 << 20)};
  if (!quick) {
    collectives.push_back(all_reduce("maia100-class", {"system.chips=8", "system.topology=ring"}, 256 << 20));
    collectives.push_back(all_reduce("h100-sxm",
                                     {"system.chips=16", "system.scale_out.domain=8", "system.scale_out.count=1",
                                      "system.scale_out.bandwidth=50GB/s", "system.scale_out.latency=5us"},
                                     256 << 20));
  }
  std::cout << fmt::format("\n{:<80} {:>9} {:>9} {:>12} {:>12}\n", "collective", "build s", "sim s", "simulated",
                           "/ ring time");
  for (const CollectiveRow& r : collectives) {
    std::cout << fmt::format("{:<80} {:>9.3f} {:>9.3f} {:>10.1f}us {:>12.2f}\n", r.name, r.build_s, r.sim_s,
                             r.simulated_s * 1e6, r.over_ring);
  }
  std::vector<StreamRow> streams;
  streams.push_back(hbm_stream("maia100-class", 8 << 20, 512 << 10));
  if (!quick) streams.push_back(hbm_stream("h100-sxm", 8 << 20, 512 << 10));
  std::cout << fmt::format("\n{:<50} {:>9} {:>12} {:>10} {:>14}\n", "case", "sim s", "simulated",
                           "of peak", "first done at");
  for (const StreamRow& r : streams) {
    std::cout << fmt::format("{:<50} {:>9.3f} {:>10.1f}us {:>9.1f}% {:>13.1f}%\n", r.name, r.sim_s,
                             r.simulated_s * 1e6, r.fraction_of_peak * 100, (1 - r.spread) * 100);
  }
}
