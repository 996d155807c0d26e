#include "sim/activity.hpp"

#include <algorithm>

namespace tessera::sim {

std::string_view resource_name(Resource r) {
  switch (r) {
    case Resource::Arrays: return "arrays";
    case Resource::Vector: return "vector";
    case Resource::Dma: return "dma";
    case Resource::SramPorts: return "sram_ports";
    case Resource::NocLink: return "noc";
    case Resource::SharedMemory: return "shared_memory";
  }
  return "?";
}

double Activity::total_macs() const {
  double n = 0;
  for (double m : macs) n += m;
  return n;
}

void Activity::add(const Activity& o, double k) {
  for (size_t d = 0; d < macs.size(); ++d) macs[d] += k * o.macs[d];
  sram_read += k * o.sram_read, sram_write += k * o.sram_write, shared += k * o.shared;
  hbm_read += k * o.hbm_read, hbm_write += k * o.hbm_write, noc_bit_hops += k * o.noc_bit_hops;
  vector_elements += k * o.vector_elements, link_bits += k * o.link_bits;
  scale_out_bits += k * o.scale_out_bits;
  instructions += k * o.instructions;
  if (busy.size() < o.busy.size()) busy.resize(o.busy.size(), 0.0);
  for (size_t i = 0; i < o.busy.size(); ++i) busy[i] += k * o.busy[i];
}

std::array<double, kResourceKinds> Activity::peak_utilization(const Slots& slots, double span) const {
  std::array<double, kResourceKinds> u{};
  if (span <= 0) return u;
  for (size_t i = 0; i < busy.size() && i < slots.size(); ++i) {
    double& peak = u[size_t(slots.kind[i])];
    peak = std::max(peak, busy[i] / double(slots.servers[i]) / span);
  }
  return u;
}

Attribution::Attribution(const Slots& slots, int tiles) : slots_(slots), current_(size_t(tiles)) {
  regions_.emplace_back();  // region 0: work before any mark
  regions_.back().activity.busy.assign(slots.size(), 0.0);
}

std::pair<int, bool> Attribution::mark(int tile, int64_t id, bool resume, Tick now) {
  std::vector<int64_t>& cur = current_[size_t(tile)];
  if (cur.size() <= size_t(id)) cur.resize(size_t(id) + 1, -1);
  int64_t& instance = cur[size_t(id)];
  if (!resume || instance < 0) ++instance;
  const auto [it, fresh] = index_.try_emplace({id, instance}, int(regions_.size()));
  if (fresh) {
    regions_.emplace_back();
    Region& r = regions_.back();
    r.id = id, r.instance = instance, r.start = now, r.end = now;
    r.activity.busy.assign(slots_.size(), 0.0);
  }
  return {it->second, fresh};
}

}  // namespace tessera::sim
