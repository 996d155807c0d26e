// Sparse mixture-of-experts in the simulator: moe.route against a reference worked out here
// (softmax, top k with ties to the lower expert, dispatch in token order up to a capacity),
// data-dependent trip counts (ld, loops of 0 trips), gather DMAs, and performance mode's routing
// draws (deterministic, distinct experts, uniform or skewed as asked).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "arch/loader.hpp"
#include "isa/assembly.hpp"
#include "sim/functional.hpp"
#include "sim/simulation.hpp"

namespace tessera::sim {
namespace {

std::vector<int32_t> read_ints(const Memory& m, uint64_t addr, size_t n) {
  std::vector<uint8_t> b = m.read(addr, 4 * n);
  std::vector<int32_t> v(n);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

std::vector<float> read_floats(const Memory& m, uint64_t addr, size_t n) {
  std::vector<uint8_t> b = m.read(addr, 4 * n);
  std::vector<float> v(n);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

template <class T>
void write(Memory& m, uint64_t addr, const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  m.write(addr, b);
}

// 6 tokens x 8 experts. Row 0 ties experts 1 and 2 for the top; row 1 ties 1, 2 and 3 for
// second place (expert 1 wins); the others are distinct.
const std::vector<float> kLogits = {
    1, 3, 3, 0, 0, 0, 0, 0,   //
    5, 2, 2, 2, 0, 0, 0, 0,   //
    0, 0, 0, 0, 0, 0, 0, 9,   //
    0, 4, 0, 0, 0, 3, 0, 0,   //
    0, 1, 0, 0, 2, 0, 0, 0,   //
    -1, 0, 7, 0, 0, 0, 6, 0,  //
};
constexpr int kRows = 6, kExperts = 8, kTopK = 2;

struct Expected {
  std::vector<float> dense;
  std::vector<int32_t> counts, dispatch, combine;
  std::vector<float> weights;
};

// What moe.route should write, worked out independently: top k by stable sort of the
// probabilities (descending, ties to the lower index), then dispatch in token order.
Expected reference(int64_t first, int64_t local, int64_t cap, int64_t block) {
  const int64_t stride = (cap + block - 1) / block * block;
  Expected x;
  x.dense.assign(kRows * kExperts, 0.0f);
  x.counts.assign(size_t(local), 0);
  x.dispatch.assign(size_t(local * stride), -1);
  x.combine.assign(kTopK * kRows, -1);
  x.weights.assign(kTopK * kRows, 0.0f);
  std::vector<int64_t> routed(size_t(local), 0);
  for (int r = 0; r < kRows; ++r) {
    std::vector<double> p(kExperts);
    double mx = -1e30, sum = 0;
    for (int e = 0; e < kExperts; ++e) mx = std::max(mx, double(kLogits[size_t(r * kExperts + e)]));
    for (int e = 0; e < kExperts; ++e) sum += p[size_t(e)] = std::exp(double(kLogits[size_t(r * kExperts + e)]) - mx);
    std::vector<int> order(kExperts);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[size_t(a)] > p[size_t(b)]; });
    const double kept = p[size_t(order[0])] + p[size_t(order[1])];
    for (int j = 0; j < kTopK; ++j) {
      const int e = order[size_t(j)];
      const float w = float(p[size_t(e)] / kept);
      x.dense[size_t(r * kExperts + e)] = w;
      const int64_t i = e - first;
      if (i < 0 || i >= local) continue;
      const int64_t slot = routed[size_t(i)]++;
      if (slot >= cap) {
        x.dense[size_t(r * kExperts + e)] = 0.0f;
        continue;
      }
      x.dispatch[size_t(i * stride + slot)] = r;
      x.combine[size_t(j * kRows + r)] = int32_t(i * stride + slot);
      x.weights[size_t(j * kRows + r)] = w;
    }
  }
  for (int64_t i = 0; i < local; ++i) x.counts[size_t(i)] = int32_t((std::min(routed[size_t(i)], cap) + block - 1) / block);
  return x;
}

std::string route_program(int64_t first, int64_t local, int64_t cap, int64_t block) {
  return fmt::format(R"(
.stream tile=0
  dma dst=sram[0x0], src=hbm[0x0], d0=48, sdt=fp32, sem=0
  sem.wait sem=0
  moe.route dst=sram[0x0], rows=6, cols=8, ddt=fp32, src0=sram[0x0], s0dt=fp32, k=2, e0={}, ne={}, cap={}, block={}, cnt=sram[0x1000], disp=sram[0x1100], comb=sram[0x1200], cw=sram[0x1300]
  halt
)",
                     first, local, cap, block);
}

void expect_route(int64_t first, int64_t local, int64_t cap, int64_t block) {
  SCOPED_TRACE(fmt::format("experts {}+{}, cap {}, block {}", first, local, cap, block));
  Simulation sim(arch::load_arch("maia100-class"), Mode::Functional);
  write(sim.memory().hbm, 0, kLogits);
  sim.run(isa::assemble(route_program(first, local, cap, block)));
  const Memory& s = sim.memory().sram[0];
  const Expected want = reference(first, local, cap, block);
  const std::vector<float> dense = read_floats(s, 0, want.dense.size());
  for (size_t i = 0; i < dense.size(); ++i) EXPECT_NEAR(dense[i], want.dense[i], 1e-6) << "weight " << i;
  EXPECT_EQ(read_ints(s, 0x1000, want.counts.size()), want.counts);
  EXPECT_EQ(read_ints(s, 0x1100, want.dispatch.size()), want.dispatch);
  EXPECT_EQ(read_ints(s, 0x1200, want.combine.size()), want.combine);
  const std::vector<float> cw = read_floats(s, 0x1300, want.weights.size());
  for (size_t i = 0; i < cw.size(); ++i) EXPECT_NEAR(cw[i], want.weights[i], 1e-6) << "combine weight " << i;
}

TEST(MoeRoute, SoftmaxTopTwoTiesToTheLowerExpertThenDispatchInTokenOrder) {
  // Row 0: experts 1 and 2 (tied) both kept; row 1: expert 0, then 1 of the three tied.
  const Expected x = reference(0, 8, 6, 1);
  EXPECT_GT(x.dense[1], 0.0f);
  EXPECT_GT(x.dense[2], 0.0f);
  EXPECT_GT(x.dense[8 + 1], 0.0f);
  EXPECT_EQ(x.dense[8 + 2], 0.0f);
  EXPECT_EQ(x.dense[8 + 3], 0.0f);
  expect_route(0, 8, 6, 1);  // dropless: every token dispatched
}

TEST(MoeRoute, CapacityDropsLaterTokensAndCountsBlocks) {
  expect_route(0, 8, 1, 1);  // one slot an expert: expert 1's second token (row 1) is dropped
  expect_route(0, 8, 3, 2);  // counts of blocks of 2 slots; the table rounds 3 slots up to 4
  const Expected x = reference(0, 8, 1, 1);
  EXPECT_EQ(x.dense[8 + 1], 0.0f);  // dropped
  EXPECT_EQ(x.combine[size_t(1 * kRows + 1)], -1);
}

TEST(MoeRoute, DispatchesOnlyThisChipsExperts) {
  expect_route(4, 4, 6, 6);  // experts 4..7: counts 0/1 (block = cap); the others' tokens elsewhere
  const Expected x = reference(4, 4, 6, 6);
  EXPECT_EQ(x.counts, (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(x.combine[0], -1);  // row 0's experts 1 and 2 are on another chip
}

// ld clamps what it loads; a loop of 0 trips skips its body. The loop adds 1 to an fp32 per trip.
TEST(MoeRoute, LdCountsSteerLoopsAndZeroSkipsTheBody) {
  const char* program = R"(
.stream tile=0
  vec.fill dst=sram[0x100], rows=1, cols=3, ddt=fp32, value=0
  ld r1, sram[0x0], 5
  loop r1
    vec.add dst=sram[0x100], rows=1, cols=1, ddt=fp32, src0=sram[0x100], s0dt=fp32, bcast=scalar, imm=1
  endloop
  ld r2, sram[0x4], 5
  loop r2
    vec.add dst=sram[0x104], rows=1, cols=1, ddt=fp32, src0=sram[0x104], s0dt=fp32, bcast=scalar, imm=1
  endloop
  ld r3, sram[0x8], 5
  loop r3
    vec.add dst=sram[0x108], rows=1, cols=1, ddt=fp32, src0=sram[0x108], s0dt=fp32, bcast=scalar, imm=1
  endloop
  halt
)";
  const isa::Program p = isa::assemble(program);
  Simulation sim(arch::load_arch("maia100-class"), Mode::Functional);
  write(sim.memory().sram[0], 0, std::vector<int32_t>{3, 0, 9});  // 9 is clamped to 5
  sim.run(p);
  EXPECT_EQ(read_floats(sim.memory().sram[0], 0x100, 3), (std::vector<float>{3, 0, 5}));
}

TEST(MoeRoute, GatherDmaReadsRowsByIndexAndZerosForMinusOne) {
  const char* program = R"(
.stream tile=0
  dma dst=sram[0x0], src=hbm[0x0], d0=4, d1=3, ss1=64, ds1=16, sdt=fp32, gather=4, idx=sram[0x1000], sem=0
  sem.wait sem=0
  halt
)";
  Simulation sim(arch::load_arch("maia100-class"), Mode::Functional);
  std::vector<float> rows;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 16; ++c) rows.push_back(float(10 * r + c));
  write(sim.memory().hbm, 0, rows);                                   // 4 rows of 16 fp32, 64 B apart
  write(sim.memory().sram[0], 0x1000, std::vector<int32_t>{2, -1, 0});
  sim.run(isa::assemble(program));
  EXPECT_EQ(read_floats(sim.memory().sram[0], 0, 12), (std::vector<float>{20, 21, 22, 23, 0, 0, 0, 0, 0, 1, 2, 3}));
}

