#include "sim/timeline.hpp"

#include <algorithm>

namespace tessera::sim {

Tick Timeline::reserve(Tick ready, Tick duration) {
  busy_total_ += duration;
  if (duration <= 0) return ready;
  // First interval that ends after `ready`: gaps before it are too early.
  auto it = std::lower_bound(busy_.begin(), busy_.end(), ready,
                             [](const std::pair<Tick, Tick>& iv, Tick t) { return iv.second <= t; });
  Tick start = ready;
  while (it != busy_.end() && it->first < start + duration) {
    start = std::max(start, it->second);
    ++it;
  }
  const Tick end = start + duration;
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
  return start;
}

void Timeline::forget_before(Tick now) {
  auto it = std::find_if(busy_.begin(), busy_.end(), [&](const auto& iv) { return iv.second > now; });
  busy_.erase(busy_.begin(), it);
}

}  // namespace tessera::sim
