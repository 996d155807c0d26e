#include "sim/timeline.hpp"

namespace tessera::sim {

size_t Timeline::first_ending_after(Tick t, size_t n) const {
  return size_t(std::lower_bound(busy_.begin(), busy_.begin() + long(n), t,
                                 [](const std::pair<Tick, Tick>& iv, Tick x) { return iv.second <= x; }) -
                busy_.begin());
}

void Timeline::forget_before(Tick now) { busy_.erase(busy_.begin(), busy_.begin() + long(first_ending_after(now, busy_.size()))); }

}  // namespace tessera::sim
