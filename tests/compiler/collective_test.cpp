// Collectives across chips against what they must leave in every chip's memory, computed here
// (sums, parts, blocks), and their times against the formulas of the ring and the switch.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <random>

#include "arch/loader.hpp"
#include "compiler/kernels/collective.hpp"
#include "compiler/target.hpp"
#include "isa/dtype.hpp"
#include "isa/verify.hpp"
#include "sim/simulation.hpp"

namespace tessera::compiler {
namespace {

arch::Arch ring_of(int64_t chips) {
  return arch::load_arch("maia100-class", {fmt::format("system.chips={}", chips), "system.topology=ring",
                                           "system.link.count=2", "system.link.bandwidth=50GB/s",
                                           "system.link.latency=1us"});
}

struct Built {
  isa::Program program;
  uint64_t buf = 0;
};

arch::Arch switch_of(int64_t chips) {
  return arch::load_arch("maia100-class", {fmt::format("system.chips={}", chips), "system.topology=switch",
                                           "system.link.count=2", "system.link.bandwidth=50GB/s",
                                           "system.link.latency=1us"});
}

arch::Arch torus_of(int64_t chips, const char* topology) {
  return arch::load_arch("maia100-class", {fmt::format("system.chips={}", chips), fmt::format("system.topology={}", topology),
                                           "system.link.count=6", "system.link.bandwidth=50GB/s",
                                           "system.link.latency=1us"});
}

enum class Kind { Ring, Direct, Chosen };  // Chosen: the one emit_all_reduce picks for the system

// The all-reduce of `elements` values of `d` on every chip of `a`.
Built all_reduce(const arch::Arch& a, int64_t elements, Dtype d, Kind kind = Kind::Ring) {
  std::vector<ProgramBuilder> chips;
  for (int64_t c = 0; c < a.system.chips; ++c) chips.emplace_back(a, int(c));
  CollectiveSpec s;
  s.elements = elements, s.dtype = d, s.tag = 100;
  uint64_t buf = 0;
  for (ProgramBuilder& pb : chips) {
    buf = pb.hbm_region("buf", isa::RegionKind::Io, isa::dtype_bytes(d, size_t(elements)));
    const uint64_t scratch =
        pb.hbm_region("scratch", isa::RegionKind::Activations,
                      isa::dtype_bytes(d, size_t(a.system.chips * (elements / a.system.chips + 1))));
    s.buf = hbm(int64_t(buf)), s.scratch = hbm(int64_t(scratch));
  }
  for (ProgramBuilder& pb : chips) {
    KernelContext ctx(pb);
    const std::vector<int> chips_of = all_chips(a.system.chips);
    if (kind == Kind::Direct) emit_direct_all_reduce(ctx, chips_of, s);
    if (kind == Kind::Ring) emit_ring_all_reduce(ctx, chips_of, s);
    if (kind == Kind::Chosen) emit_all_reduce(ctx, std::vector<int64_t>(chips_of.begin(), chips_of.end()), s);
  }
  Built b{take_system(chips), buf};
  isa::verify_or_throw(b.program, target_for(a));
  return b;
}

// On a ring (the ring all-reduce), on a switch (the direct one) and on 2D and 3D tori (by
// dimensions).
class AllReduce : public ::testing::TestWithParam<std::tuple<int64_t, Dtype, std::string>> {};

TEST_P(AllReduce, EveryChipEndsWithTheSum) {
  const auto [chips, d, network] = GetParam();
  const arch::Arch a = network == "switch" ? switch_of(chips)
                       : network == "ring" ? ring_of(chips)
                                           : torus_of(chips, network.c_str());
  const int64_t elements = 50'021;  // parts of unequal size, several chunks per tile
  const Built b = all_reduce(a, elements, d, network == "switch" ? Kind::Direct : network == "ring" ? Kind::Ring : Kind::Chosen);
  sim::Simulation sim(a, sim::Mode::Functional);
  std::vector<double> want(size_t(elements), 0.0);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t c = 0; c < chips; ++c) {
    std::vector<uint8_t> bytes(isa::dtype_bytes(d, size_t(elements)));
    for (int64_t i = 0; i < elements; ++i) {
      isa::store_element(d, bytes.data(), size_t(i), u(rng));
      want[size_t(i)] += isa::load_element(d, bytes.data(), size_t(i));
    }
    sim.memory(int(c)).hbm.write(b.buf, bytes);
  }
  sim.run(b.program);
  // fp32 sums in another order than here; bf16 rounds each of the n - 1 partial sums.
  const double tol = d == Dtype::Fp32 ? 1e-5 : 0.02 * double(chips);
  for (int64_t c = 0; c < chips; ++c) {
    const std::vector<uint8_t> got = sim.memory(int(c)).hbm.read(b.buf, isa::dtype_bytes(d, size_t(elements)));
    double worst = 0;
    for (int64_t i = 0; i < elements; ++i) {
      worst = std::max(worst, std::fabs(isa::load_element(d, got.data(), size_t(i)) - want[size_t(i)]));
    }
    EXPECT_LT(worst, tol) << "chip " << c;
  }
}

INSTANTIATE_TEST_SUITE_P(Collectives, AllReduce,
                         ::testing::Values(std::tuple{int64_t(2), Dtype::Fp32, std::string("ring")},
                                           std::tuple{int64_t(4), Dtype::Fp32, std::string("ring")},
                                           std::tuple{int64_t(3), Dtype::Bf16, std::string("ring")},
                                           std::tuple{int64_t(2), Dtype::Fp32, std::string("switch")},
                                           std::tuple{int64_t(4), Dtype::Fp32, std::string("switch")},
                                           std::tuple{int64_t(5), Dtype::Bf16, std::string("switch")},
                                           std::tuple{int64_t(12), Dtype::Fp32, std::string("torus2d")},
                                           std::tuple{int64_t(8), Dtype::Bf16, std::string("torus3d")}));

TEST(DirectAllReduceTiming, IsTwoStepsThroughThePortPlusTheAdds) {
  // 16 MiB of bf16 on 4 chips behind a switch, ports of 2 x 50 GB/s: each step every chip sends
  // and receives 3/4 of the tensor through its port. The adds read the own part and the 3 parts
  // received and write the sum, over HBM's bandwidth.
  const int64_t n = 4, elements = 8 << 20;
  const arch::Arch a = switch_of(n);
  const double bytes = double(elements) * 2, port = 100e9, latency = 1e-6;
  const double formula = 2.0 * ((n - 1.0) / n * bytes / port + latency);
  const double adds = double(n + 1) * bytes / n / 1.792e12;
  const sim::RunResult r = sim::Simulation(a).run(all_reduce(a, elements, Dtype::Bf16, Kind::Direct).program);
  EXPECT_GT(r.seconds(), formula);
  EXPECT_LT(r.seconds(), (formula + adds) * 1.05);
  EXPECT_EQ(r.stats.value("system.chip0.comm.sent_bytes"), 2.0 * (n - 1) * bytes / n);
}

TEST(RingAllReduceTiming, IsTheRingFormulaPlusTheAdds) {
  // 16 MiB of bf16 on 4 chips: each step moves 4 MiB over a 50 GB/s link. The adds of a
  // reduce-scatter step read the received part and the own part and write the sum, spread over
  // the chip's tiles (bounded here by the part's bytes three times over HBM's bandwidth).
  const int64_t n = 4, elements = 8 << 20;
  const arch::Arch a = ring_of(n);
  const double bytes = double(elements) * 2, link = 50e9, latency = 1e-6;
  const double formula = 2.0 * (n - 1) / n * bytes / link + 2.0 * (n - 1) * latency;
  const double adds = double(n - 1) * 3 * bytes / n / 1.792e12;
  const sim::RunResult r = sim::Simulation(a).run(all_reduce(a, elements, Dtype::Bf16).program);
  EXPECT_GT(r.seconds(), formula);
  EXPECT_LT(r.seconds(), (formula + adds) * 1.05);
  EXPECT_EQ(r.stats.value("system.link.c0-c1.bytes"), 2.0 * (n - 1) * bytes / n);
}

TEST(TorusAllReduceTiming, IsARingPerDimensionOnWhatTheOneBeforeLeft) {
  // 16 MiB of bf16 on a 4 x 4 torus, each neighbour joined by one 50 GB/s link (6 links shared by
  // 4 neighbours: whole links each): a ring along x on all of it, then along y on the quarter each
  // chip holds; 2 x (3 + 3) latencies instead of a ring's 2 x 15.
  const int64_t elements = 8 << 20;
  const arch::Arch a = torus_of(16, "torus2d");
  const double bytes = double(elements) * 2, link = 50e9, latency = 1e-6;
  const double x = 2.0 * 3 / 4 * bytes / link + 2.0 * 3 * latency;
  const double y = 2.0 * 3 / 4 * (bytes / 4) / link + 2.0 * 3 * latency;
  const double adds = (3.0 * 3 * bytes / 4 + 3.0 * 3 * bytes / 16) / 1.792e12;
  const sim::RunResult r = sim::Simulation(a).run(all_reduce(a, elements, Dtype::Bf16, Kind::Chosen).program);
  EXPECT_GT(r.seconds(), x + y);
  EXPECT_LT(r.seconds(), (x + y + adds) * 1.05);
  // Chip 0 sends to its x neighbour (chip 1) and its y neighbour (chip 4) only.
  EXPECT_EQ(r.stats.value("system.link.c0-c1.bytes"), 2.0 * 3 / 4 * bytes);
  EXPECT_EQ(r.stats.value("system.link.c0-c4.bytes"), 2.0 * 3 / 4 * bytes / 4);
  EXPECT_EQ(r.stats.value("system.link.c0-c2.bytes"), 0.0);
}

TEST(RingAllReduceErrors, FewerValuesThanChipsAndUnequalMemoryMaps) {
  const arch::Arch a = ring_of(4);
  ProgramBuilder pb(a, 1);
  KernelContext ctx(pb);
  CollectiveSpec s;
  s.elements = 3;
  try {
    emit_ring_all_reduce(ctx, all_chips(4), s);
    FAIL() << "expected an error";
  } catch (const CompileError& e) {
    EXPECT_STREQ(e.what(), "an all-reduce of 3 values over 4 chips: fewer values than chips");
  }
  try {
    emit_all_to_all(ctx, 4, {.elements = 10});
    FAIL() << "expected an error";
  } catch (const CompileError& e) {
    EXPECT_STREQ(e.what(), "an all-to-all of 10 values over 4 chips: not a whole block per chip");
  }
  CollectiveSpec many;
  many.elements = 100;
  EXPECT_THROW(emit_ring_all_reduce(ctx, {0, 2, 3}, many), CompileError);  // chip 1 is not in the ring
  EXPECT_THROW(emit_hierarchical_all_reduce(ctx, 6, 4, many), CompileError);
  std::vector<ProgramBuilder> chips;
  chips.emplace_back(a, 0), chips.emplace_back(a, 1);
  chips[1].hbm_region("extra", isa::RegionKind::Io, 64);
  EXPECT_THROW(take_system(chips), CompileError);
}

// Every chip's `elements` values of `d` in buf (random), the kernel `emit` on each, run
// functionally; returns what each chip's buf and scratch hold after it, as doubles.
struct Memories {
  std::vector<std::vector<double>> in, buf, scratch;
};
template <class Emit>
Memories run_collective(const arch::Arch& a, int64_t elements, Dtype d, Emit&& emit) {
  const int64_t n = a.system.chips;
  std::vector<ProgramBuilder> chips;
  for (int64_t c = 0; c < n; ++c) chips.emplace_back(a, int(c));
  CollectiveSpec s;
  s.elements = elements, s.dtype = d, s.tag = 7;
  uint64_t buf = 0, scratch = 0;
  for (ProgramBuilder& pb : chips) {
    buf = pb.hbm_region("buf", isa::RegionKind::Io, isa::dtype_bytes(d, size_t(elements)));
    scratch = pb.hbm_region("scratch", isa::RegionKind::Io, isa::dtype_bytes(d, size_t(elements)));
    s.buf = hbm(int64_t(buf)), s.scratch = hbm(int64_t(scratch));
    KernelContext ctx(pb);
    emit(ctx, n, s);
  }
  const isa::Program p = take_system(chips);
  isa::verify_or_throw(p, target_for(a));
  sim::Simulation sim(a, sim::Mode::Functional);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Memories m;
  const size_t bytes = isa::dtype_bytes(d, size_t(elements));
  auto values = [&](const std::vector<uint8_t>& raw) {
    std::vector<double> v(static_cast<size_t>(elements));
    for (int64_t i = 0; i < elements; ++i) v[size_t(i)] = isa::load_element(d, raw.data(), size_t(i));
    return v;
  };
  for (int64_t c = 0; c < n; ++c) {
    std::vector<uint8_t> raw(bytes);
    for (int64_t i = 0; i < elements; ++i) isa::store_element(d, raw.data(), size_t(i), u(rng));
    sim.memory(int(c)).hbm.write(buf, raw);
    m.in.push_back(values(raw));
  }
  sim.run(p);
  for (int64_t c = 0; c < n; ++c) {
    m.buf.push_back(values(sim.memory(int(c)).hbm.read(buf, bytes)));
    m.scratch.push_back(values(sim.memory(int(c)).hbm.read(scratch, bytes)));
  }
  return m;
}

TEST(RingReduceScatter, ChipCEndsWithTheSumOfPartC) {
  const int64_t n = 3, elements = 10'001;
  const Memories m = run_collective(ring_of(n), elements, Dtype::Fp32, [](KernelContext& ctx, int64_t chips, const CollectiveSpec& s) {
    emit_ring_reduce_scatter(ctx, all_chips(chips), s);
  });
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t i = c * elements / n; i < (c + 1) * elements / n; ++i) {
      double want = 0;
      for (int64_t k = 0; k < n; ++k) want += m.in[size_t(k)][size_t(i)];
      ASSERT_NEAR(m.buf[size_t(c)][size_t(i)], want, 1e-5) << "chip " << c << " value " << i;
    }
  }
}

