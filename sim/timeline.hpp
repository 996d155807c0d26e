// A shared resource's reservation calendar (a NoC link, an SRAM port, a shared-memory port).
// Requests reserve a duration at or after their ready time in the earliest gap that fits, so
// a request computed ahead of time does not push back one that arrives earlier; contention
// emerges from overlapping reservations, never from a constant.
#pragma once

#include <algorithm>
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
  // The first of the first `n` intervals that ends after `t` (bisection).
  size_t first_ending_after(Tick t, size_t n) const;

  std::vector<std::pair<Tick, Tick>> busy_;  // sorted, disjoint [start, end)
  Tick busy_total_ = 0;
};

// Defined here so that callers on every HBM access and NoC hop inline them.

inline Timeline::Slot Timeline::find(Tick ready, Tick duration) const {
  size_t i = busy_.size();
  if (duration <= 0) return {ready, i};
  // The first interval that ends after `ready`. A busy resource mostly takes requests near the
  // end of its calendar: look at the last few intervals before bisecting the rest.
  for (int k = 0; k < 8 && i > 0 && busy_[i - 1].second > ready; ++k) --i;
  if (i > 0 && busy_[i - 1].second > ready) i = first_ending_after(ready, i);
  // From there, the first gap that holds the reservation.
  Tick start = ready;
  while (i < busy_.size() && busy_[i].first < start + duration) {
    start = std::max(start, busy_[i].second);
    ++i;
  }
  return {start, i};
}

inline void Timeline::reserve(Slot slot, Tick duration) {
  busy_total_ += duration;
  if (duration <= 0) return;
  // Intervals before `index` end by the start and the one at `index` begins at or after the
  // end: insert [start, end) there, merged with neighbours that touch it.
  const Tick start = slot.start, end = start + duration;
  const size_t i = slot.index;
  const bool joins_previous = i > 0 && busy_[i - 1].second == start;
  const bool joins_next = i < busy_.size() && busy_[i].first == end;
  if (joins_previous && joins_next) {
    busy_[i - 1].second = busy_[i].second;
    busy_.erase(busy_.begin() + long(i));
  } else if (joins_previous) {
    busy_[i - 1].second = end;
  } else if (joins_next) {
    busy_[i].first = start;
  } else {
    busy_.insert(busy_.begin() + long(i), {start, end});
  }
}

}  // namespace tessera::sim
