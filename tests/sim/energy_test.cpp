// Energy accounting: the priced totals follow from the event counts by hand, the power meter's
// windows add up to the same dynamic energy, and peak power is a windowed maximum.
#include "sim/energy.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <numeric>
#include <sstream>

#include "arch/loader.hpp"
#include "isa/assembly.hpp"
#include "sim/simulation.hpp"

namespace tessera::sim {
namespace {

arch::Arch maia(std::vector<std::string> o = {}) {
  return arch::load_arch("maia100-class", o);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

double window_sum(const RunResult& r) {
  double sum = 0;
  for (const auto& chip : r.energy_windows) sum = std::accumulate(chip.begin(), chip.end(), sum);
  return sum;
}

TEST(PowerMeter, SpreadsEnergyOverTheWindowsAnIntervalCovers) {
  PowerMeter m(EnergyPrices{}, 1000);
  m.add(500, 2500, 4.0);   // 2 J/1000 ticks: 1 in [500,1000), 2 in [1000,2000), 1 in [2000,2500)
  m.add(3000, 3000, 1.0);  // an instant lands in its window
  ASSERT_EQ(m.joules().size(), 4u);
  EXPECT_DOUBLE_EQ(m.joules()[0], 1.0);
  EXPECT_DOUBLE_EQ(m.joules()[1], 2.0);
  EXPECT_DOUBLE_EQ(m.joules()[2], 1.0);
  EXPECT_DOUBLE_EQ(m.joules()[3], 1.0);
}

TEST(PowerMeter, PeakPowerIsTheBusiestWindowOfAllChipsPlusStatic) {
  // Windows of 1 us: chip 0 spends 1 uJ then 3 uJ, chip 1 2 uJ then 0.
  const std::vector<std::vector<double>> bins{{1e-6, 3e-6}, {2e-6}};
  EXPECT_DOUBLE_EQ(peak_power(bins, 1'000'000, 2'000'000, 10.0), 3.0 + 10.0);
  // A run shorter than one window is averaged over its own length.
  EXPECT_DOUBLE_EQ(peak_power({{1e-6}}, 1'000'000, 500'000, 0.0), 2.0);
}

TEST(Energy, PricesEachCountedEventByHand) {
  // One 64x256x128 bf16 MATMUL (ws, 64x64 array) and one vec.add of 64x64 fp32: the MACs,
  // the vector elements and the SRAM bytes the vector unit moves are known by hand.
  const RunResult r = Simulation(maia()).run(isa::assemble(R"(
.stream tile=0
  matmul acc=sram[0x0], a=sram[0x10000], b=sram[0x20000], m=64, k=256, n=128
  vec.add dst=sram[0x80000], src0=sram[0x90000], src1=sram[0xa0000], rows=64, cols=64, ddt=fp32, s0dt=fp32, s1dt=fp32
  halt
)",
                                                           "t.tasm"));
  const EnergyPrices p = EnergyPrices::from(maia());
  const Energy e = price(p, r.activity, r.seconds(), 1);
  EXPECT_DOUBLE_EQ(p.mac[size_t(isa::Dtype::Bf16)], 0.6e-12);
  EXPECT_NEAR(e.joules.at("mac"), 64.0 * 256 * 128 * 0.6e-12, 1e-18);
  EXPECT_NEAR(e.joules.at("vector"), 64.0 * 64 * p.vector, 1e-18);
  // The arrays' operand traffic (ws): A once per column tile (2), B once, partial sums of the
  // 4 k-tiles written 4 times and read back 3 times, all fp32 4 bytes.
  const double sa_read = 64.0 * 256 * 2 * 2 + 256.0 * 128 * 2 + 64.0 * 128 * 4 * 3;
  const double sa_write = 64.0 * 128 * 4 * 4;
  // The vector unit reads two 64x64 fp32 operands and writes one through the ports.
  const double v_read = 2 * 64.0 * 64 * 4, v_write = 64.0 * 64 * 4;
  EXPECT_NEAR(e.joules.at("sram"),
              (sa_read + v_read) * p.sram_read + (sa_write + v_write) * p.sram_write, 1e-18);
  EXPECT_DOUBLE_EQ(e.joules.at("static"), r.seconds() * maia().power.static_power);
  EXPECT_DOUBLE_EQ(e.total(), e.dynamic() + e.joules.at("static"));
}

TEST(Energy, MeterWindowsAddUpToThePricedEvents) {
  // A program that uses every priced resource: HBM, NoC, SRAM ports, shared memory (the
  // GEMM example multicasts through remote SRAM), the arrays and the vector unit.
  const isa::Program p =
      isa::assemble(read_file(std::string(TESSERA_SOURCE_DIR) + "/isa/examples/gemm_4tile.tasm"),
                    "gemm_4tile.tasm");
  for (const char* preset : {"maia100-class", "h100-sxm"}) {
    const arch::Arch a = arch::load_arch(preset);
    SimOptions o;
    o.power_window = 50'000;  // 50 ns: many windows
    const RunResult r = Simulation(a, Mode::Performance, o).run(p);
    const Energy e = price(EnergyPrices::from(a), r.activity, r.seconds(), 1);
    ASSERT_GT(e.joules.at("hbm"), 0) << preset;
    ASSERT_GT(e.joules.at("noc"), 0) << preset;
    ASSERT_GT(r.energy_windows.at(0).size(), 10u) << preset;
    // The meter holds the events; the active power runs over the whole run as the static does.
    const double events = e.dynamic() - e.joules.at("active");
    EXPECT_NEAR(e.joules.at("active"), a.power.active_power * r.seconds(), 1e-12) << preset;
    EXPECT_NEAR(window_sum(r), events, 1e-9 * events) << preset;
    const double average = e.total() / r.seconds();
    const double peak = peak_power(r.energy_windows, o.power_window, r.time,
                                   a.power.static_power + a.power.active_power);
    EXPECT_GE(peak, average * 0.999) << preset;
  }
}

TEST(Energy, SharedMemoryTrafficIsPriced) {
  const arch::Arch a = maia();
  const RunResult r = Simulation(a).run(isa::assemble(R"(
.stream tile=0
  dma dst=shared[0x0], src=sram[0x0], d0=65536, sdt=int8, sem=0
  sem.wait sem=0
  halt
)",
                                                      "t.tasm"));
  const EnergyPrices p = EnergyPrices::from(a);
  const Energy e = price(p, r.activity, r.seconds(), 1);
  EXPECT_DOUBLE_EQ(e.joules.at("shared_memory"), 65536.0 * p.shared);
  EXPECT_NEAR(window_sum(r), e.dynamic(), 1e-9 * e.dynamic());
}

}  // namespace
}  // namespace tessera::sim