TEST(RingAllGather, EveryChipEndsWithEveryChipsPart) {
  const int64_t n = 4, elements = 10'002;
  const Memories m = run_collective(ring_of(n), elements, Dtype::Bf16, [](KernelContext& ctx, int64_t chips, const CollectiveSpec& s) {
    emit_ring_all_gather(ctx, all_chips(chips), s);
  });
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t i = 0; i < elements; ++i) {
      int64_t p = 0;  // the chip whose part holds value i
      while ((p + 1) * elements / n <= i) ++p;
      ASSERT_EQ(m.buf[size_t(c)][size_t(i)], m.in[size_t(p)][size_t(i)]) << "chip " << c << " value " << i;
    }
  }
}

TEST(AllToAll, BlockDOfChipCLandsAtBlockCOfChipD) {
  const int64_t n = 4, elements = 4 * 2'500;
  const Memories m = run_collective(ring_of(n), elements, Dtype::Fp32, emit_all_to_all);
  const int64_t block = elements / n;
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t d = 0; d < n; ++d) {
      for (int64_t i = 0; i < block; ++i) {
        ASSERT_EQ(m.scratch[size_t(d)][size_t(c * block + i)], m.in[size_t(c)][size_t(d * block + i)])
            << "chip " << c << " block " << d;
      }
    }
  }
}

