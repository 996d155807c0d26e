// Simulated time: integer picoseconds (the SystemC kernel runs at 1 ps resolution), with
// conversions from clock cycles.
#pragma once

#include <cmath>
#include <cstdint>

namespace tessera::sim {

using Tick = int64_t;  // picoseconds
inline constexpr Tick kPsPerSecond = 1'000'000'000'000;

inline Tick seconds_to_ticks(double s) { return static_cast<Tick>(std::llround(s * 1e12)); }
inline double ticks_to_seconds(Tick t) { return static_cast<double>(t) * 1e-12; }

// A clock: cycles to ticks without accumulating rounding across a run.
class Clock {
 public:
  Clock() = default;
  explicit Clock(double hz) : ps_per_cycle_(1e12 / hz) {}
  Tick cycles(double n) const { return static_cast<Tick>(std::llround(n * ps_per_cycle_)); }
  double period_ps() const { return ps_per_cycle_; }

 private:
  double ps_per_cycle_ = 1;
};

}  // namespace tessera::sim
