// Systems of several chips: topologies (links and routes), send/recv timing against formulas
// derived by hand from the link parameters, bandwidth sharing, a ring all-reduce, functional
// data movement, and the errors of unmatched messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <numeric>

#include "arch/loader.hpp"
#include "isa/assembly.hpp"
#include "sim/energy.hpp"
#include "sim/simulation.hpp"
#include "sim/topology.hpp"

namespace tessera::sim {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

arch::SystemParams system_of(int64_t chips, arch::Topology t, int64_t links) {
  arch::SystemParams s;
  s.chips = chips, s.topology = t;
  s.link.count = links, s.link.bandwidth = 50e9, s.link.latency = 1e-6;
  return s;
}

TEST(Topology, FullyConnectedJoinsEveryPairWithItsShareOfTheLinks) {
  const auto t = make_topology(system_of(8, arch::Topology::FullyConnected, 14));
  EXPECT_EQ(t->links().size(), 8u * 7u);
  for (int a = 0; a < 8; ++a) {
    for (int b = 0; b < 8; ++b) {
      if (a == b) continue;
      const std::vector<int> r = t->route(a, b);
      ASSERT_EQ(r.size(), 1u);
      EXPECT_EQ(t->links()[size_t(r[0])].from, a);
      EXPECT_EQ(t->links()[size_t(r[0])].to, b);
      EXPECT_DOUBLE_EQ(t->links()[size_t(r[0])].bandwidth, 2 * 50e9);  // 14 links over 7 peers
    }
  }
}

// Hops of a route, checking that it is a connected path from src to dst.
int hops(const Topology& t, int src, int dst) {
  int at = src;
  for (int l : t.route(src, dst)) {
    EXPECT_EQ(t.links()[size_t(l)].from, at);
    at = t.links()[size_t(l)].to;
  }
  EXPECT_EQ(at, dst);
  return int(t.route(src, dst).size());
}

TEST(Topology, RingAndToriRouteTheShorterWayRound) {
  const auto ring = make_topology(system_of(8, arch::Topology::Ring, 2));
  EXPECT_EQ(ring->links().size(), 16u);
  EXPECT_EQ(hops(*ring, 0, 3), 3);
  EXPECT_EQ(hops(*ring, 0, 5), 3);  // the other way round
  EXPECT_EQ(hops(*ring, 0, 4), 4);
  EXPECT_EQ(hops(*ring, 6, 1), 3);
  // 16 chips on a 4 x 4 torus: hops = wrapped Manhattan distance.
  const auto t2 = make_topology(system_of(16, arch::Topology::Torus2D, 4));
  EXPECT_EQ(t2->name(), "2D torus 4x4");
  for (int a = 0; a < 16; ++a) {
    for (int b = 0; b < 16; ++b) {
      if (a == b) continue;
      auto wrap = [](int d) { return std::min(std::abs(d), 4 - std::abs(d)); };
      EXPECT_EQ(hops(*t2, a, b), wrap(a % 4 - b % 4) + wrap(a / 4 - b / 4)) << a << " -> " << b;
    }
  }
  // 8 chips as a 2 x 2 x 2 torus: dimensions of 2 join each pair once, with both bundles.
  const auto t3 = make_topology(system_of(8, arch::Topology::Torus3D, 6));
  EXPECT_EQ(t3->name(), "3D torus 2x2x2");
  EXPECT_EQ(t3->links().size(), 8u * 3u);
  EXPECT_EQ(hops(*t3, 0, 7), 3);
  EXPECT_DOUBLE_EQ(t3->links()[0].bandwidth, 2 * 50e9);
}

TEST(Topology, SwitchRoutesThroughItWithHalfTheLatencyEachWay) {
  const auto t = make_topology(system_of(4, arch::Topology::Switch, 3));
  EXPECT_EQ(hops(*t, 1, 3), 2);
  EXPECT_EQ(t->links()[0].to, 4);  // the switch follows the chips
  EXPECT_DOUBLE_EQ(t->links()[0].bandwidth, 3 * 50e9);
  EXPECT_DOUBLE_EQ(t->links()[0].latency + t->links()[1].latency, 1e-6);
}

TEST(Topology, DomainsJoinedByAScaleOutSwitch) {
  // Two 8-chip servers behind NVSwitch-like switches, one 50 GB/s scale-out link per chip.
  arch::SystemParams s = system_of(16, arch::Topology::Switch, 18);
  s.scale_out = {8, 1, 50e9, 5e-6, 0};
  const auto t = make_topology(s);
  EXPECT_EQ(t->name(), "switch domains of 8 chips, a scale-out switch");
  EXPECT_EQ(hops(*t, 1, 6), 2);  // within a server: its switch
  EXPECT_FALSE(t->links()[size_t(t->route(1, 6)[0])].scale_out);
  EXPECT_DOUBLE_EQ(t->links()[size_t(t->route(1, 6)[0])].bandwidth, 18 * 50e9);
  EXPECT_EQ(t->links()[size_t(t->route(1, 6)[0])].to, 17);  // the first server's switch
  EXPECT_EQ(t->links()[size_t(t->route(9, 14)[0])].to, 18);  // the second's
  EXPECT_EQ(hops(*t, 3, 12), 2);  // between servers: the scale-out switch
  for (int l : t->route(3, 12)) {
    EXPECT_TRUE(t->links()[size_t(l)].scale_out);
    EXPECT_DOUBLE_EQ(t->links()[size_t(l)].bandwidth, 50e9);
    EXPECT_DOUBLE_EQ(t->links()[size_t(l)].latency, 2.5e-6);
  }
}

TEST(Topology, TooFewLinksAreAClearError) {
  try {
    make_topology(system_of(8, arch::Topology::FullyConnected, 4));
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("system.link.count: a fully connected system of 8 chips needs at least 7 links"));
  }
  EXPECT_THROW(make_topology(system_of(16, arch::Topology::Torus2D, 3)), std::invalid_argument);
}

