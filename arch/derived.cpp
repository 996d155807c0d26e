#include "arch/derived.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tessera::arch {

double dies_per_wafer(double a, double d) {
  const double r = d / 2;
  return std::floor(std::numbers::pi * r * r / a - std::numbers::pi * d / std::sqrt(2 * a));
}

double die_yield(double area_mm2, double d0_per_cm2, double alpha) {
  return std::pow(1 + (area_mm2 / 100.0) * d0_per_cm2 / alpha, -alpha);
}

double estimate_die_area(const Arch& a) {
  const AreaModel& m = a.cost.area;
  const SystolicParams& sa = a.chip.tile.systolic;
  const double sram_mib =
      (double(a.tiles()) * a.chip.tile.sram.capacity +
       double(a.shared_memory_instances()) * a.chip.shared_memory.capacity) /
      double(1 << 20);
  const double macs = double(sa.rows * sa.cols * sa.count * a.tiles());
  return sram_mib * m.sram_mm2_per_mib + macs * m.mac_mm2 + double(a.hbm.stacks) * m.hbm_phy_mm2 +
         m.other_mm2;
}

Derived derive(const Arch& a) {
  Derived d;
  const ChipParams& chip = a.chip;
  const SystolicParams& sa = chip.tile.systolic;
  d.tiles = a.tiles();
  d.clusters = a.clusters();
  for (const auto& [dtype, macs] : sa.macs_per_cycle.values) {
    d.peak_flops[dtype] = 2.0 * macs * double(sa.count) * double(d.tiles) * chip.clock;
  }
  d.sram_capacity = double(d.tiles) * chip.tile.sram.capacity +
                    double(a.shared_memory_instances()) * chip.shared_memory.capacity;
  d.hbm_bandwidth = double(a.hbm.stacks * a.hbm.channels_per_stack * a.hbm.bus_width) *
                    a.hbm.data_rate / 8.0;
  d.hbm_capacity = a.hbm.capacity;

  d.noc_link_bandwidth = chip.noc.link_width * chip.noc.clock;
  if (chip.noc.topology == NocTopology::Mesh) {
    // A cut across the longer side of the mesh crosses min(cols, rows) links, each carrying
    // traffic in both directions.
    d.noc_bisection_bandwidth =
        2.0 * double(std::min(chip.mesh.cols, chip.mesh.rows)) * d.noc_link_bandwidth;
  } else {
    // Half the ports send to the other half at full rate, in both directions.
    d.noc_bisection_bandwidth = double(d.tiles) * d.noc_link_bandwidth;
  }
  d.link_bandwidth = double(a.system.link.count) * a.system.link.bandwidth;

  d.die_area_estimated = !a.cost.die_area.has_value();
  d.die_area = a.cost.die_area ? *a.cost.die_area
                                : estimate_die_area(a) / double(a.cost.dies_per_chip);
  d.dies_per_wafer = dies_per_wafer(d.die_area, a.cost.wafer_diameter);
  d.yield = die_yield(d.die_area, a.cost.defect_density, a.cost.yield_alpha);
  d.die_cost = d.dies_per_wafer > 0 ? a.cost.wafer_price / (d.dies_per_wafer * d.yield)
                                    : std::numeric_limits<double>::infinity();
  d.chip_cost = a.cost.purchase_price
                    ? *a.cost.purchase_price
                    : double(a.cost.dies_per_chip) * d.die_cost + a.hbm.capacity * a.cost.hbm_price + a.cost.packaging;
  d.capex_per_chip = d.chip_cost + a.cost.board_share;
  const double capex_per_hour = d.capex_per_chip / (a.cost.amortization_years * kHoursPerYear);
  const double energy_per_hour = a.power.tdp * a.cost.pue * 3600.0 * a.cost.electricity_price;
  d.tco_usd_per_hour = capex_per_hour + energy_per_hour;
  return d;
}

}  // namespace tessera::arch
