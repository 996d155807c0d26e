// The cost model against a hand-computed example, from the formulas of
// ../shared/reference/hardware.md ("Die cost model inputs", "Data-centre TCO inputs").
#include <gtest/gtest.h>

#include "arch/derived.hpp"
#include "arch/loader.hpp"

namespace tessera::arch {
namespace {

TEST(Cost, FormulasOnTextbookInputs) {
  // 100 mm^2 on a 300 mm wafer: pi*150^2/100 - pi*300/sqrt(200) = 706.86 - 66.64 = 640.2 -> 640
  EXPECT_EQ(dies_per_wafer(100, 300), 640);
  // 1 cm^2 at D0 = 0.3, alpha = 3: (1 + 0.1)^-3 = 0.7513148
  EXPECT_NEAR(die_yield(100, 0.3, 3), 0.7513148, 1e-7);
  EXPECT_DOUBLE_EQ(die_yield(100, 0, 3), 1.0);
}

TEST(Cost, Maia100ClassByHand) {
  // Inputs from arch/presets/maia100-class.yaml: A = 820 mm^2, wafer $16988, D0 = 0.2/cm^2,
  // alpha = 3, 64 GB HBM at $17/GB, packaging $1670, board share $6600, 4 years, 700 W TDP,
  // PUE 1.15, $0.08/kWh.
  //   DPW    = floor(pi*150^2/820 - pi*300/sqrt(1640)) = floor(86.2022 - 23.2728) = 62
  //   yield  = (1 + 8.2*0.2/3)^-3 = 1.5466667^-3 = 0.2702775
  //   die    = 16988 / (62 * 0.2702775) = 1013.773
  //   chip   = 1013.773 + 64*17 + 1670 = 3771.773
  //   capex  = 3771.773 + 6600 = 10371.773
  //   $/h    = 10371.773 / (4*8760) + 0.7 kW * 1.15 * $0.08 = 0.295998 + 0.0644 = 0.360398
  const Derived d = derive(load_arch("maia100-class"));
  EXPECT_EQ(d.dies_per_wafer, 62);
  EXPECT_NEAR(d.yield, 0.2702775, 1e-6);
  EXPECT_NEAR(d.die_cost, 1013.773, 1e-3);
  EXPECT_NEAR(d.chip_cost, 3771.773, 1e-3);
  EXPECT_NEAR(d.capex_per_chip, 10371.773, 1e-3);
  EXPECT_NEAR(d.tco_usd_per_hour, 0.360398, 1e-6);
}

TEST(Cost, PurchasePriceReplacesBuildCost) {
  // h100-sxm: $30000 + $6600 board share over 4 years, 700 W at PUE 1.15 and $0.08/kWh:
  //   36600 / 35040 + 0.0644 = 1.044521 + 0.0644 = 1.108921
  const Derived d = derive(load_arch("h100-sxm"));
  EXPECT_EQ(d.chip_cost, 30000);
  EXPECT_NEAR(d.tco_usd_per_hour, 1.108921, 1e-6);
}

TEST(Cost, EstimatedDieAreaFromComponents) {
  // tpu-v4-class has no die area: 160 MiB SRAM * 2.1 + 131072 MACs * 0.001 + 4 PHYs * 10.45
  // + 100 = 336 + 131.072 + 41.8 + 100 = 608.872 mm^2
  const Derived d = derive(load_arch("tpu-v4-class"));
  EXPECT_TRUE(d.die_area_estimated);
  EXPECT_NEAR(d.die_area, 608.872, 1e-9);
}

TEST(Cost, MultiDiePackagesPayForEveryDie) {
  const Arch one = load_arch("maia100-class");
  const Arch two = load_arch("maia100-class", {"cost.dies_per_chip=2"});
  EXPECT_NEAR(derive(two).chip_cost - derive(one).chip_cost, derive(one).die_cost, 1e-9);
}

}  // namespace
}  // namespace tessera::arch
