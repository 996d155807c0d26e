// Timing of the chip model against formulas derived by hand from the architecture parameters:
// NoC transfers, bandwidth sharing, the latency of a DMA from HBM, double-buffered overlap,
// barriers, remote semaphores and SRAM bank conflicts. Also: deadlock and time-limit reports,
// determinism, and the trace file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "arch/loader.hpp"
#include "isa/assembly.hpp"
#include "sim/noc.hpp"
#include "sim/simulation.hpp"
#include "sim/sram.hpp"

namespace tessera::sim {
namespace {

using ::testing::HasSubstr;

arch::Arch maia(std::vector<std::string> o = {}) { return arch::load_arch("maia100-class", o); }

// maia100-class: 1.53 GHz core and NoC clock, 2-cycle hops, 128-byte links.
const double kPsPerCycle = 1e12 / 1.53e9;
const Tick kHop = std::llround(2 * kPsPerCycle);
Tick link_time(uint64_t bytes) { return Tick(double(bytes) * 1e12 / (128 * 1.53e9) + 0.5); }

RunResult run(const std::string& text, const arch::Arch& a = maia(), SimOptions o = {}) {
  return Simulation(a, Mode::Performance, o).run(isa::assemble(text, "t.tasm"));
}

TEST(NocTiming, OneTransferIsHopsTimesLatencyPlusSizeOverBandwidth) {
  Stats stats;
  Slots slots;
  Noc noc(maia(), stats, "noc", slots);
  Activity act;
  act.busy.assign(slots.size(), 0.0);
  // (0,0) to (3,2): 5 hops.
  const int a = 0, b = 2 * 8 + 3;
  EXPECT_EQ(noc.hops(a, b), 5);
  EXPECT_EQ(noc.transfer(1000, a, b, 65536, act), 1000 + 5 * kHop + link_time(65536));
  EXPECT_EQ(stats.value("noc.bit_hops"), 65536.0 * 8 * 5);
  EXPECT_EQ(act.noc_bit_hops, 65536.0 * 8 * 5);
  // Each of the 5 links was busy for the transfer's time on it.
  EXPECT_EQ(std::count(act.busy.begin(), act.busy.end(), double(link_time(65536))), 5);
}

TEST(NocTiming, TwoFlowsOverOneLinkEachGetHalf) {
  // Tile 0 -> tile 2 and tile 1 -> tile 2 share the link out of (1,0) eastwards. The DMA
  // engines are made fast enough that the link is the limit.
  const arch::Arch a = maia({"chip.tile.dma.bytes_per_cycle=1024B"});
  const std::string one = R"(
.stream tile=0
  dma dst=sram@2[0x0], src=sram[0x0], d0=2097152, sdt=int8
  halt
)";
  const std::string two = one + R"(
.stream tile=1
  dma dst=sram@2[0x200000], src=sram[0x0], d0=2097152, sdt=int8
  halt
)";
  const double alone = run(one, a).seconds(), together = run(two, a).seconds();
  const double link = 128 * 1.53e9;
  // Chunks are stored and forwarded, so each flow pays one chunk's SRAM read and write on top.
  EXPECT_NEAR(2097152 / alone / link, 1.0, 0.05);     // one flow fills the link
  EXPECT_NEAR(2097152 / together / link, 0.5, 0.05);  // two flows get half each
}

TEST(DmaTiming, IdleReadFromHbmIsTheDramLatencyPlusOneSramCycle) {
  // Address 0 is on pseudo-channel 0, which enters the mesh at tile 0's router: no hops.
  // tRCD + tCL + one 32-byte burst (4 beats at 3.5 Gbps) + one SRAM port cycle.
  const RunResult r = run(".region r io 0 0x1000\n.stream tile=0\n  dma dst=sram[0x0], src=hbm[0x0], d0=16\n  halt\n");
  const Tick burst = Tick(4 / 3.5e9 * 1e12 + 0.5);
  EXPECT_EQ(r.time, 14000 + 14000 + burst + std::llround(kPsPerCycle));
}

TEST(DmaTiming, FarTileAddsRequestAndDataHops) {
  // Tile 27 is at (3,3); pseudo-channel 0 enters at (0,0): 6 hops each way, plus the 32 bytes
  // on the links.
  const RunResult r = run(".stream tile=27\n  dma dst=sram[0x0], src=hbm[0x0], d0=16\n  halt\n");
  const Tick burst = Tick(4 / 3.5e9 * 1e12 + 0.5);
  EXPECT_EQ(r.time, 6 * kHop + 14000 + 14000 + burst + 6 * kHop + link_time(32) + std::llround(kPsPerCycle));
}

TEST(OverlapTiming, DoubleBufferedLoopTakesTheMaxNotTheSum) {
  // 8 iterations of: load 256 KiB of weights into one buffer while the array multiplies the
  // other. Alone, the loads take D and the multiplies C per iteration; the sizes make them
  // similar (a 128 x 512 x 256 MATMUL is 32 weight tiles of 128 rows: 4096 cycles).
  const char* loads = R"(
.region w weights 0 0x1000000
.stream tile=0
  li r1, 0
  loop 8
    dma dst=sram[0x0], src=hbm[r1], d0=131072, sem=0
    sem.wait sem=0
    addi r1, r1, 0x40000
  endloop
  halt
)";
  const char* multiplies = R"(
