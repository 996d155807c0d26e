// One failing example per verifier rule, each checking the message names tile, instruction
// index and source line; and the example program verifies clean.
#include "isa/verify.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "isa/assembly.hpp"

namespace tessera::isa {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Target small_target() {
  Target t;
  t.name = "test-chip";
  t.chips = 2;
  t.tiles = 4;
  t.sram_bytes = 1 << 20;
  t.shared_bytes = 1 << 22;
  t.hbm_bytes = uint64_t(1) << 32;
  t.matmul_dtypes = {Dtype::Bf16, Dtype::Int8};
  return t;
}

const char* kHeader =
    ".region w weights 0x0 0x100000\n"
    ".region a activations 0x100000 0x100000\n";

std::string issues_of(const std::string& body, const Target& t = small_target()) {
  const Program p = assemble(std::string(kHeader) + body, "v.tasm");
  std::string all;
  for (const VerifyIssue& i : verify(p, t)) all += i.str() + "\n";
  return all;
}

TEST(Verify, CleanProgramPasses) {
  EXPECT_EQ(issues_of(".stream tile=0\n"
                      "  dma dst=sram[0], src=hbm[0x100], d0=64, d1=4, ss1=128, sem=0\n"
                      "  sem.wait sem=0\n"
                      "  matmul acc=sram[0x1000], a=sram[0], b=sram[0x400], m=4, k=8, n=16\n"
                      "  halt\n"),
            "");
}

TEST(Verify, SramOperandOutOfRange) {
  EXPECT_THAT(issues_of(".stream tile=1\n  nop 1\n  vec.fill dst=sram[0xFFFF0], rows=16, cols=16, ddt=fp32\n"),
              HasSubstr("chip 0 tile 1, instruction 1 (line 5): vec.fill dst [0xffff0, 0x1003f0) is outside the "
                        "SRAM 1048576 bytes"));
}

TEST(Verify, OverlappingOperands) {
  EXPECT_THAT(issues_of(".stream tile=0\n  matmul acc=sram[0x100], a=sram[0], b=sram[0x1000], m=4, k=128, n=4\n"),
              HasSubstr("instruction 0 (line 4): matmul acc overlaps a"));
  EXPECT_THAT(issues_of(".stream tile=0\n  dma dst=sram[0x10], src=sram[0], d0=64\n"),
              HasSubstr("dma dst overlaps src"));
  // An elementwise op may work in place.
  EXPECT_EQ(issues_of(".stream tile=0\n  vec.exp dst=sram[0], src0=sram[0], rows=4, cols=4\n"), "");
}

// Sparse MoE: the verifier walks an ld's register at its bound, so a loop it steers is checked
// at its largest trip count; bad routing and gather fields are named.
TEST(Verify, DataDependentCountsAndRouting) {
  EXPECT_THAT(issues_of(".stream tile=0\n  ld r1, sram[0], 300\n  loop r1\n    vec.exp dst=sram[0x10000], src0=sram[0x10000], "
                        "rows=1, cols=4\n    addi r0, r0, 0\n  endloop\n"),
              Not(HasSubstr("loop")));
  EXPECT_THAT(issues_of(".stream tile=0\n  li r2, 0\n  ld r1, sram[0], 300\n  loop r1\n    vec.fill dst=sram[r2+0xFFF00], "
                        "rows=1, cols=4, ddt=fp32\n    addi r2, r2, 16\n  endloop\n"),
              HasSubstr("outside the SRAM"));  // the 17th trip on runs past the end
  EXPECT_THAT(issues_of(".stream tile=0\n  ld r1, sram[0], 0\n"), HasSubstr("ld with max 0 always loads 0"));
  const std::string route =
      "  moe.route dst=sram[0], rows=4, cols=8, ddt=fp32, src0=sram[0], s0dt=fp32, cap=4, cnt=sram[0x100], "
      "disp=sram[0x200], comb=sram[0x300], cw=sram[0x400]";
  EXPECT_EQ(issues_of(".stream tile=0\n" + route + ", k=2\n"), "");
  EXPECT_THAT(issues_of(".stream tile=0\n" + route + ", k=9\n"), HasSubstr("moe.route k 9 must be 1..8"));
  EXPECT_THAT(issues_of(".stream tile=0\n" + route + ", k=2, e0=6, ne=4\n"), HasSubstr("moe.route experts 6..9 beyond its 8"));
  EXPECT_THAT(issues_of(".stream tile=0\n  dma dst=sram[0], src=hbm[0], d0=4, d1=2, d2=2, ss1=64, gather=8, idx=sram[0x100]\n"),
              HasSubstr("a gathering dma has d2 = d3 = 1"));
}

TEST(Verify, Misaligned) {
  EXPECT_THAT(issues_of(".stream tile=0\n  vec.exp dst=sram[0x101], src0=sram[0], rows=1, cols=4\n"),
              HasSubstr("vec.exp dst at 0x101 is not aligned to 2 bytes"));
}

TEST(Verify, UnsupportedMatmulDtype) {
  EXPECT_THAT(issues_of(".stream tile=0\n  matmul acc=sram[0], a=sram[0x1000], b=sram[0x2000], m=1, k=32, n=1, dtype=fp8e4m3\n"),
              HasSubstr("matmul dtype fp8e4m3 is not supported by test-chip's arrays (supported: bf16, int8)"));
}

TEST(Verify, HbmOutsideCapacityOrRegions) {
  Target t = small_target();
  t.hbm_bytes = 0x180000;
  EXPECT_THAT(issues_of(".stream tile=0\n  dma dst=sram[0], src=hbm[0x17FF00], d0=256\n", t),
              HasSubstr("dma src [0x17ff00, 0x180100) is outside the HBM 1572864 bytes"));
  EXPECT_THAT(issues_of(".stream tile=0\n  dma dst=hbm[0x0FFF00], src=sram[0], d0=256\n"),
              HasSubstr("dma dst [0xfff00, 0x100100) is not inside any HBM region"));
}

TEST(Verify, SemaphoreNobodySignals) {
  EXPECT_THAT(issues_of(".stream tile=2\n  nop 1\n  sem.wait sem=5\n"),
              HasSubstr("chip 0 tile 2, instruction 1 (line 5): sem.wait on semaphore 5: no instruction ever signals it"));
  EXPECT_THAT(issues_of(".stream tile=0\n  sem.signal tile=2, sem=5\n.stream tile=2\n  sem.wait sem=5, count=2\n"),
              HasSubstr("waits for 2 in total but only 1 are ever signalled"));
  // Signals from a loop and from DMA completion are counted.
  EXPECT_EQ(issues_of(".stream tile=0\n  loop 3\n    sem.signal tile=2, sem=5\n  endloop\n"
                      "  dma dst=sram@2[0], src=hbm[0], d0=4, sem=5, sem_tile=2\n"
                      ".stream tile=2\n  sem.wait sem=5, count=4\n"),
            "");
  // ... and from a recv's or send's completion, on the issuing tile.
  EXPECT_EQ(issues_of(".stream chip=1, tile=2\n  recv dst=hbm[0], bytes=4, peer=0, sem=5\n"
                      "  send src=hbm[0], bytes=4, peer=0, sem=5\n  sem.wait sem=5, count=2\n"),
            "");
}

TEST(Verify, BarrierThatCannotFill) {
  EXPECT_THAT(issues_of(".stream tile=0\n  barrier id=1, count=2\n"),
              HasSubstr("barrier 1: 1 arrivals in all is not a multiple of its count 2"));
  EXPECT_THAT(issues_of(".stream tile=0\n  barrier id=1, count=9\n"), HasSubstr("barrier count 9 must be 1..4"));
}

TEST(Verify, LoopTripCounts) {
  EXPECT_THAT(issues_of(".stream tile=0\n  li r2, 0\n  loop r2\n    nop 1\n  endloop\n"),
              HasSubstr("instruction 1 (line 5): loop trip count is 0 (must be at least 1)"));
  EXPECT_THAT(issues_of(".stream tile=0\n  li r2, 0x100000000\n  loop r2\n    nop 1\n  endloop\n"),
              HasSubstr("loop trip count 4294967296 is unbounded"));
}

TEST(Verify, LoopStructureInBinaries) {
  Program p;
  p.stream(0, 0).code.push_back(Instr::make(Opcode::EndLoop));
  p.stream(0, 1).code.push_back(Instr::make(Opcode::Loop));
  std::string all;
  for (const auto& i : verify(p, small_target())) all += i.str() + "\n";
  EXPECT_THAT(all, HasSubstr("chip 0 tile 0, instruction 0: endloop without loop"));
  EXPECT_THAT(all, HasSubstr("chip 0 tile 1, instruction 0: loop without endloop"));
}

TEST(Verify, TileAndChipIndices) {
  EXPECT_THAT(issues_of(".stream tile=7\n  halt\n"), HasSubstr("tile 7 is beyond the target's 4 tiles"));
  EXPECT_THAT(issues_of(".stream chip=3, tile=0\n  halt\n"), HasSubstr("chip 3 is beyond the target's 2 chip(s)"));
  EXPECT_THAT(issues_of(".stream tile=0\n  dma dst=sram@9[0], src=hbm[0], d0=4\n"), HasSubstr("dma names tile 9, beyond the target's 4 tiles"));
  EXPECT_THAT(issues_of(".stream tile=0\n  sem.signal tile=4, sem=0\n"), HasSubstr("sem.signal names tile 4"));
  EXPECT_THAT(issues_of(".stream tile=0\n  send src=hbm[0], bytes=4, peer=0\n"), HasSubstr("send peer chip 0 must be another"));
}

TEST(Verify, DmaRules) {
  EXPECT_THAT(issues_of(".stream tile=0\n  dma dst=sram[0], src=hbm[0], d0=4, sdt=int8, ddt=bf16\n"),
              HasSubstr("dma cannot convert int8 to bf16"));
  EXPECT_THAT(issues_of(".stream tile=0\n  dma dst=sram[0], src=hbm[0], d0=4, d1=0\n"), HasSubstr("dma dimension d1 is 0"));
}

TEST(Verify, RegistersAndLoopsGiveDynamicAddresses) {
  // The fourth iteration walks off the end of SRAM: only visible by executing the loop.
  EXPECT_THAT(issues_of(".stream tile=0\n  li r1, 0xC0000\n  loop 4\n"
                        "    vec.fill dst=sram[r1], rows=2, cols=32768, ddt=bf16\n"
                        "    addi r1, r1, 0x20000\n  endloop\n"),
              HasSubstr("instruction 2 (line 6): vec.fill dst [0x120000, 0x140000) is outside the SRAM"));
}

TEST(Verify, ExampleVerifiesForMaiaSizedTarget) {
  Target t = small_target();
  t.chips = 1;
  t.sram_bytes = 5'000'000;
  const Program p = assemble_file(std::string(TESSERA_SOURCE_DIR) + "/isa/examples/gemm_4tile.tasm");
  EXPECT_TRUE(verify(p, t).empty());
}

}  // namespace
}  // namespace tessera::isa
