// HBM: pseudo-channels with banks, rows and an open-page policy, an address interleaving
// map, all-bank refresh and JEDEC-style timing. Achieved bandwidth and latency emerge from
// these; nothing is a fitted efficiency.
//
// Address map. Global byte address a, granule size G = hbm.interleave, P pseudo-channels:
// granule i = a / G sits in "row" r = i / P of P granules, which holds one granule of every
// pseudo-channel; the channels are rotated by a hash of r, as memory controllers hash upper
// address bits, so that power-of-two strides do not camp on a few channels:
//   pc = (i % P + rotation(r)) % P,  local = r * G + a % G
// A contiguous range therefore still spreads evenly, and each channel's part stays contiguous.
// Within a pseudo-channel, consecutive row-sized blocks go to successive banks, so a stream
// overlaps one bank's activation with another's data, starting from a bank that depends on
// the row (permutation-based interleaving), so that streams at large power-of-two distances
// do not march through the banks in lock step:
//   row = local / (row_size * banks),  bank = (local / row_size + rotation(row)) % banks
//
// Timing of one access to (bank, row) arriving at t, data of `bursts` bursts:
//   row open:      column ready at max(t, bank ready)                        (row hit)
//   row closed:    activate at max(t, bank ready), column ready + tRCD          (row miss)
//   other row:     precharge at max(t, bank ready, activate + tRAS), activate + tRP,
//                  column ready + tRCD                                          (row conflict)
//   data: bursts * tBurst (tBurst = burst_length / data_rate) in the first gap of the data
//         bus at or after column ready + tCL, preceded by tWTR/tRTW when the direction turns.
// So an idle read of one burst takes tRCD + tCL + tBurst.
// The data bus is a reservation calendar, not a queue: like an FR-FCFS controller, data of a
// ready row goes ahead of an access still precharging and activating another bank, while
// each bank's commands keep their order. Refresh: every tREFI (staggered across
// pseudo-channels) the channel stops for tRFC and all rows close; data never overlaps it.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "arch/arch.hpp"
#include "sim/divisor.hpp"
#include "sim/time.hpp"
#include "sim/timeline.hpp"

namespace tessera::sim {

struct HbmGeometry {
  int64_t pcs = 0;          // pseudo-channels on the chip
  int64_t banks = 0;        // per pseudo-channel
  uint64_t row_size = 0;    // bytes
  uint64_t burst_bytes = 0;
  uint64_t interleave = 0;
  uint64_t pc_capacity = 0;
  Tick tRCD = 0, tRP = 0, tCL = 0, tRAS = 0, tRFC = 0, tREFI = 0, tWTR = 0, tRTW = 0;
  double burst_ps = 0;      // duration of one burst on the data bus
  double energy_per_bit = 0;
  // Division by interleave, pcs, row_size, banks and burst_bytes: every access maps addresses.
  Divisor per_granule, per_pcs, per_row, per_banks, per_burst;
  std::vector<Tick> burst_ticks;  // [n]: n bursts on the data bus, rounded to a tick

  static HbmGeometry from(const arch::Arch& a);
  // How long `bytes` occupy a channel's data bus at its peak rate.
  Tick data_time(uint64_t bytes) const { return Tick(double(bytes) / double(burst_bytes) * burst_ps); }
  // local / (row_size * banks), from local / row_size.
  int64_t row_of(uint64_t local) const { return int64_t(per_banks.div(per_row.div(local))); }
  uint64_t bank_of(uint64_t local) const;
};

struct HbmChannelStats {
  uint64_t read_bytes = 0, write_bytes = 0;
  uint64_t row_hits = 0, row_misses = 0, row_conflicts = 0;
  uint64_t refreshes = 0;
  Tick data_busy = 0;  // time the data bus carried data
};

class HbmChannel {
 public:
  HbmChannel(const HbmGeometry& g, int index);

  // Serves `bytes` at pseudo-channel address `local` arriving at `t`; returns when the last
  // data beat has been transferred.
  Tick access(Tick t, uint64_t local, uint64_t bytes, bool write);
  const HbmChannelStats& stats() const { return stats_; }
  // No access will arrive before `now`: drops the bus reservations that ended.
  void forget_before(Tick now) { bus_.forget_before(now); }