.stream tile=0
  loop 8
    matmul acc=sram[0x100000], a=sram[0x80000], b=sram[0x0], m=128, k=512, n=256
  endloop
  halt
)";
  const char* both = R"(
.region w weights 0 0x1000000
.stream tile=0
  li r1, 0x40000
  dma dst=sram[0x0], src=hbm[0x0], d0=131072
  loop 4
    dma dst=sram[0x40000], src=hbm[r1], d0=131072
    matmul acc=sram[0x100000], a=sram[0x80000], b=sram[0x0], m=128, k=512, n=256
    addi r1, r1, 0x40000
    dma dst=sram[0x0], src=hbm[r1], d0=131072
    matmul acc=sram[0x100000], a=sram[0x80000], b=sram[0x40000], m=128, k=512, n=256
    addi r1, r1, 0x40000
  endloop
  halt
)";
  const double d = run(loads).seconds(), c = run(multiplies).seconds(), o = run(both).seconds();
  EXPECT_LT(o, 0.75 * (c + d)) << "loads " << d << " s, multiplies " << c << " s, overlapped " << o << " s";
  EXPECT_LT(o, 1.25 * std::max(c, d)) << "loads " << d << " s, multiplies " << c << " s, overlapped " << o << " s";
  EXPECT_GE(o, std::max(c, d) * 0.99);
}

TEST(SyncTiming, BarrierReleasesAfterTheLastArrival) {
  // Tiles 0..3 arrive after 100, 200, 300, 400 cycles of nop; release at the last arrival plus
  // twice the mesh diameter (14 hops) of latency.
  std::string text;
  for (int t = 0; t < 4; ++t) text += ".stream tile=" + std::to_string(t) + "\n  nop " + std::to_string(100 * (t + 1)) + "\n  barrier id=0, count=4\n  halt\n";
  EXPECT_EQ(run(text).time, std::llround(400 * kPsPerCycle) + 2 * 14 * kHop);
}

TEST(SyncTiming, KernelBoundaryTakesTheLaunchGap) {
  // With chip.launch.gap = 3 us, a barrier that ends a kernel releases 3 us after the last
  // arrival; a barrier inside a kernel keeps the NoC's latency.
  auto program = [](const char* flag) {
    std::string text;
    for (int t = 0; t < 4; ++t)
      text += ".stream tile=" + std::to_string(t) + "\n  nop " + std::to_string(100 * (t + 1)) +
              "\n  barrier id=0, count=4" + flag + "\n  halt\n";
    return text;
  };
  const arch::Arch a = maia({"chip.launch.gap=3us"});
  EXPECT_EQ(run(program(", kernel"), a).time, std::llround(400 * kPsPerCycle) + 3'000'000);
  EXPECT_EQ(run(program(""), a).time, std::llround(400 * kPsPerCycle) + 2 * 14 * kHop);
}

TEST(SyncTiming, EagerLaunchWaitsForTheHost) {
  // Three kernels of 1000 cycles on one tile, 1 us apart when launched together (a graph). Under
  // eager launch the host issues kernel n at (n + 1) x host: with 10 us a kernel the device
  // waits for every kernel (start at 10, 20 and 30 us); with 0.1 us the host keeps ahead and
  // only the first kernel waits for it.
  const std::string text =
      ".stream tile=0\n  nop 1000\n  barrier id=0, count=1, kernel\n  nop 1000\n  barrier id=1, count=1, kernel\n"
      "  nop 1000\n  halt\n";
  const Tick kernel = std::llround(1000 * kPsPerCycle), us = 1'000'000;
  SimOptions eager;
  eager.eager_launch = true;
  const arch::Arch slow_host = maia({"chip.launch.gap=1us", "chip.launch.host=10us"});
  EXPECT_EQ(run(text, slow_host).time, 3 * kernel + 2 * us);
  EXPECT_EQ(run(text, slow_host, eager).time, 30 * us + kernel);
  const arch::Arch fast_host = maia({"chip.launch.gap=1us", "chip.launch.host=0.1us"});
  EXPECT_EQ(run(text, fast_host, eager).time, us / 10 + 3 * kernel + 2 * us);
}

TEST(SyncTiming, RemoteSemaphoreTakesTheNocLatency) {
  // Tile 0 (0,0) signals tile 63 (7,7): 14 hops.
  const RunResult r = run(".stream tile=0\n  sem.signal tile=63, sem=5, after=none\n  halt\n"
                          ".stream tile=63\n  sem.wait sem=5\n  halt\n");
  EXPECT_EQ(r.time, 14 * kHop);
}

