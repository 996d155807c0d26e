// Where the time goes: the breakdown of a hand-built program against times derived by hand from
// the timing formulas, and the bound of a case that is NoC-bound by construction.
#include "tools/api/breakdown.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "arch/derived.hpp"
#include "arch/loader.hpp"
#include "isa/assembly.hpp"

namespace tessera::api {
namespace {

const double kCycle = 1 / 1.53e9;  // maia100-class core and NoC clock

std::vector<compiler::MarkedOp> marks(std::initializer_list<const char*> names) {
  std::vector<compiler::MarkedOp> out;
  for (const char* n : names) out.push_back({n, "hand", false});
  return out;
}

// Three operators on tile 0 of maia100-class (one 64x64 weight-stationary array, 64 vector
// lanes, 256 B SRAM ports, a 64 B/cycle DMA engine, 128 B NoC links, 2-cycle hops), each
// waiting for the one before through the data it reads:
//  1. matmul 256 x 512 x 512 bf16: T = (512/64) x (512/64) = 64 weight tiles,
//     latency R + (T - 1) max(m, R) + m + R + C - 2 = 64 + 63 x 256 + 256 + 64 + 64 - 2
//     = 16,574 cycles.
//  2. vec.exp of its 256 x 512 fp32 result: 131,072 elements at 64 lanes x 0.5 = 4,096 cycles
//     (its SRAM traffic, 512 KiB at 256 B a cycle on each of two ports, takes 2,048), then the
//     exp latency of 16: 4,112 cycles.
//  3. dma of those 512 KiB to tile 1 (one hop east) in two 256 KiB chunks: the engine issues
//     the second 262,144 / 64 = 4,096 cycles after the first; that chunk reads the source port
//     for 1,024 cycles while it crosses the link (262,144 / 128 = 2,048 cycles, cut through,
//     plus the 2-cycle hop) and is written as it arrives, done one port cycle after its last
//     byte: 4,096 + 2,048 + 2 + 1 = 6,147 cycles.
TEST(Breakdown, OperatorTimesOfAHandBuiltProgram) {
  const arch::Arch a = arch::load_arch("maia100-class");
  const isa::Program p = isa::assemble(R"(
.stream tile=0
  mark id=0
  matmul acc=sram[0x0], a=sram[0x100000], b=sram[0x140000], m=256, k=512, n=512
  mark id=1
  vec.exp dst=sram[0x80000], src0=sram[0x0], rows=256, cols=512, ddt=fp32, s0dt=fp32
  mark id=2
  dma dst=sram@1[0x0], src=sram[0x80000], d0=524288, sdt=int8
  halt
)", "three_ops.tasm");
  const sim::RunResult run = sim::Simulation(a).run(p);
  const Breakdown b = attribute(run, marks({"matmul", "exp", "copy"}), 0, 0);
  ASSERT_EQ(b.ops.size(), 3u);
  const double want[] = {16574 * kCycle, 4112 * kCycle, 6147 * kCycle};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(b.ops[i].name, (std::vector<std::string>{"matmul", "exp", "copy"})[i]);
    EXPECT_NEAR(b.ops[i].seconds / want[i], 1.0, 0.01) << b.ops[i].name;
  }
  EXPECT_NEAR(b.seconds, run.seconds(), 1e-12);
  EXPECT_DOUBLE_EQ(b.ops[0].activity.macs[size_t(isa::Dtype::Bf16)], 256.0 * 512 * 512);
  EXPECT_DOUBLE_EQ(b.ops[1].activity.vector_elements, 256.0 * 512);
  EXPECT_DOUBLE_EQ(b.ops[2].activity.noc_bit_hops, 524288.0 * 8);
}

// Four tiles of the top mesh row each copy 1 MiB into tile 4's SRAM. Their 64 B/cycle DMA
// engines could send 256 B a cycle, but every flow crosses the one link from (3,0) east into
// (4,0), 128 B a cycle: the NoC is the bound, and that link is busy all along.
TEST(Breakdown, NocBoundByConstruction) {
  const arch::Arch a = arch::load_arch("maia100-class");
  std::string text;
  for (int t = 0; t < 4; ++t) {
    text += fmt::format(".stream tile={}\n  mark id=0\n  dma dst=sram@4[{:#x}], src=sram[0x0], d0=1048576, sdt=int8\n  halt\n",
                        t, t * 0x100000);
  }
  const sim::RunResult run = sim::Simulation(a).run(isa::assemble(text, "noc_bound.tasm"));
  const Breakdown b = attribute(run, marks({"gather"}), 0, 0);
  ASSERT_EQ(b.ops.size(), 1u);
  const std::map<std::string, double> u = utilization(b.ops[0].activity, b.ops[0].active, arch::derive(a), run.slots);
  EXPECT_GT(u.at("noc"), 0.9);
  EXPECT_LT(u.at("dma"), u.at("noc"));
  EXPECT_EQ(bound_of(u), "noc");
  // 4 MiB over one 128 B/cycle link.
  EXPECT_NEAR(run.seconds() / (4 * 1048576.0 / 128 * kCycle), 1.0, 0.05);
}

}  // namespace
}  // namespace tessera::api