// An all-to-all of `elements` bf16 values per chip on every chip of `a`, in performance mode.
sim::RunResult time_all_to_all(const arch::Arch& a, int64_t elements) {
  std::vector<ProgramBuilder> chips;
  for (int64_t c = 0; c < a.system.chips; ++c) chips.emplace_back(a, int(c));
  CollectiveSpec s;
  s.elements = elements, s.dtype = Dtype::Bf16;
  for (ProgramBuilder& pb : chips) {
    s.buf = hbm(int64_t(pb.hbm_region("src", isa::RegionKind::Io, uint64_t(elements) * 2)));
    s.scratch = hbm(int64_t(pb.hbm_region("dst", isa::RegionKind::Io, uint64_t(elements) * 2)));
    KernelContext ctx(pb);
    emit_all_to_all(ctx, a.system.chips, s);
  }
  return sim::Simulation(a).run(take_system(chips));
}

TEST(AllToAllTiming, OnASwitchIsItsShareOverThePortBandwidth) {
  // 8 chips, each with 16 MiB: every chip sends 7/8 of it through its one port to the switch,
  // and receives as much through the port down: (n - 1) / n x bytes / port bandwidth + latency.
  const int64_t n = 8, elements = 8 << 20;
  const arch::Arch a = arch::load_arch("maia100-class", {"system.chips=8", "system.topology=switch", "system.link.count=1",
                                                         "system.link.bandwidth=50GB/s", "system.link.latency=1us"});
  const sim::RunResult r = time_all_to_all(a, elements);
  const double bytes = double(elements) * 2, want = double(n - 1) / n * bytes / 50e9 + 1e-6;
  EXPECT_NEAR(r.seconds() / want, 1.0, 0.02);
  EXPECT_EQ(r.stats.value("system.link.c3-sw.bytes"), double(n - 1) / n * bytes);
}

