// Running a program on a system: the one entry point of the simulator. Each run builds the
// SystemC model in a fresh simulation context and tears it down afterwards, so one process can
// run many simulations (sweeps, tests, Python). SystemC is process-global: runs are serialised.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "isa/program.hpp"
#include "sim/chip.hpp"
#include "sim/stats.hpp"
#include "sim/trace.hpp"

namespace tessera::sim {

enum class Mode { Performance, Functional };

struct RunResult {
  Tick time = 0;          // when the last tile halted
  double seconds() const { return ticks_to_seconds(time); }
  Stats stats;
  Activity activity;      // the whole run's, summed over regions and chips
  Slots slots;            // resource instances of a chip
  std::vector<Attribution::Region> regions;  // every chip's, in the order they began
  std::vector<Snapshot> snapshots;           // chip 0's (SimOptions::snapshot_marks)
  uint64_t instructions = 0;
  Tick power_window = 0;
  std::vector<std::vector<double>> energy_windows;  // per chip: dynamic joules per power window
};

// Raised when every tile is blocked and nothing is in flight (the message lists each blocked
// tile, its instruction and what it waits for), or when the simulated-time limit is reached.
class SimError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Simulation {
 public:
  explicit Simulation(arch::Arch arch, Mode mode = Mode::Performance, SimOptions options = {});
  ~Simulation();

  const arch::Arch& arch() const { return arch_; }
  Mode mode() const { return mode_; }

  // Functional mode: the chip's memories, to load inputs before run() and read results after.
  ChipMemory& memory(int chip = 0);

  // Runs `program` to completion. With `trace`, records a Perfetto trace into it.
  RunResult run(const isa::Program& program, Trace* trace = nullptr);

 private:
  arch::Arch arch_;
  Mode mode_;
  SimOptions options_;
  std::vector<std::unique_ptr<ChipMemory>> memories_;
};

}  // namespace tessera::sim