TEST(MoeRoute, PerformanceModeDrawsAreDeterministicDistinctAndSkewedAsAsked) {
  const int64_t rows = 4000, experts = 8, k = 2;
  const std::vector<int32_t> a = draw_routing(rows, experts, k, 0.0, 7, 3), b = draw_routing(rows, experts, k, 0.0, 7, 3);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, draw_routing(rows, experts, k, 0.0, 7, 4));  // the next moe.route draws afresh
  auto counts = [&](const std::vector<int32_t>& d) {
    std::vector<double> c(experts, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_NE(d[size_t(r * k)], d[size_t(r * k + 1)]);
      for (int64_t j = 0; j < k; ++j) c[size_t(d[size_t(r * k + j)])] += 1.0;
    }
    std::sort(c.begin(), c.end());
    return c;
  };
  // Uniform: every expert near rows x k / experts = 1000 (binomial sd about 29).
  const std::vector<double> u = counts(a);
  EXPECT_GT(u.front(), 880.0);
  EXPECT_LT(u.back(), 1120.0);
  // Skew 1.5: the first pick of a token is expert of rank r with p ~ 1 / r^1.5 (0.50 for the top
  // of 8), and the second from the rest, so the top expert has most of the tokens' picks.
  const std::vector<double> s = counts(draw_routing(rows, experts, k, 1.5, 7, 3));
  EXPECT_GT(s.back(), 0.6 * double(rows));
  EXPECT_LT(s.front(), 0.08 * double(rows));
}