// maia100-class with `chips` chips on `topology`, `links` links of 50 GB/s and 1 us each.
arch::Arch system(int64_t chips, const std::string& topology, int64_t links, std::vector<std::string> more = {}) {
  std::vector<std::string> o{fmt::format("system.chips={}", chips), "system.topology=" + topology,
                             fmt::format("system.link.count={}", links), "system.link.bandwidth=50GB/s",
                             "system.link.latency=1us"};
  o.insert(o.end(), more.begin(), more.end());
  return arch::load_arch("maia100-class", o);
}

RunResult run(const std::string& text, const arch::Arch& a, SimOptions o = {}) {
  return Simulation(a, Mode::Performance, o).run(isa::assemble(text, "t.tasm"));
}

constexpr uint64_t kBytes = 8 << 20;
constexpr double kLink = 50e9, kLatency = 1e-6;

// Chip `from` tile 0 sends kBytes of HBM at `offset` to chip `to` with `tag`; chip `to` tile
// `tile` receives them into HBM at `offset`.
std::string transfer(int from, int to, int tag, uint64_t offset, int tile = 0) {
  return fmt::format(R"(
.stream chip={0} tile=0
  send src=hbm[{3}], bytes={4}, peer={1}, tag={2}
  halt
.stream chip={1} tile={5}
  recv dst=hbm[{3}], bytes={4}, peer={0}, tag={2}
  halt
)",
                     from, to, tag, offset, kBytes, tile);
}

TEST(LinkTiming, PointToPointIsLatencyPlusBytesOverBandwidth) {
  const arch::Arch a = system(2, "fully_connected", 1);
  const RunResult r = run(transfer(0, 1, 7, 0), a);
  // Plus reading the first piece from HBM and writing the last: well under 1%.
  EXPECT_NEAR(r.seconds() / (kLatency + double(kBytes) / kLink), 1.0, 0.01);
  EXPECT_EQ(r.stats.value("system.link.c0-c1.bytes"), double(kBytes));
  EXPECT_EQ(r.stats.value("system.link.c1-c0.bytes"), 0.0);
  EXPECT_EQ(r.stats.value("system.chip1.comm.received_bytes"), double(kBytes));
  EXPECT_EQ(r.activity.link_bits, double(kBytes) * 8);
  EXPECT_EQ(r.activity.hbm_read, double(kBytes));
  EXPECT_EQ(r.activity.hbm_write, double(kBytes));
  // The power profile (every chip's windows) holds all the dynamic energy, the link's included.
  const Energy e = price(EnergyPrices::from(a), r.activity, r.seconds(), 2);
  double windows = 0;
  for (const auto& chip : r.energy_windows) windows += std::accumulate(chip.begin(), chip.end(), 0.0);
  EXPECT_GT(e.joules.at("link"), 0.0);
  EXPECT_NEAR(windows, e.total() - e.joules.at("static"), 1e-9 * e.total());
}