TEST(AllToAllTiming, OnARingIsBoundByTheBisection) {
  // 8 chips on a ring, one 50 GB/s link each way to each neighbour. Cutting the ring in half
  // cuts 2 links; each half sends the other (n / 2)^2 blocks of bytes / n, so over 2 links of
  // one direction: (n / 2)^2 x (bytes / n) / (2 x bandwidth), the routes splitting the
  // half-way pairs between the two directions. Plus up to 4 hops of latency, and the pieces of
  // flows that share their routes' links do not always interleave perfectly (4% here).
  const int64_t n = 8, elements = 8 << 20;
  const arch::Arch a = arch::load_arch("maia100-class", {"system.chips=8", "system.topology=ring", "system.link.count=2",
                                                         "system.link.bandwidth=50GB/s", "system.link.latency=1us"});
  const sim::RunResult r = time_all_to_all(a, elements);
  const double bytes = double(elements) * 2, want = double(n / 2) * double(n / 2) * (bytes / n) / (2 * 50e9);
  EXPECT_GT(r.seconds(), want);
  EXPECT_LT(r.seconds(), want * 1.05 + 4e-6);
}

TEST(RingBroadcast, EveryChipEndsWithTheFirstChipsValues) {
  const int64_t n = 4, elements = 10'007;
  const Memories m = run_collective(ring_of(n), elements, Dtype::Bf16,
                                    [](KernelContext& ctx, int64_t, const CollectiveSpec& s) {
                                      emit_ring_broadcast(ctx, {2, 3, 0, 1}, s, 5);  // from chip 2
                                    });
  for (int64_t c = 0; c < n; ++c) EXPECT_EQ(m.buf[size_t(c)], m.in[2]) << "chip " << c;
}