 private:
  struct Bank {
    int64_t open_row = -1;
    Tick ready = 0;      // earliest next command
    Tick activated = 0;  // last activate (for tRAS)
  };
  Tick segment(Tick t, uint64_t local, uint64_t bytes, bool write);
  void refresh_until(Tick t);  // t >= next_refresh_ + tRFC
  void refresh(Tick start);

  const HbmGeometry& g_;
  std::vector<Bank> banks_;
  Timeline bus_;
  bool last_write_ = false;
  Tick next_refresh_;
  HbmChannelStats stats_;
};

// Every pseudo-channel of a chip, and the address map.
class Hbm {
 public:
  explicit Hbm(const arch::Arch& a);
  Hbm(const Hbm&) = delete;  // the channels refer to the geometry held here
  Hbm& operator=(const Hbm&) = delete;

  // Calls fn(pc, local, bytes) once per pseudo-channel holding part of [addr, addr + bytes).
  template <class F>
  void split(uint64_t addr, uint64_t bytes, F&& fn) const;

  // Serves a contiguous access arriving at `t` on every channel it touches; returns the
  // completion of the slowest.
  Tick access(Tick t, uint64_t addr, uint64_t bytes, bool write);

  const HbmGeometry& geometry() const { return g_; }
  HbmChannel& channel(int64_t pc) { return channels_[size_t(pc)]; }
  const HbmChannel& channel(int64_t pc) const { return channels_[size_t(pc)]; }
  double peak_bandwidth() const;  // bytes/s

