// Collectives across chips: the ring all-reduce kernel against the sum computed here (every
// chip ends with the same sum of all chips' values), and its time against the ring formula.
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

// The all-reduce of `elements` values of `d` on every chip of `a`.
Built all_reduce(const arch::Arch& a, int64_t elements, Dtype d) {
  std::vector<ProgramBuilder> chips;
  for (int64_t c = 0; c < a.system.chips; ++c) chips.emplace_back(a, int(c));
  AllReduceSpec s;
  s.elements = elements, s.dtype = d, s.tag = 100;
  uint64_t buf = 0;
  for (ProgramBuilder& pb : chips) {
    buf = pb.hbm_region("buf", isa::RegionKind::Io, isa::dtype_bytes(d, size_t(elements)));
    const uint64_t scratch =
        pb.hbm_region("scratch", isa::RegionKind::Activations, isa::dtype_bytes(d, size_t(elements / a.system.chips + 1)));
    s.buf = hbm(int64_t(buf)), s.scratch = hbm(int64_t(scratch));
  }
  for (ProgramBuilder& pb : chips) emit_ring_all_reduce(pb, a.system.chips, s);
  Built b{take_system(chips), buf};
  isa::verify_or_throw(b.program, target_for(a));
  return b;
}

class RingAllReduce : public ::testing::TestWithParam<std::tuple<int64_t, Dtype>> {};

TEST_P(RingAllReduce, EveryChipEndsWithTheSum) {
  const auto [chips, d] = GetParam();
  const arch::Arch a = ring_of(chips);
  const int64_t elements = 50'021;  // parts of unequal size, several chunks per tile
  const Built b = all_reduce(a, elements, d);
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

INSTANTIATE_TEST_SUITE_P(Collectives, RingAllReduce,
                         ::testing::Values(std::tuple{int64_t(2), Dtype::Fp32}, std::tuple{int64_t(4), Dtype::Fp32},
                                           std::tuple{int64_t(3), Dtype::Bf16}));

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

TEST(RingAllReduceErrors, FewerValuesThanChipsAndUnequalMemoryMaps) {
  const arch::Arch a = ring_of(4);
  ProgramBuilder pb(a, 1);
  AllReduceSpec s;
  s.elements = 3;
  try {
    emit_ring_all_reduce(pb, 4, s);
    FAIL() << "expected an error";
  } catch (const CompileError& e) {
    EXPECT_STREQ(e.what(), "an all-reduce of 3 values over 4 chips: fewer values than chips");
  }
  std::vector<ProgramBuilder> chips;
  chips.emplace_back(a, 0), chips.emplace_back(a, 1);
  chips[1].hbm_region("extra", isa::RegionKind::Io, 64);
  EXPECT_THROW(take_system(chips), CompileError);
}

}  // namespace
}  // namespace tessera::compiler
