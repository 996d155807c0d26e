// A shared resource's reservation calendar (a NoC link, an SRAM port, a shared-memory port).
// Requests reserve a duration at or after their ready time in the earliest gap that fits, so
// a request computed ahead of time does not push back one that arrives earlier; contention
// emerges from overlapping reservations, never from a constant.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "sim/time.hpp"

namespace tessera::sim {

class Timeline {
 public:
  // Where a reservation can go: its start, and its place among the reserved intervals.
  struct Slot {
    Tick start;
    size_t index;
  };
  // The earliest slot for a `duration`-long reservation at or after `ready`.
  Slot find(Tick ready, Tick duration) const;
  // Reserves the slot find() returned (nothing reserved since): [start, start + duration).
  void reserve(Slot slot, Tick duration);
  // Reserves the earliest slot; returns its start.
  Tick reserve(Tick ready, Tick duration) {
    const Slot s = find(ready, duration);
    reserve(s, duration);
    return s.start;
  }
  // Forgets reservations that ended at or before `now` (no request can start before now).
  void forget_before(Tick now);
  Tick busy() const { return busy_total_; }  // total time reserved
  size_t intervals() const { return busy_.size(); }

 private:
  std::vector<std::pair<Tick, Tick>> busy_;  // sorted, disjoint [start, end)
  Tick busy_total_ = 0;
};

}  // namespace tessera::sim