TEST(HbmCacheTiming, ARereadComesFromTheL2) {
  // h100-sxm's L2 caches HBM: the second read of 256 KiB is served by it, at its bandwidth (the
  // first comes from HBM); without the cache both reads go to HBM.
  const std::string text =
      ".stream tile=0\n  dma dst=sram[0x0], src=hbm[0x100000], d0=262144, sdt=int8, sem=0\n  sem.wait sem=0\n"
      "  dma dst=sram[0x0], src=hbm[0x100000], d0=262144, sdt=int8, sem=0\n  sem.wait sem=0\n  halt\n";
  const RunResult cached = run(text, arch::load_arch("h100-sxm"));
  const RunResult direct = run(text, arch::load_arch("h100-sxm", {"chip.shared_memory.hbm_cache=0"}));
  EXPECT_EQ(cached.stats.value("system.chip0.hbm.read_bytes"), 262144.0);
  EXPECT_EQ(cached.stats.value("system.chip0.shared0.bytes"), 262144.0);
  EXPECT_EQ(direct.stats.value("system.chip0.hbm.read_bytes"), 2 * 262144.0);
  EXPECT_LT(cached.time, direct.time);
}

TEST(SramTiming, BankConflictsFollowTheFormula) {
  const arch::SramParams& p = maia().chip.tile.sram;  // 32 banks, 256 B per cycle: 8-byte banks
  EXPECT_EQ(sram_cycles(p, 1, 4096, 0), 16u);          // contiguous: 4096 / 256
  EXPECT_EQ(sram_cycles(p, 64, 2, 256), 64u);           // a column walk hits one bank: 1 element a cycle
  EXPECT_EQ(sram_cycles(p, 64, 2, 128), 32u);           // two banks
  EXPECT_EQ(sram_cycles(p, 64, 2, 264), 2u);            // stride 33 banks: all 32 banks, 32 rows a cycle
  EXPECT_EQ(sram_cycles(p, 64, 16, 256), 64u);          // 2-bank rows, same start bank each time
  EXPECT_EQ(sram_cycles(p, 64, 512, 1024), 128u);       // rows wider than the port: 2 cycles each
}

TEST(SramTiming, StridedVectorAccessIsSlower) {
  // The same 64 x 1 fp32 column, packed or walked down a 1 KiB-stride matrix.
  const char* packed = ".stream tile=0\n  vec.exp dst=sram[0x0], rows=64, cols=1, ddt=fp32, src0=sram[0x10000], s0dt=fp32\n  halt\n";
  const char* strided = ".stream tile=0\n  vec.exp dst=sram[0x0], rows=64, cols=1, ddt=fp32, src0=sram[0x10000], s0dt=fp32, lds0=1024\n  halt\n";
  EXPECT_GT(run(strided).time, run(packed).time + std::llround(50 * kPsPerCycle));
}

TEST(Robustness, DeadlockIsReportedWithEachBlockedTile) {
  try {
    run(".stream tile=0\n  sem.wait sem=3\n  halt\n"
        ".stream tile=5\n  nop 10\n  barrier id=2, count=2\n  halt\n");
    FAIL() << "no deadlock reported";
  } catch (const SimError& e) {
    EXPECT_THAT(e.what(), HasSubstr("deadlock"));
    EXPECT_THAT(e.what(), HasSubstr("chip 0 tile 0: instruction 0 (sem.wait, line 2) waits for semaphore 3 to reach 1 (it is 0)"));
    EXPECT_THAT(e.what(), HasSubstr("chip 0 tile 5: instruction 1 (barrier, line 6) waits at barrier 2 for 2 tiles"));
  }
}

TEST(Robustness, TimeLimit) {
  SimOptions o;
  o.time_limit = seconds_to_ticks(1e-6);
  try {
    run(".stream tile=0\n  nop 100000000\n  halt\n", maia(), o);
    FAIL();
  } catch (const SimError& e) {
    EXPECT_THAT(e.what(), HasSubstr("simulated-time limit of 1e-06 s reached"));
  }
}

TEST(Robustness, RunsAreDeterministic) {
  const isa::Program p = isa::assemble_file(std::string(TESSERA_SOURCE_DIR) + "/isa/examples/gemm_4tile.tasm");
  const arch::Arch a = maia();
  const std::string first = Simulation(a).run(p).stats.to_json().dump();
  Simulation again(a);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(again.run(p).stats.to_json().dump(), first);
}

TEST(Trace, WritesPerfettoJson) {
  const isa::Program p = isa::assemble_file(std::string(TESSERA_SOURCE_DIR) + "/isa/examples/gemm_4tile.tasm");
  Trace trace;
  Simulation(maia()).run(p, &trace);
  std::ostringstream out;
  trace.write(out);
  const nlohmann::json j = nlohmann::json::parse(out.str());
  int slices = 0, counters = 0, names = 0;
  for (const auto& e : j["traceEvents"]) {
    slices += e["ph"] == "X";
    counters += e["ph"] == "C";
    names += e["ph"] == "M" && e["name"] == "thread_name";
  }
  // Per tile: 1 vec.fill, 4 matmuls, 2 iterations x 2 buffers x 5 loads, 1 store (no barriers).
  EXPECT_EQ(slices, 4 * (1 + 4 + 20 + 1));
  EXPECT_GT(counters, 0);
  EXPECT_GT(names, 0);
}

}  // namespace
}  // namespace tessera::sim
