// What simulated work did, in typed counters, and to which region of the program it belongs.
//
// Activity: counts that carry their unit and energy class (MACs by dtype, bytes of SRAM,
// shared memory and HBM, NoC bit-hops, vector element operations, chip-link bits), so energy
// is priced from them rather than from stat names; and, per instance of every shared resource
// (a tile's arrays, vector unit, DMA engine and SRAM ports, a NoC link, a shared-memory
// instance), the time it was busy, for utilisation and the bound.
//
// Attribution: the regions a program marks (`mark id`, one per operator of the compiled graph)
// and their instances (the n-th `mark id` on a tile begins instance n: layer n of a loop).
// Every instruction's work is charged to the region instance current on its tile when it
// issued; a region instance spans from its first mark to the completion of its last
// instruction.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include "isa/dtype.hpp"
#include "sim/time.hpp"

namespace tessera::sim {

enum class Resource : uint8_t { Arrays, Vector, Dma, SramPorts, NocLink, SharedMemory };
inline constexpr int kResourceKinds = 6;
// "arrays", "vector", "dma", "sram_ports", "noc", "shared_memory"
std::string_view resource_name(Resource r);

// The resource instances of a chip, each a slot of Activity::busy, with how many requests it
// serves at once (an SRAM's ports).
struct Slots {
  std::vector<Resource> kind;
  std::vector<int> servers;
  int add(Resource r, int n = 1) {
    kind.push_back(r);
    servers.push_back(n);
    return int(kind.size()) - 1;
  }
  size_t size() const { return kind.size(); }
};

struct Activity {
  std::array<double, isa::kDtypeCount> macs{};
  double sram_read = 0, sram_write = 0;  // bytes: SRAM ports and the arrays' operand paths
  double shared = 0;                     // bytes read and written in shared memory
  double hbm_read = 0, hbm_write = 0;    // bytes
  double noc_bit_hops = 0;
  double vector_elements = 0;
  double link_bits = 0;       // bits x scale-up links crossed
  double scale_out_bits = 0;  // bits x scale-out links crossed
  double instructions = 0;
  std::vector<double> busy;  // ps, per resource slot

  double total_macs() const;
  // this += k * o (busy slots too).
  void add(const Activity& o, double k = 1.0);
  // Per kind of resource, the busiest instance's busy time over `span` ps, divided by its servers.
  std::array<double, kResourceKinds> peak_utilization(const Slots& slots, double span) const;
};

class Attribution {
 public:
  Attribution(const Slots& slots, int tiles);

  struct Region {
    int64_t id = -1;     // -1: work before any mark
    int64_t instance = 0;
    Tick start = 0;      // its first mark
    Tick end = 0;        // its last instruction's completion
    Activity activity;
  };
  // Tile `tile` executes `mark id`: the region index it now charges, and whether this began a
  // region instance no tile had begun before.
  std::pair<int, bool> mark(int tile, int64_t id, bool resume, Tick now);
  Region& operator[](int i) { return regions_[size_t(i)]; }
  const std::deque<Region>& regions() const { return regions_; }
  const Slots& slots() const { return slots_; }

 private:
  const Slots& slots_;
  std::deque<Region> regions_;
  std::map<std::pair<int64_t, int64_t>, int> index_;  // (id, instance) -> region
  std::vector<std::vector<int64_t>> current_;         // per tile and id: its current instance
};

}  // namespace tessera::sim