TEST(RingBroadcastTiming, IsAPipelineOfSegments) {
  // 16 MiB from chip 0 down a ring of 4 in 32 segments: (32 + 2) segments' time at 50 GB/s and
  // 3 latencies, plus each segment's trip through HBM at its ends (under 2% here).
  const int64_t n = 4, elements = 8 << 20, k = 32;
  const arch::Arch a = ring_of(n);
  std::vector<ProgramBuilder> chips;
  for (int64_t c = 0; c < n; ++c) chips.emplace_back(a, int(c));
  CollectiveSpec s;
  s.elements = elements, s.dtype = Dtype::Bf16;
  for (ProgramBuilder& pb : chips) {
    s.buf = hbm(int64_t(pb.hbm_region("buf", isa::RegionKind::Io, uint64_t(elements) * 2)));
    KernelContext ctx(pb);
    emit_ring_broadcast(ctx, all_chips(n), s, k);
  }
  const sim::RunResult r = sim::Simulation(a).run(take_system(chips));
  const double bytes = double(elements) * 2, want = double(k + n - 2) * bytes / k / 50e9 + double(n - 1) * 1e-6;
  EXPECT_GT(r.seconds(), want);
  EXPECT_LT(r.seconds(), want * 1.02);
}

// Two domains of 4 chips: a switch inside each (one 50 GB/s, 1 us link per chip; or a ring of
// two such links), one 25 GB/s, 4 us scale-out link per chip between them.
arch::Arch two_servers(const std::string& inside = "switch") {
  return arch::load_arch("maia100-class", {"system.chips=8", "system.topology=" + inside,
                                           inside == "ring" ? "system.link.count=2" : "system.link.count=1",
                                           "system.link.bandwidth=50GB/s", "system.link.latency=1us",
                                           "system.scale_out.domain=4", "system.scale_out.count=1",
                                           "system.scale_out.bandwidth=25GB/s", "system.scale_out.latency=4us"});
}

// Direct inside a switched domain, a ring inside a ring.
class HierarchicalAllReduce : public ::testing::TestWithParam<std::string> {};