TEST(LinkTiming, TwoFlowsIntoOneSwitchPortEachGetHalf) {
  // Chips 0 and 1 both send to chip 2: the switch's link down to chip 2 carries both.
  const arch::Arch a = system(3, "switch", 1);
  const double alone = run(transfer(0, 2, 1, 0), a).seconds();
  const double together = run(transfer(0, 2, 1, 0) + transfer(1, 2, 1, kBytes, 1), a).seconds();
  EXPECT_NEAR(alone / (kLatency + double(kBytes) / kLink), 1.0, 0.01);
  EXPECT_NEAR(together / (kLatency + 2 * double(kBytes) / kLink), 1.0, 0.01);
}

TEST(LinkTiming, BetweenDomainsTheScaleOutLinkSetsTheTime) {
  // 4 chips in two domains of 2: chip 0 to chip 3 goes over the 25 GB/s scale-out links.
  const arch::Arch a =
      system(4, "fully_connected", 1,
             {"system.scale_out.domain=2", "system.scale_out.count=1", "system.scale_out.bandwidth=25GB/s",
              "system.scale_out.latency=4us", "system.scale_out.energy_per_bit=2pJ"});
  const RunResult r = run(transfer(0, 3, 2, 0), a);
  EXPECT_NEAR(r.seconds() / (4e-6 + double(kBytes) / 25e9), 1.0, 0.01);
  EXPECT_EQ(r.stats.value("system.link.c0-sw.bytes"), double(kBytes));
  EXPECT_EQ(r.activity.scale_out_bits, double(kBytes) * 8 * 2);
  EXPECT_EQ(r.activity.link_bits, 0.0);
  // Within a domain, the scale-up link.
  const RunResult near = run(transfer(2, 3, 2, 0), a);
  EXPECT_NEAR(near.seconds() / (kLatency + double(kBytes) / kLink), 1.0, 0.01);
  EXPECT_EQ(near.activity.scale_out_bits, 0.0);
}

TEST(LinkTiming, MultiHopRouteIsCutThrough) {
  // Ring of 4, 0 -> 2: two hops, each with the link's latency; the pieces are pipelined, so the
  // bytes cross at the link's bandwidth once.
  const RunResult r = run(transfer(0, 2, 3, 0), system(4, "ring", 2));
  EXPECT_NEAR(r.seconds() / (2 * kLatency + double(kBytes) / kLink), 1.0, 0.01);
  EXPECT_EQ(r.activity.link_bits, double(kBytes) * 8 * 2);
}

TEST(LinkTiming, RingAllReduceMatchesItsFormula) {
  // The ring algorithm on n chips: n - 1 reduce-scatter steps and n - 1 all-gather steps, each
  // chip sending one n-th of the buffer to the next and receiving one from the previous, every
  // step after the previous one's data has arrived (the reduction's adds are left out: this
  // times the communication). Time = 2 (n - 1) / n x bytes / bandwidth + 2 (n - 1) x latency.
  const int n = 4;
  const uint64_t part = kBytes / n;
  std::string text;
  for (int c = 0; c < n; ++c) {
    text += fmt::format(".stream chip={} tile=0\n", c);
    for (int s = 0; s < 2 * (n - 1); ++s) {
      const int out = ((c - s) % n + n) % n, in = ((c - s - 1) % n + n) % n;
      text += fmt::format("  send src=hbm[{}], bytes={}, peer={}, tag={}\n", out * part, part, (c + 1) % n, s);
      text += fmt::format("  recv dst=hbm[{}], bytes={}, peer={}, tag={}, sem=0\n", in * part, part, (c + n - 1) % n, s);
      text += "  sem.wait sem=0, count=1\n";
    }
    text += "  halt\n";
  }
  // Pieces of 16 KiB: each step also reads its first piece from HBM and writes its last, while
  // the chip reads what it sends and writes what it receives at once, which the formula leaves
  // out (about 0.6 us of a 43 us step).
  SimOptions o;
  o.dma_chunk_bytes = 16 << 10;
  const RunResult r = run(text, system(n, "ring", 2), o);
  const double want = 2.0 * (n - 1) / n * double(kBytes) / kLink + 2.0 * (n - 1) * kLatency;
  EXPECT_NEAR(r.seconds() / want, 1.0, 0.02);
  EXPECT_GT(r.seconds(), want);
  // Every chip sent 2 (n - 1) parts to its neighbour.
  EXPECT_EQ(r.stats.value("system.link.c0-c1.bytes"), double(2 * (n - 1) * part));
  EXPECT_EQ(r.stats.value("system.link.c1-c0.bytes"), 0.0);
}

