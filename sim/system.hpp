// A system: its chips and the chip-to-chip fabric between them (the topology's links, each
// direction a reservation calendar with the bundle's bandwidth and latency). The system binds
// every chip's comm unit to the fabric and the fabric to every chip, through ports; stats of
// the fabric are rooted at `system.` (`system.link.c0-c1.bytes`).
#pragma once

#include <systemc>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "sim/chip.hpp"
#include "sim/fabric.hpp"
#include "sim/timeline.hpp"
#include "sim/topology.hpp"

namespace tessera::sim {

class Fabric : public sc_core::sc_module, public FabricIf {
 public:
  Fabric(sc_core::sc_module_name name, const arch::Arch& a, Stats& stats, Trace* trace);
  sc_core::sc_export<FabricIf> port;         // the chips' way in
  sc_core::sc_port<CommIf, 0> chips;         // to every chip, in chip order
  Tick transmit(Piece piece, Tick ready, Activity& act, PowerMeter& meter) override;
  const Topology& topology() const { return *topology_; }

 private:
  struct Link {
    LinkSpec spec;
    Timeline calendar;
    double& bytes;
    double& busy;
    int track = -1;
  };
  std::unique_ptr<Topology> topology_;
  std::vector<std::unique_ptr<Link>> links_;
  std::unordered_map<int64_t, std::vector<int>> routes_;  // src * chips + dst, once used
  Scheduler scheduler_;
  Trace* trace_;
};

class System {
 public:
  System(const arch::Arch& a, const SimOptions& opt, Stats& stats, const std::vector<ChipMemory*>& memories,
         Trace* trace);
  std::vector<std::unique_ptr<Chip>>& chips() { return chips_; }

 private:
  std::unique_ptr<Fabric> fabric_;
  std::vector<std::unique_ptr<Chip>> chips_;
};

}  // namespace tessera::sim
