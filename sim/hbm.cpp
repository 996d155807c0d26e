#include "sim/hbm.hpp"

#include <algorithm>

namespace tessera::sim {

HbmGeometry HbmGeometry::from(const arch::Arch& a) {
  const arch::HbmParams& h = a.hbm;
  HbmGeometry g;
  g.pcs = a.hbm_pseudo_channels();
  g.banks = h.banks;
  g.row_size = uint64_t(h.row_size);
  g.burst_bytes = uint64_t(h.bus_width / h.pseudo_channels) * uint64_t(h.timing.burst_length) / 8;
  g.interleave = uint64_t(h.interleave);
  g.pc_capacity = uint64_t(h.capacity) / uint64_t(g.pcs);
  g.tRCD = seconds_to_ticks(h.timing.tRCD);
  g.tRP = seconds_to_ticks(h.timing.tRP);
  g.tCL = seconds_to_ticks(h.timing.tCL);
  g.tRAS = seconds_to_ticks(h.timing.tRAS);
  g.tRFC = seconds_to_ticks(h.timing.tRFC);
  g.tREFI = seconds_to_ticks(h.timing.tREFI);
  g.tWTR = seconds_to_ticks(h.timing.tWTR);
  g.tRTW = seconds_to_ticks(h.timing.tRTW);
  g.burst_ps = double(h.timing.burst_length) / h.data_rate * 1e12;
  g.energy_per_bit = h.energy_per_bit;
  g.per_granule = Divisor(g.interleave);
  g.per_pcs = Divisor(uint64_t(g.pcs));
  g.per_row = Divisor(g.row_size);
  g.per_banks = Divisor(uint64_t(g.banks));
  g.per_burst = Divisor(g.burst_bytes);
  // A segment lies within a row, whose size is a multiple of the burst.
  for (uint64_t n = 0; n <= g.row_size / g.burst_bytes; ++n) g.burst_ticks.push_back(Tick(double(n) * g.burst_ps + 0.5));
  return g;
}

HbmChannel::HbmChannel(const HbmGeometry& g, int index)
    : g_(g), banks_(size_t(g.banks)),
      // Stagger refreshes across channels so they do not all stop at once.
      next_refresh_(g.tREFI + g.tREFI * index / std::max<int64_t>(g.pcs, 1)) {}

void HbmChannel::refresh(Tick start) {
  // The refresh waits for data already on the bus, then closes every row.
  const Tick r = bus_.reserve(start, g_.tRFC);
  for (Bank& b : banks_) {
    b.open_row = -1;
    b.ready = std::max(b.ready, r + g_.tRFC);
  }
  next_refresh_ += g_.tREFI;
  ++stats_.refreshes;
}

void HbmChannel::refresh_until(Tick t) {
  // Refresh windows that ended before t happened while the channel was idle: rows closed.
  const int64_t skipped = (t - next_refresh_ - g_.tRFC) / g_.tREFI;
  next_refresh_ += skipped * g_.tREFI;
  stats_.refreshes += uint64_t(skipped);
  refresh(next_refresh_);
}

Hbm::Hbm(const arch::Arch& a) : g_(HbmGeometry::from(a)) {
  channels_.reserve(size_t(g_.pcs));
  for (int64_t i = 0; i < g_.pcs; ++i) channels_.emplace_back(g_, int(i));
}

Tick Hbm::access(Tick t, uint64_t addr, uint64_t bytes, bool write) {
  Tick done = t;
  split(addr, bytes, [&](int64_t pc, uint64_t local, uint64_t n) {
    done = std::max(done, channels_[size_t(pc)].access(t, local, n, write));
  });
  return done;
}

double Hbm::peak_bandwidth() const {
  return double(g_.pcs) * double(g_.burst_bytes) / (g_.burst_ps * 1e-12);
}

}  // namespace tessera::sim