TEST(Comm, MessagesMoveTheBytesPieceByPieceInOrder) {
  // Two messages with one tag, and one with another, each of several pieces; the receiver
  // posts its recvs in another order than the sends.
  const arch::Arch a = system(2, "fully_connected", 1);
  SimOptions o;
  o.dma_chunk_bytes = 4096;
  Simulation sim(a, Mode::Functional, o);
  std::vector<uint8_t> first(10000), second(10000), third(5000);
  std::iota(first.begin(), first.end(), uint8_t(1));
  std::iota(second.begin(), second.end(), uint8_t(101));
  std::iota(third.begin(), third.end(), uint8_t(201));
  sim.memory(0).hbm.write(0, first);
  sim.memory(0).hbm.write(20000, second);
  sim.memory(0).sram[3].write(0, third);
  const std::string text = R"(
.stream chip=0 tile=0
  send src=hbm[0], bytes=10000, peer=1, tag=5
  send src=hbm[20000], bytes=10000, peer=1, tag=5
  halt
.stream chip=0 tile=3
  send src=sram[0], bytes=5000, peer=1, tag=6
  halt
.stream chip=1 tile=2
  recv dst=sram[0], bytes=5000, peer=0, tag=6, sem=1
  sem.wait sem=1, count=1
  recv dst=hbm[100000], bytes=10000, peer=0, tag=5
  recv dst=hbm[200000], bytes=10000, peer=0, tag=5
  halt
)";
  sim.run(isa::assemble(text, "t.tasm"));
  EXPECT_EQ(sim.memory(1).hbm.read(100000, 10000), first);
  EXPECT_EQ(sim.memory(1).hbm.read(200000, 10000), second);
  EXPECT_EQ(sim.memory(1).sram[2].read(0, 5000), third);
}

std::string error_of(const std::string& text, const arch::Arch& a) {
  try {
    run(text, a);
  } catch (const SimError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Comm, MemoryOfAChipBeyondTheSystemIsAClearError) {
  Simulation sim(system(2, "fully_connected", 1), Mode::Functional);
  EXPECT_NO_THROW(sim.memory(1));
  EXPECT_THAT([&] { sim.memory(2); }, ThrowsMessage<SimError>(HasSubstr("chip 2: maia100-class has 2 chip(s)")));
  EXPECT_THROW(sim.memory(-1), SimError);
}

TEST(Comm, UnmatchedMessagesNameBothEnds) {
  const arch::Arch a = system(2, "fully_connected", 1);
  // A recv whose sender never sends: a deadlock, with the message it waits for.
  EXPECT_THAT(error_of(".stream chip=1 tile=4\n  recv dst=hbm[0], bytes=64, peer=0, tag=9, sem=0\n"
                       "  sem.wait sem=0, count=1\n  halt\n",
                       a),
              AllOf(HasSubstr("deadlock"), HasSubstr("chip 1 tile 4: instruction 0 (recv) waits for 64 bytes from "
                                                     "chip 0 with tag 9 (message 0): chip 0 sent no such message")));
  // A send nobody receives.
  EXPECT_THAT(error_of(".stream chip=0 tile=2\n  send src=hbm[0], bytes=64, peer=1, tag=3\n  halt\n", a),
              HasSubstr("chip 0 tile 2 sent 64 bytes to chip 1 with tag 3 (message 0), which chip 1 never received"));
  // Sizes that disagree.
  EXPECT_THAT(error_of(".stream chip=0 tile=2\n  send src=hbm[0], bytes=64, peer=1, tag=3\n  halt\n"
                       ".stream chip=1 tile=0\n  recv dst=hbm[0], bytes=32, peer=0, tag=3\n  halt\n",
                       a),
              HasSubstr("chip 1 tile 0: instruction 0 (recv) takes 32 bytes from chip 0 with tag 3, but chip 0 tile 2 "
                        "sent 64"));
  // A topology the links cannot build (validation refuses it; a system built in code is
  // refused by the simulator alike).
  arch::Arch few = system(8, "fully_connected", 7);
  few.system.link.count = 2;
  EXPECT_THAT(error_of(transfer(0, 1, 0, 0), few),
              HasSubstr("maia100-class: system.link.count: a fully connected system of 8 chips needs at least 7"));
}

}  // namespace
}  // namespace tessera::sim
