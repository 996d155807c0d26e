#include "sim/timeline.hpp"

#include <algorithm>

namespace tessera::sim {

namespace {
using Interval = std::pair<Tick, Tick>;

// Orders intervals against a time: those that end by it come before it.
bool ends_by(const Interval& iv, Tick t) { return iv.second <= t; }
}  // namespace

Timeline::Slot Timeline::find(Tick ready, Tick duration) const {
  size_t i = busy_.size();
  if (duration <= 0) return {ready, i};
  // The first interval that ends after `ready`. A busy resource mostly takes requests near the
  // end of its calendar: look at the last few intervals before bisecting the rest.
  for (int k = 0; k < 8 && i > 0 && busy_[i - 1].second > ready; ++k) --i;
  if (i > 0 && busy_[i - 1].second > ready) {
    i = size_t(std::lower_bound(busy_.begin(), busy_.begin() + long(i), ready, ends_by) - busy_.begin());
  }
  // From there, the first gap that holds the reservation.
  Tick start = ready;
  while (i < busy_.size() && busy_[i].first < start + duration) {
    start = std::max(start, busy_[i].second);
    ++i;
  }
  return {start, i};
}

void Timeline::reserve(Slot slot, Tick duration) {
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

void Timeline::forget_before(Tick now) {
  busy_.erase(busy_.begin(), std::lower_bound(busy_.begin(), busy_.end(), now, ends_by));
}

}  // namespace tessera::sim
