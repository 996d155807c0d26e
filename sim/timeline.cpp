#include "sim/timeline.hpp"

#include <algorithm>

namespace tessera::sim {

namespace {
using Interval = std::pair<Tick, Tick>;

// The first interval at or after which a reservation starting no earlier than `ready` fits,
// and that start.
template <class It>
std::pair<It, Tick> fit(It begin, It end, Tick ready, Tick duration) {
  // A busy resource mostly takes requests at the end of its calendar.
  if (begin == end || std::prev(end)->second <= ready) return {end, ready};
  // Intervals that end by `ready` cannot delay it.
  It it = std::lower_bound(begin, end, ready, [](const Interval& iv, Tick t) { return iv.second <= t; });
  Tick start = ready;
  while (it != end && it->first < start + duration) {
    start = std::max(start, it->second);
    ++it;
  }
  return {it, start};
}
}  // namespace

Tick Timeline::earliest(Tick ready, Tick duration) const {
  if (duration <= 0) return ready;
  return fit(busy_.begin(), busy_.end(), ready, duration).second;
}

Tick Timeline::reserve(Tick ready, Tick duration) {
  if (duration <= 0) return ready;
  const Tick start = fit(busy_.begin(), busy_.end(), ready, duration).second;
  reserve_at(start, duration);
  return start;
}

void Timeline::reserve_at(Tick start, Tick duration) {
  busy_total_ += duration;
  if (duration <= 0) return;
  const Tick end = start + duration;
  // The first interval after the gap: intervals that end by `start` come before it.
  auto it = busy_.empty() || busy_.back().second <= start
                ? busy_.end()
                : std::lower_bound(busy_.begin(), busy_.end(), start,
                                   [](const Interval& iv, Tick t) { return iv.second <= t; });
  // Insert [start, end) before `it`, merging with neighbours that touch it.
  auto pos = busy_.insert(it, {start, end});
  if (pos != busy_.begin() && std::prev(pos)->second == start) {
    std::prev(pos)->second = end;
    pos = busy_.erase(pos) - 1;
  }
  if (std::next(pos) != busy_.end() && std::next(pos)->first == pos->second) {
    pos->second = std::next(pos)->second;
    busy_.erase(std::next(pos));
  }
}

void Timeline::forget_before(Tick now) {
  auto it = std::lower_bound(busy_.begin(), busy_.end(), now, [](const Interval& iv, Tick t) { return iv.second <= t; });
  busy_.erase(busy_.begin(), it);
}

}  // namespace tessera::sim
