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
  if (t < next_refresh_ + g_.tRFC) return;
  const int64_t skipped = (t - next_refresh_ - g_.tRFC) / g_.tREFI;
  next_refresh_ += skipped * g_.tREFI;
  stats_.refreshes += uint64_t(skipped);
  refresh(next_refresh_);
}

Tick HbmChannel::segment(Tick t, uint64_t local, uint64_t bytes, bool write) {
  const uint64_t bank_index = g_.bank_of(local);
  const int64_t row = g_.row_of(local);
  const uint64_t bursts = g_.per_burst.div(local + bytes + g_.burst_bytes - 1) - g_.per_burst.div(local);
  const Tick duration = Tick(double(bursts) * g_.burst_ps + 0.5);
  const bool turn = stats_.read_bytes + stats_.write_bytes > 0 && write != last_write_;
  const Tick turnaround = turn ? (write ? g_.tRTW : g_.tWTR) : 0;
  Bank& b = banks_[bank_index];
  refresh_until(t);
  while (true) {
    Tick column;
    int kind;  // 0 hit, 1 miss, 2 conflict
    if (b.open_row == row) {
      column = std::max(t, b.ready);
      kind = 0;
    } else if (b.open_row < 0) {
      const Tick act = std::max(t, b.ready);
      column = act + g_.tRCD;
      kind = 1;
    } else {
      const Tick pre = std::max({t, b.ready, b.activated + g_.tRAS});
      column = pre + g_.tRP + g_.tRCD;
      kind = 2;
    }
    // The bus idles for the turnaround, then carries the data.
    const Timeline::Slot slot = bus_.find(column + g_.tCL, turnaround + duration);
    const Tick start = slot.start + turnaround;
    const Tick end = start + duration;
    if (end > next_refresh_) {
      refresh(next_refresh_);
      continue;
    }
    bus_.reserve(slot, turnaround + duration);
    if (kind != 0) {
      b.activated = column - g_.tRCD;
      b.open_row = row;
    }
    (kind == 0 ? stats_.row_hits : kind == 1 ? stats_.row_misses : stats_.row_conflicts)++;
    b.ready = start - g_.tCL + duration;  // the bank's next column command
    last_write_ = write;
    stats_.data_busy += duration;
    (write ? stats_.write_bytes : stats_.read_bytes) += bytes;
    return end;
  }
}

Tick HbmChannel::access(Tick t, uint64_t local, uint64_t bytes, bool write) {
  Tick done = t;
  while (bytes > 0) {
    const uint64_t in_row = g_.row_size - g_.per_row.mod(local);
    const uint64_t n = std::min(bytes, in_row);
    done = std::max(done, segment(t, local, n, write));
    local += n;
    bytes -= n;
  }
  return done;
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