TEST_P(HierarchicalAllReduce, EveryChipEndsWithTheSum) {
  const int64_t elements = 30'011;
  const Memories m = run_collective(two_servers(GetParam()), elements, Dtype::Fp32,
                                    [](KernelContext& ctx, int64_t chips, const CollectiveSpec& s) {
                                      emit_hierarchical_all_reduce(ctx, chips, 4, s);
                                    });
  for (int64_t c = 0; c < 8; ++c) {
    for (int64_t i = 0; i < elements; ++i) {
      double want = 0;
      for (int64_t k = 0; k < 8; ++k) want += m.in[size_t(k)][size_t(i)];
      ASSERT_NEAR(m.buf[size_t(c)][size_t(i)], want, 1e-5) << "chip " << c << " value " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Collectives, HierarchicalAllReduce, ::testing::Values("switch", "ring"));

TEST(HierarchicalAllReduceTiming, SendsOnlyAQuarterOverTheScaleOutLinks) {
  // 16 MiB of bf16. Within each switched domain (D = 4): a direct reduce-scatter and all-gather,
  // each one step of (D - 1) / D x bytes through the 50 GB/s port + 1 us; across (m = 2): a direct
  // all-reduce of a quarter, 2 ((m - 1) / m x (bytes / D) / 25 GB/s + 4 us). Plus the adds: the
  // own part, the D - 1 (then m - 1) received ones and the sum over HBM's bandwidth.
  const int64_t elements = 8 << 20, D = 4, m = 2;
  const arch::Arch a = two_servers();
  std::vector<ProgramBuilder> chips;
  for (int64_t c = 0; c < 8; ++c) chips.emplace_back(a, int(c));
  CollectiveSpec s;
  s.elements = elements, s.dtype = Dtype::Bf16;
  for (ProgramBuilder& pb : chips) {
    s.buf = hbm(int64_t(pb.hbm_region("buf", isa::RegionKind::Io, uint64_t(elements) * 2)));
    s.scratch = hbm(int64_t(pb.hbm_region("scratch", isa::RegionKind::Io, uint64_t(elements) * 2)));
    KernelContext ctx(pb);
    emit_hierarchical_all_reduce(ctx, 8, D, s);
  }
  const sim::RunResult r = sim::Simulation(a).run(take_system(chips));
  const double bytes = double(elements) * 2;
  const double inside = 2 * (double(D - 1) / D * bytes / 50e9 + 1e-6);
  const double across = 2 * (double(m - 1) / m * (bytes / D) / 25e9 + 4e-6);
  const double adds = (double(D + 1) * bytes / D + double(m + 1) * bytes / D / m) / 1.792e12;
  EXPECT_GT(r.seconds(), inside + across);
  EXPECT_LT(r.seconds(), (inside + across + adds) * 1.05);
  // Chip 0's scale-out link carried half of its quarter (the all-reduce of 2 sends 1/2 of it twice).
  EXPECT_EQ(r.stats.value("system.link.c0-sw.bytes"), 2.0 * (m - 1) / m * bytes / D);
}


// 64 KiB: latency rules. Directly, a switched domain's reduce-scatter and all-gather take one
// latency each; a ring takes D - 1 each, so the direct all-reduce beats the ring's latency floor.
TEST(HierarchicalAllReduceTiming, SmallMessagesTakeOneLatencyPerStepInASwitchedDomain) {
  const int64_t elements = 32 << 10, D = 4, m = 2;
  const double bytes = double(elements) * 2;
  const double across = 2 * (double(m - 1) / m * (bytes / D) / 25e9 + 4e-6);
  auto time = [&](const std::string& inside) {
    const arch::Arch a = two_servers(inside);
    std::vector<ProgramBuilder> chips;
    for (int64_t c = 0; c < 8; ++c) chips.emplace_back(a, int(c));
    CollectiveSpec s;
    s.elements = elements, s.dtype = Dtype::Bf16;
    for (ProgramBuilder& pb : chips) {
      s.buf = hbm(int64_t(pb.hbm_region("buf", isa::RegionKind::Io, uint64_t(bytes))));
      s.scratch = hbm(int64_t(pb.hbm_region("scratch", isa::RegionKind::Io, uint64_t(bytes))));
      KernelContext ctx(pb);
      emit_hierarchical_all_reduce(ctx, 8, D, s);
    }
    return sim::Simulation(a).run(take_system(chips)).seconds();
  };
  const double direct = 2 * (double(D - 1) / D * bytes / 50e9 + 1e-6) + across;
  const double ring_floor = 2 * (double(D - 1) / D * bytes / 50e9 + double(D - 1) * 1e-6) + across;
  const double switched = time("switch");
  EXPECT_GT(switched, direct);
  EXPECT_LT(switched, ring_floor);
  EXPECT_GT(time("ring"), ring_floor);
}

}  // namespace
}  // namespace tessera::compiler
