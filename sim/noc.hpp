// The on-chip network. Mesh: tiles at (t % cols, t / cols), XY routing, one link per
// direction between neighbours, each carrying link_width bytes per NoC cycle after
// hop_cycles of latency; HBM pseudo-channels enter at the west and east edge routers, and a
// cluster's shared memory sits at its first tile's router. Crossbar (GPUs): every tile has
// one port into and one out of the switch; memories have their own ports, whose bandwidth is
// the memory's own.
//
// A transfer of b bytes over links l1..lh, ready at t, with d = b / link bandwidth:
//   s1 = reserve(l1, t, d), s(i+1) = reserve(l(i+1), s(i) + hop, d), arrival = sh + d + hop
// (virtual cut-through). Flows sharing a link share its bandwidth through the reservations.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "sim/activity.hpp"
#include "sim/energy.hpp"
#include "sim/stats.hpp"
#include "sim/timeline.hpp"
#include "sim/trace.hpp"

namespace tessera::sim {

class Noc {
 public:
  // `meter` (optional) is charged the energy of every bit-hop; each limited link takes a slot
  // of `slots`.
  Noc(const arch::Arch& a, Stats& stats, const std::string& prefix, Slots& slots, PowerMeter* meter = nullptr);

  int tile_node(int64_t tile) const { return int(tile); }
  int hbm_node(int64_t pc) const { return hbm_nodes_[size_t(pc)]; }
  // The HBM's NoC ports (its distinct nodes), numbered from 0, and the one of each channel.
  int hbm_ports() const { return hbm_ports_; }
  int hbm_port(int64_t pc) const { return hbm_port_of_[size_t(pc)]; }
  int shared_node(int64_t instance) const { return shared_nodes_[size_t(instance)]; }
  int nodes() const { return nodes_; }

  int hops(int a, int b) const {
    if (a == b) return 0;
    if (!mesh_) return 1;
    const Coord p = coords_[size_t(a)], q = coords_[size_t(b)];
    return std::abs(p.x - q.x) + std::abs(p.y - q.y);
  }
  Tick hop_time() const { return hop_; }
  // Latency of a small message (a request, a semaphore signal): hops x hop time.
  Tick latency(int a, int b) const { return Tick(hops(a, b)) * hop_; }
  // Moves `bytes` from node a to node b, ready at t; returns when the last byte arrives. The
  // links' busy time and the bit-hops are charged to `act`.
  Tick transfer(Tick t, int a, int b, uint64_t bytes, Activity& act);
  // The same for bytes that become ready one after another from `first` to `last`, cut
  // through: they leave as they come, and the last one still crosses the path (its latency
  // and one flit) after `last`.
  Tick transfer(Tick first, Tick last, int a, int b, uint64_t bytes, Activity& act);
  void forget_before(Tick now);
  // Records each limited link's utilisation on its own trace track.
  void set_trace(Trace* trace, int chip);

  struct Link {
    std::string name;  // "x1y2.east", "tile5.up"
    Timeline timeline;
    bool limited = true;  // false for memory-side crossbar ports
    double* bytes = nullptr;
    int track = -1;
    int slot = -1;
  };
  const std::vector<Link>& links() const { return links_; }
  double link_bandwidth() const { return bytes_per_second_; }

 private:
  void path(int a, int b, std::vector<int>& out) const;
  int mesh_link(int node, int dir) const { return node * 4 + dir; }

  bool mesh_;
  int cols_, rows_, tiles_, nodes_;
  Tick hop_;
  double bytes_per_second_;
  double ps_per_byte_;
  uint64_t flit_bytes_;
  std::vector<int> hbm_nodes_, hbm_port_of_;  // per pseudo-channel
  int hbm_ports_ = 0;
  std::vector<int> shared_nodes_;
  struct Coord {
    int x, y;
  };
  std::vector<Coord> coords_;  // mesh position of each node (hops are counted per HBM access)
  std::vector<Link> links_;
  std::vector<int> scratch_path_;
  Trace* trace_ = nullptr;
  PowerMeter* meter_;
  double& bit_hops_;
  double& bytes_;
};

}  // namespace tessera::sim
