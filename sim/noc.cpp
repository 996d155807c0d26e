#include "sim/noc.hpp"

namespace tessera::sim {
namespace {
enum Dir { kEast = 0, kWest = 1, kNorth = 2, kSouth = 3 };
constexpr const char* kDirNames[] = {"east", "west", "north", "south"};
}  // namespace

Noc::Noc(const arch::Arch& a, Stats& stats, const std::string& prefix, Slots& slots, PowerMeter* meter)
    : mesh_(a.chip.noc.topology == arch::NocTopology::Mesh),
      cols_(int(a.chip.mesh.cols)),
      rows_(int(a.chip.mesh.rows)),
      tiles_(int(a.tiles())),
      hop_(Clock(a.chip.noc.clock).cycles(double(a.chip.noc.hop_cycles))),
      bytes_per_second_(a.chip.noc.link_width * a.chip.noc.clock),
      ps_per_byte_(1e12 / bytes_per_second_),
      flit_bytes_(uint64_t(a.chip.noc.link_width)),
      meter_(meter),
      bit_hops_(stats.add(prefix + ".bit_hops", "bit*hop", "bits moved times hops travelled (NoC energy)")),
      bytes_(stats.add(prefix + ".bytes", "bytes", "bytes carried over the NoC")) {
  const int64_t instances = a.shared_memory_instances();
  if (mesh_) {
    nodes_ = tiles_;
    for (int n = 0; n < nodes_; ++n) coords_.push_back({n % cols_, n / cols_});
    // Pseudo-channels go round the edge routers: west and east of each row in turn.
    std::vector<int> edge;
    for (int y = 0; y < rows_; ++y) {
      edge.push_back(y * cols_);
      if (cols_ > 1) edge.push_back(y * cols_ + cols_ - 1);
    }
    hbm_ports_ = int(edge.size());
    for (int64_t pc = 0; pc < a.hbm_pseudo_channels(); ++pc) {
      hbm_port_of_.push_back(int(size_t(pc) % edge.size()));
      hbm_nodes_.push_back(edge[size_t(hbm_port_of_.back())]);
    }
    for (int64_t i = 0; i < instances; ++i) {
      shared_nodes_.push_back(instances == 1 ? (rows_ / 2) * cols_ + cols_ / 2 : int(i * a.chip.cluster_size));
    }
    links_.resize(size_t(nodes_) * 4);
    for (int n = 0; n < nodes_; ++n) {
      for (int d = 0; d < 4; ++d) {
        Link& l = links_[size_t(mesh_link(n, d))];
        l.name = "x" + std::to_string(n % cols_) + "y" + std::to_string(n / cols_) + "." + kDirNames[d];
      }
    }
  } else {
    // Tiles, then one port per HBM stack, then one per shared-memory instance.
    const int stacks = int(a.hbm.stacks);
    nodes_ = tiles_ + stacks + int(instances);
    const int64_t per_stack = a.hbm.channels_per_stack * a.hbm.pseudo_channels;
    hbm_ports_ = stacks;
    for (int64_t pc = 0; pc < a.hbm_pseudo_channels(); ++pc) {
      hbm_port_of_.push_back(int(pc / per_stack));
      hbm_nodes_.push_back(tiles_ + hbm_port_of_.back());
    }
    for (int64_t i = 0; i < instances; ++i) shared_nodes_.push_back(tiles_ + stacks + int(i));
    links_.resize(size_t(nodes_) * 2);
    for (int n = 0; n < nodes_; ++n) {
      const std::string node = n < tiles_ ? "tile" + std::to_string(n)
                               : n < tiles_ + stacks ? "hbm" + std::to_string(n - tiles_)
                                                     : "shared" + std::to_string(n - tiles_ - stacks);
      links_[size_t(2 * n)].name = node + ".up";
      links_[size_t(2 * n + 1)].name = node + ".down";
      links_[size_t(2 * n)].limited = links_[size_t(2 * n + 1)].limited = n < tiles_;
    }
  }
  for (Link& l : links_) {
    if (!l.limited) continue;
    l.bytes = &stats.add(prefix + ".link." + l.name + ".bytes", "bytes", "bytes carried by this link");
    l.slot = slots.add(Resource::NocLink);
  }
}

void Noc::path(int a, int b, std::vector<int>& out) const {
  out.clear();
  if (a == b) return;
  if (!mesh_) {
    out.push_back(2 * a);
    out.push_back(2 * b + 1);
    return;
  }
  int x = a % cols_, y = a / cols_;
  const int bx = b % cols_, by = b / cols_;
  while (x != bx) {  // X first
    const int dir = bx > x ? kEast : kWest;
    out.push_back(mesh_link(y * cols_ + x, dir));
    x += bx > x ? 1 : -1;
  }
  while (y != by) {
    const int dir = by > y ? kSouth : kNorth;
    out.push_back(mesh_link(y * cols_ + x, dir));
    y += by > y ? 1 : -1;
  }
}

Tick Noc::transfer(Tick t, int a, int b, uint64_t bytes, Activity& act) {
  if (a == b || bytes == 0) return t;
  path(a, b, scratch_path_);
  const Tick d = Tick(double(bytes) * ps_per_byte_ + 0.5);
  Tick start = t;
  for (size_t i = 0; i < scratch_path_.size(); ++i) {
    Link& l = links_[size_t(scratch_path_[i])];
    // Each mesh hop adds its latency; a crossbar's two ports are one traversal.
    const Tick ready = i == 0 ? t : start + (mesh_ ? hop_ : 0);
    if (l.limited) {
      start = l.timeline.reserve(ready, d);
      *l.bytes += double(bytes);
      act.busy[size_t(l.slot)] += double(d);
      if (trace_) trace_->busy(l.track, start, start + d);
    } else {
      start = ready;
    }
  }
  const double bit_hops = double(bytes) * 8.0 * hops(a, b);
  bit_hops_ += bit_hops;
  act.noc_bit_hops += bit_hops;
  bytes_ += double(bytes);
  if (meter_) meter_->add(t, start + d + hop_, bit_hops * meter_->prices().noc);
  return start + d + hop_;
}

Tick Noc::transfer(Tick first, Tick last, int a, int b, uint64_t bytes, Activity& act) {
  const Tick streamed = transfer(first, a, b, bytes, act);
  if (a == b) return std::max(streamed, last);
  const Tick flit = Tick(double(std::min(bytes, flit_bytes_)) * ps_per_byte_ + 0.5);
  return std::max(streamed, last + latency(a, b) + flit);
}

void Noc::set_trace(Trace* trace, int chip) {
  trace_ = trace;
  for (Link& l : links_) {
    if (l.limited) l.track = trace->track("noc." + l.name, chip);
  }
}

void Noc::forget_before(Tick now) {
  for (Link& l : links_) l.timeline.forget_before(now);
}

}  // namespace tessera::sim