 private:
  HbmGeometry g_;
  std::vector<HbmChannel> channels_;
};

// The rotation of the channels in granule row r (a multiplicative hash of r).
inline uint64_t hbm_row_rotation(uint64_t r) { return (r * 0x9E3779B97F4A7C15ull) >> 40; }

inline uint64_t HbmGeometry::bank_of(uint64_t local) const {
  const uint64_t block = per_row.div(local);
  return per_banks.mod(block + hbm_row_rotation(per_banks.div(block)));
}

// access() and segment() are inline: most accesses are one granule, and a call per access
// and per segment was a good part of its cost.

inline Tick HbmChannel::segment(Tick t, uint64_t local, uint64_t bytes, bool write) {
  const uint64_t bank_index = g_.bank_of(local);
  const int64_t row = g_.row_of(local);
  const uint64_t bursts = g_.per_burst.div(local + bytes + g_.burst_bytes - 1) - g_.per_burst.div(local);
  const Tick duration = g_.burst_ticks[bursts];
  const bool turn = stats_.read_bytes + stats_.write_bytes > 0 && write != last_write_;
  const Tick turnaround = turn ? (write ? g_.tRTW : g_.tWTR) : 0;
  Bank& b = banks_[bank_index];
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

inline Tick HbmChannel::access(Tick t, uint64_t local, uint64_t bytes, bool write) {
  // Refresh windows that ended before t close the rows (checked once: every segment arrives
  // at t, and a refresh a segment waits for moves the next one past t).
  if (t >= next_refresh_ + g_.tRFC) refresh_until(t);
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

template <class F>
void Hbm::split(uint64_t addr, uint64_t bytes, F&& fn) const {
  if (bytes == 0) return;
  const uint64_t g = g_.interleave, P = uint64_t(g_.pcs);
  const uint64_t i0 = g_.per_granule.div(addr), i1 = g_.per_granule.div(addr + bytes - 1);
  const uint64_t head = addr - i0 * g, tail = addr + bytes - i1 * g;
  const uint64_t r0 = g_.per_pcs.div(i0);
  if (i1 < (r0 + 1) * P) {  // within one row: each channel at most once, in rotated order
    const uint64_t r = r0;
    uint64_t pc = g_.per_pcs.mod(i0 - r * P + hbm_row_rotation(r));
    for (uint64_t i = i0; i <= i1; ++i) {
      const uint64_t b = i == i0 ? head : 0, e = i == i1 ? tail : g;
      fn(int64_t(pc), r * g + b, e - b);
      if (++pc == P) pc = 0;
    }
    return;
  }
  // Each channel has one granule per row, at consecutive local addresses: its part runs from
  // its first granule at or after i0 to its last at or before i1, one contiguous local range.
  const uint64_t r1 = g_.per_pcs.div(i1);
  // The rotations of the four granule rows a channel's part can start or end in.
  const uint64_t rot0 = g_.per_pcs.mod(hbm_row_rotation(r0)), rot0n = g_.per_pcs.mod(hbm_row_rotation(r0 + 1));
  const uint64_t rot1 = g_.per_pcs.mod(hbm_row_rotation(r1)), rot1p = g_.per_pcs.mod(hbm_row_rotation(r1 - 1));
  for (uint64_t pc = 0; pc < P; ++pc) {
    // The channel's granule in row r of rotation rot is r * P + slot(rot).
    auto slot = [&](uint64_t rot) {
      const uint64_t s = pc + P - rot;  // < 2P
      return s >= P ? s - P : s;
    };
    uint64_t row_first = r0, row_last = r1, first = r0 * P + slot(rot0), last = r1 * P + slot(rot1);
    if (first < i0) row_first = r0 + 1, first = row_first * P + slot(rot0n);
    if (last > i1) row_last = r1 - 1, last = row_last * P + slot(rot1p);
    if (first > i1 || last < i0 || first > last) continue;
    const uint64_t b = row_first * g + (first == i0 ? head : 0);
    const uint64_t e = row_last * g + (last == i1 ? tail : g);
    fn(int64_t(pc), b, e - b);
  }
}

// A chip-wide memory that also caches HBM (a GPU's L2: chip.shared_memory.hbm_cache of its
// capacity): which 32-byte sectors of HBM it holds, in granules of 16 KiB, the least recently
// used granule out first. A read of held sectors is served by the shared memory instead of
// HBM; sectors read or written whole are held afterwards (writes still go to HBM: write-
// through). A run that covers a sector in part is a miss, so that two tiles reading either
// side of a boundary inside a sector both count their bytes as HBM traffic. Granules coarser
// than a GPU's 128-byte lines keep the lookups per DMA chunk few.
class HbmCache {
 public:
  static constexpr uint64_t kGranule = 16 << 10, kSector = 32;
  explicit HbmCache(uint64_t bytes);
  bool enabled() const { return capacity_ > 0; }
  // Bytes [a, a + n) of one granule are used now: whether all of them were held.
  bool touch(uint64_t a, uint64_t n);
  // Calls fn(address, bytes, held) for the runs of [a, a + n) split at granule boundaries.
  template <class F>
  void walk(uint64_t a, uint64_t n, F&& fn) {
    for (const uint64_t end = a + n; a < end;) {
      const uint64_t k = std::min(end, (a / kGranule + 1) * kGranule) - a;
      fn(a, k, touch(a, k));
      a += k;
    }
  }

 private:
  static_assert(kGranule / kSector % 64 == 0, "a granule's sectors fill whole words");
  static constexpr uint32_t kNone = ~0u;
  // Slots in an array, in a recency list by index, found through an open-addressing table of
  // granule + 1 (0: empty): no allocation per access on the DMA path once the working set is
  // in; both grow with the granules used, up to the capacity.
  struct Slot {
    uint64_t granule = 0;
    uint32_t newer = kNone, older = kNone;
    std::array<uint64_t, kGranule / kSector / 64> sectors{};  // held, one bit each
  };
  uint32_t find(uint64_t granule) const;
  void unlink(uint32_t i);
  void push_newest(uint32_t i);
  void erase_key(uint64_t granule);
  void rehash(size_t size);  // a table of `size` (a power of two) entries
  size_t home(uint64_t granule) const { return size_t((granule * 0x9E3779B97F4A7C15ull) >> shift_); }

  uint64_t capacity_ = 0;  // granules
  std::vector<Slot> slots_;
  uint32_t newest_ = kNone, oldest_ = kNone;
  std::vector<uint64_t> keys_;    // granule + 1, or 0
  std::vector<uint32_t> values_;  // the slot of keys_[i]
  int shift_ = 64;
};

}  // namespace tessera::sim