TEST(MoeRoute, PerformanceModeSkipsTheExpertsItDidNotDraw) {
  // Performance mode steers the loop with its drawn counts: with k = 8 of 8 every expert has the
  // token; with k = 1 one expert has it, and the loops of the seven others are skipped (each run
  // draws the same, so expert e's count is read in run e).
  const char* program = R"(
.stream tile=0
  moe.route dst=sram[0x0], rows=1, cols=8, ddt=fp32, src0=sram[0x0], s0dt=fp32, k={}, cap=1, cnt=sram[0x1000], disp=sram[0x1100], comb=sram[0x1200], cw=sram[0x1300]
  ld r1, sram[{:#x}], 1
  loop r1
    dma dst=sram[0x10000], src=hbm[0x0], d0=65536, sem=0
    sem.wait sem=0
  endloop
  halt
)";
  auto bytes = [&](int k) {
    double total = 0;
    for (int e = 0; e < 8; ++e) {
      Simulation sim(arch::load_arch("maia100-class"), Mode::Performance);
      total += sim.run(isa::assemble(fmt::format(fmt::runtime(program), k, 0x1000 + 4 * e))).stats.value("system.chip0.hbm.read_bytes");
    }
    return total;
  };
  EXPECT_EQ(bytes(8), 8 * 65536.0 * 2);
  EXPECT_EQ(bytes(1), 1 * 65536.0 * 2);
}

}  // namespace
}  // namespace tessera::sim
