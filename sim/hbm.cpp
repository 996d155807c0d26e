#include "sim/hbm.hpp"

#include <algorithm>
#include <bit>

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

HbmCache::HbmCache(uint64_t bytes) : capacity_(std::min<uint64_t>(bytes / kGranule, kNone - 1)) {
  if (capacity_ > 0) rehash(16);
}

void HbmCache::rehash(size_t size) {
  std::vector<uint64_t> keys(size, 0);
  std::vector<uint32_t> values(size, 0);
  keys.swap(keys_), values.swap(values_);
  shift_ = 64 - std::countr_zero(size);
  const size_t mask = size - 1;
  for (size_t j = 0; j < keys.size(); ++j) {
    if (keys[j] == 0) continue;
    size_t k = home(keys[j] - 1);
    while (keys_[k] != 0) k = (k + 1) & mask;
    keys_[k] = keys[j], values_[k] = values[j];
  }
}

uint32_t HbmCache::find(uint64_t granule) const {
  const size_t mask = keys_.size() - 1;
  for (size_t i = home(granule);; i = (i + 1) & mask) {
    if (keys_[i] == 0) return kNone;
    if (keys_[i] == granule + 1) return values_[i];
  }
}

void HbmCache::erase_key(uint64_t granule) {
  const size_t mask = keys_.size() - 1;
  size_t i = home(granule);
  while (keys_[i] != granule + 1) i = (i + 1) & mask;
  keys_[i] = 0;
  // Backward shift: a later key of the probe run moves into the hole unless its home lies
  // cyclically in (hole, its place].
  for (size_t j = (i + 1) & mask; keys_[j] != 0; j = (j + 1) & mask) {
    const size_t h = home(keys_[j] - 1);
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (stays) continue;
    keys_[i] = keys_[j], values_[i] = values_[j], keys_[j] = 0;
    i = j;
  }
}

void HbmCache::unlink(uint32_t i) {
  Slot& s = slots_[i];
  (s.newer != kNone ? slots_[s.newer].older : newest_) = s.older;
  (s.older != kNone ? slots_[s.older].newer : oldest_) = s.newer;
}

void HbmCache::push_newest(uint32_t i) {
  slots_[i].newer = kNone, slots_[i].older = newest_;
  if (newest_ != kNone) slots_[newest_].newer = i;
  newest_ = i;
  if (oldest_ == kNone) oldest_ = i;
}

bool HbmCache::touch(uint64_t a, uint64_t n) {
  const uint64_t g = a / kGranule, off = a % kGranule;
  uint32_t i = find(g);
  if (i == kNone) {
    if (slots_.size() < capacity_) {  // slots and table grow with the granules used, not the capacity
      i = uint32_t(slots_.size());
      slots_.emplace_back();
      if (2 * slots_.size() > keys_.size()) rehash(2 * keys_.size());  // at most half full
    } else {  // the least recently used granule makes room
      i = oldest_;
      unlink(i);
      erase_key(slots_[i].granule);
    }
    slots_[i].granule = g, slots_[i].sectors = {};
    const size_t mask = keys_.size() - 1;
    size_t k = home(g);
    while (keys_[k] != 0) k = (k + 1) & mask;
    keys_[k] = g + 1, values_[k] = i;
    push_newest(i);
  } else if (i != newest_) {
    unlink(i);
    push_newest(i);
  }
  // Sectors [s0, s1) lie wholly inside the bytes; a sector they cover in part is not held.
  const uint64_t s0 = (off + kSector - 1) / kSector, s1 = (off + n) / kSector;
  bool held = off % kSector == 0 && (off + n) % kSector == 0 && s1 > s0;
  std::array<uint64_t, kGranule / kSector / 64>& sectors = slots_[i].sectors;
  for (uint64_t w = s0 / 64; s1 > s0 && w <= (s1 - 1) / 64; ++w) {
    const uint64_t lo = std::max(s0, w * 64) - w * 64, hi = std::min(s1, w * 64 + 64) - w * 64;
    const uint64_t bits = (hi == 64 ? ~0ull : (1ull << hi) - 1) & ~((1ull << lo) - 1);
    held = held && (sectors[w] & bits) == bits;
    sectors[w] |= bits;
  }
  return held;
}

}  // namespace tessera::sim
