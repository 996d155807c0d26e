// Energy accounting. Every counted event has a price from the architecture's energy table;
// energy = sum over events of count x price + static power x time. Two views of the same
// prices: price() turns a run's typed counters (Activity) into joules per component, and a
// PowerMeter records each event's energy over the interval it happens in, in fixed windows,
// for peak power. Both see the same events, so their dynamic totals agree (a test checks it).
#pragma once

#include <array>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "isa/dtype.hpp"
#include "sim/activity.hpp"
#include "sim/divisor.hpp"
#include "sim/stats.hpp"
#include "sim/time.hpp"

namespace tessera::sim {

// Joules per event.
struct EnergyPrices {
  std::array<double, isa::kDtypeCount> mac{};  // per multiply-accumulate, by input dtype
  double sram_read = 0, sram_write = 0;        // per byte of tile SRAM
  double shared = 0;                           // per byte of shared memory read or written
  double hbm = 0;                              // per byte of HBM traffic
  double noc = 0;                              // per bit-hop
  double vector = 0;                           // per element operation
  double link = 0;                             // per bit over a chip-to-chip link
  double scale_out = 0;                        // per bit over a scale-out link
  double static_power = 0;                     // watts per chip
  double active_power = 0;                     // watts per chip while it runs

  static EnergyPrices from(const arch::Arch& a);
};

// Joules by component: "mac", "sram", "shared_memory", "hbm", "noc", "vector", "link", "active",
// "static".
struct Energy {
  std::map<std::string, double> joules;
  double dynamic() const;  // everything but static
  double total() const;
};

// Prices the events counted in `a` and `chips` chips' active and static power over `seconds`.
Energy price(const EnergyPrices& prices, const Activity& a, double seconds, int64_t chips);

// Dynamic energy of one chip over time, in windows of `window` ticks.
class PowerMeter {
 public:
  PowerMeter(const EnergyPrices& prices, Tick window);
  const EnergyPrices& prices() const { return prices_; }
  // Energy spent evenly over [start, end) (at `start` when the interval is empty).
  void add(Tick start, Tick end, double joules) {
    if (joules == 0) return;
    const Tick final_tick = end > start ? end - 1 : start;
    if (start >= lo_ && final_tick - lo_ < window_) {
      bins_[last_bin_] += joules;
      return;
    }
    spread(start, end, final_tick, joules);
  }
  Tick window() const { return window_; }
  const std::vector<double>& joules() const { return bins_; }  // per window

 private:
  // add() of an event that does not fall in the window of the previous one.
  void spread(Tick start, Tick end, Tick final_tick, double joules);

  EnergyPrices prices_;
  Tick window_;
  Divisor per_window_;  // events in other windows than the last one's are not rare either
  std::vector<double> bins_;
  // The window the last event ended in, [lo_, lo_ + window_): most events fall in it, and
  // then need no division to find their bin.
  Tick lo_ = std::numeric_limits<Tick>::max();  // none yet
  size_t last_bin_ = 0;
};

// The highest average power over any window, summing the chips' windows, plus their static
// power. `bins` holds each chip's energy per window of `window` ticks; a run shorter than one
// window is averaged over its length `end`.
double peak_power(const std::vector<std::vector<double>>& bins, Tick window, Tick end,
                  double static_power);

}  // namespace tessera::sim
