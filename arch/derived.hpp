// Figures derived from a description: peaks, capacities, bandwidths, die and chip cost, TCO.
// Formulas follow ../shared/reference/hardware.md (die cost model, TCO inputs).
#pragma once

#include <map>
#include <string>

#include "arch/arch.hpp"

namespace tessera::arch {

struct Derived {
  int64_t tiles = 0;
  int64_t clusters = 0;
  std::map<std::string, double> peak_flops;  // per chip, FLOP/s (2 per MAC), by dtype
  double sram_capacity = 0;        // bytes per chip: tile SRAM + shared memory
  double hbm_bandwidth = 0;        // bytes/s per chip
  double hbm_capacity = 0;         // bytes per chip
  double noc_link_bandwidth = 0;   // bytes/s of one NoC link (or crossbar port), one direction
  double noc_bisection_bandwidth = 0;  // bytes/s, both directions
  double link_bandwidth = 0;       // chip-to-chip, bytes/s per chip, one direction
  double die_area = 0;             // mm^2 of one die, given or estimated
  bool die_area_estimated = false;
  double dies_per_wafer = 0;
  double yield = 0;
  double die_cost = 0;             // USD per good die
  double chip_cost = 0;            // USD: purchase price, or dies + HBM + packaging
  double capex_per_chip = 0;       // USD: chip + board/server share
  double tco_usd_per_hour = 0;     // capex amortisation + energy at TDP x PUE
};

Derived derive(const Arch& arch);

// Component-area estimate of all the chip's silicon (cost.area), in mm^2.
double estimate_die_area(const Arch& arch);

// Gross dies per wafer: pi*r^2/A - pi*d/sqrt(2A), A in mm^2.
double dies_per_wafer(double die_area_mm2, double wafer_diameter_mm);

// Negative-binomial yield (1 + A*D0/alpha)^-alpha with A in cm^2 and D0 per cm^2.
double die_yield(double die_area_mm2, double defect_density_per_cm2, double alpha);

inline constexpr double kHoursPerYear = 8760.0;

}  // namespace tessera::arch
