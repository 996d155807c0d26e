#include "sim/simulation.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <mutex>

#include "sim/system.hpp"

// libsystemc refers to sc_main; Tessera drives the kernel itself (sc_start per run).
extern "C" __attribute__((visibility("default"))) int sc_main(int, char**) { return 0; }

namespace tessera::sim {
namespace {

std::mutex& kernel_mutex() {
  static std::mutex m;
  return m;
}

// A fresh SystemC kernel context for one run, deleted afterwards.
class FreshContext {
 public:
  FreshContext() {
    setenv("SYSTEMC_DISABLE_COPYRIGHT_MESSAGE", "1", 0);
    context_ = new sc_core::sc_simcontext;
    sc_core::sc_curr_simcontext = context_;
    sc_core::sc_default_global_context = context_;
  }
  ~FreshContext() {
    delete context_;
    sc_core::sc_curr_simcontext = nullptr;
    sc_core::sc_default_global_context = nullptr;
  }
  FreshContext(const FreshContext&) = delete;
  FreshContext& operator=(const FreshContext&) = delete;

 private:
  sc_core::sc_simcontext* context_;
};

// SystemC 2.3.4 deletes a context's processes after unlinking each from its list, and then
// searches the list for it: time quadratic in the processes (about five per tile; 72 GPUs: 25 s).
// Processes killed first are deleted while still listed, and found at once when killed newest
// first (the list starts with the newest).
void collect_processes(const std::vector<sc_core::sc_object*>& objects, std::vector<sc_core::sc_object*>& out) {
  for (sc_core::sc_object* o : objects) {
    if (std::string_view(o->kind()) == "sc_method_process") out.push_back(o);
    collect_processes(o->get_child_objects(), out);
  }
}

void kill_processes_newest_first() {
  std::vector<sc_core::sc_object*> processes;
  collect_processes(sc_core::sc_get_top_level_objects(), processes);
  for (auto p = processes.rbegin(); p != processes.rend(); ++p) sc_core::sc_process_handle(*p).kill();
}

}  // namespace

Simulation::Simulation(arch::Arch arch, Mode mode, SimOptions options)
    : arch_(std::move(arch)), mode_(mode), options_(options) {
  options_.functional = mode == Mode::Functional;
  if (mode == Mode::Functional) {
    for (int64_t c = 0; c < arch_.system.chips; ++c) {
      auto m = std::make_unique<ChipMemory>();
      m->sram.resize(size_t(arch_.tiles()));
      m->shared.resize(size_t(arch_.shared_memory_instances()));
      memories_.push_back(std::move(m));
    }
  }
}

Simulation::~Simulation() = default;

ChipMemory& Simulation::memory(int chip) {
  if (mode_ != Mode::Functional) throw SimError("memory contents exist only in functional mode");
  if (chip < 0 || size_t(chip) >= memories_.size()) {
    throw SimError(fmt::format("chip {}: {} has {} chip(s)", chip, arch_.name, memories_.size()));
  }
  return *memories_[size_t(chip)];
}

RunResult Simulation::run(const isa::Program& program, Trace* trace) {
  std::lock_guard<std::mutex> lock(kernel_mutex());
  RunResult result;
  for (const isa::Stream& s : program.streams) {
    if (int64_t(s.chip) >= arch_.system.chips || int64_t(s.tile) >= arch_.tiles()) {
      throw SimError(fmt::format("the program has a stream for chip {} tile {}, beyond {} ({} chips of {} tiles)", s.chip,
                                 s.tile, arch_.name, arch_.system.chips, arch_.tiles()));
    }
  }
  {
    FreshContext context;
    std::vector<ChipMemory*> memories;
    for (auto& m : memories_) memories.push_back(m.get());
    std::optional<System> system;
    try {
      system.emplace(arch_, options_, result.stats, memories, trace);
    } catch (const std::invalid_argument& e) {
      throw SimError(fmt::format("{}: {}", arch_.name, e.what()));
    }
    std::vector<std::unique_ptr<Chip>>& chips = system->chips();
    for (auto& c : chips) c->load(program);
    try {
      if (options_.time_limit > 0) {
        sc_core::sc_start(ticks(options_.time_limit));
      } else {
        sc_core::sc_start();
      }
    } catch (const sc_core::sc_report& r) {
      throw SimError(r.get_msg());
    }
    // Unmatched messages explain a deadlock; without one they are an error of their own.
    std::string blocked, unmatched;
    for (auto& c : chips) blocked += c->deadlock_report(), unmatched += c->comm().pending_report();
    if (!blocked.empty()) blocked += unmatched;
    if (!blocked.empty()) {
      const bool limit = options_.time_limit > 0 && sc_core::sc_pending_activity();
      throw SimError(limit ? fmt::format("simulated-time limit of {} s reached; unfinished tiles:\n{}",
                                         ticks_to_seconds(options_.time_limit), blocked)
                           : fmt::format("deadlock at {} s: every unfinished tile is blocked and nothing is in flight:\n{}",
                                         ticks_to_seconds(now_ticks()), blocked));
    }
    if (!unmatched.empty()) throw SimError("messages were sent and never received:\n" + unmatched);
    for (auto& c : chips) {
      c->collect_hbm_stats();
      result.energy_windows.push_back(c->meter().joules());
      for (const Attribution::Region& r : c->attribution().regions()) {
        result.regions.push_back(r);
        result.activity.add(r.activity);
      }
    }
    result.slots = chips.front()->slots();
    result.snapshots = chips.front()->snapshots();
    result.power_window = options_.power_window;
    for (const Stat& s : result.stats.all()) {
      if (s.name.ends_with(".halt_ps")) result.time = std::max(result.time, Tick(s.value));
      if (s.name.ends_with(".instructions")) result.instructions += uint64_t(s.value);
    }
    kill_processes_newest_first();
    system.reset();  // modules go before their context
  }
  return result;
}

}  // namespace tessera::sim
