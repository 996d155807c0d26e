// The assembler and disassembler: round trips, the example program, and errors that name
// file:line:column and what was expected.
#include "isa/assembly.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

namespace tessera::isa {
namespace {

using ::testing::HasSubstr;

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Lines without comments, trailing spaces and blank lines.
std::vector<std::string> code_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    line = std::regex_replace(line, std::regex("\\s*;.*$"), "");
    line = std::regex_replace(line, std::regex("\\s+$"), "");
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::string error_of(const std::string& text) {
  try {
    assemble(text, "t.tasm");
  } catch (const AsmError& e) {
    return e.what();
  }
  ADD_FAILURE() << "assembled:\n" << text;
  return "";
}

const std::string kExample = std::string(TESSERA_SOURCE_DIR) + "/isa/examples/gemm_4tile.tasm";

TEST(Assembly, ExampleDisassemblesToItsOwnText) {
  const std::string text = read(kExample);
  const Program p = assemble(text, kExample);
  EXPECT_EQ(p.streams.size(), 4u);
  EXPECT_EQ(code_lines(disassemble(p)), code_lines(text));
  // binary -> text -> binary is byte-identical
  const std::vector<uint8_t> bin = write_binary(p);
  EXPECT_EQ(write_binary(assemble(disassemble(read_binary(bin)))), bin);
}

TEST(Assembly, LinesAreRecorded) {
  const Program p = assemble(".stream tile=0\n\n  nop 3\n  halt\n");
  EXPECT_EQ(p.streams[0].lines, (std::vector<uint32_t>{3, 4}));
}

TEST(Assembly, OperandForms) {
  const Program p = assemble(
      ".region r weights 0 0x1000\n"
      ".tensor W bf16 [16, 16] hbm 0x100 weight\n"
      ".tensor buf bf16 [16, 16] sram@1 0x200 scratch\n"
      ".stream chip=0, tile=0\n"
      "  li r3, -5\n"
      "  loop r3+9\n"
      "    dma dst=sram@1[buf+0x20], src=hbm[r3 + W + 8], d0=16, d1=16, ss1=32, sem=none\n"
      "  endloop\n"
      "  matmul acc=sram[0x0], a=sram[0x800], b=sram[0x1000], m=4, k=8, n=16, accumulate, tb=true\n"
      "  vec.add dst=sram[0], src0=sram[0x40], src1=sram[0], rows=1, cols=4, bcast=scalar, imm=-inf\n");
  const Instr& dma = p.streams[0].code[2];
  EXPECT_EQ(dma[field_index(Opcode::Dma, "dst")], 0x220);
  EXPECT_EQ(dma[field_index(Opcode::Dma, "dst_tile")], 1);
  EXPECT_EQ(dma[field_index(Opcode::Dma, "src")], 0x108);
  EXPECT_EQ(dma.base[size_t(field_index(Opcode::Dma, "src"))], 3);
  const Instr& mm = p.streams[0].code[4];
  EXPECT_EQ(mm[field_index(Opcode::Matmul, "accumulate")], 1);
  EXPECT_EQ(mm[field_index(Opcode::Matmul, "tb")], 1);
  const Instr& loop = p.streams[0].code[1];
  EXPECT_EQ(loop.base[0], 3);
  EXPECT_EQ(loop[0], 9);
  EXPECT_TRUE(std::isinf(p.streams[0].code[5].f32(field_index(Opcode::VAdd, "imm"))));
  // and the canonical text reads back to the same program
  EXPECT_EQ(assemble(disassemble(p)), p);
}

TEST(Assembly, ErrorsNameLineColumnAndWhatWasExpected) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {".stream tile=0\n  frob 1\n", "t.tasm:2:3: unknown instruction 'frob'"},
      {"  nop 1\n", "t.tasm:1:3: instruction outside a stream"},
      {".stream tile=0\n  dma dst=sram[0], src=hbm[0], d0=1, zz=3\n", "t.tasm:2:38: dma has no field 'zz'"},
      {".stream tile=0\n  matmul acc=sram[0], a=sram[0], b=sram[0], m=1, k=1\n", "t.tasm:2:3: matmul needs n="},
      {".stream tile=0\n  nop 1, 2\n", "t.tasm:2:10: nop takes at most 1 operands"},
      {".stream tile=0\n  matmul acc=sram[0], a=sram[0], b=sram[0], m=70000, k=1, n=1\n",
       "t.tasm:2:47: field 'm': 70000 does not fit 16 unsigned bits"},
      {".stream tile=0\n  li q1, 0\n", "t.tasm:2:6: expected a register r0..r15"},
      {".stream tile=0\n  dma dst=sram[X], src=hbm[0], d0=1\n", "t.tasm:2:16: unknown tensor 'X'"},
      {".stream tile=0\n  dma dst=[0], src=hbm[0], d0=1\n", "t.tasm:2:11: expected the space of 'dst'"},
      {".stream tile=0\n  dma dst=sram[0 src=hbm[0], d0=1\n", "t.tasm:2:18: expected '+'"},
      {".stream tile=0\n  vec.exp dst=sram[0], src0=sram[0], rows=1, cols=1, ddt=bf17\n", "t.tasm:2:58: expected a dtype"},
      {".stream tile=0\n  endloop\n", "t.tasm:2:3: endloop without loop"},
      {".stream tile=0\n  loop 2\n  nop 1\n", "t.tasm:2:3: loop without endloop"},
      {".stream tile=0\n.stream tile=0\n", "t.tasm:2:1: stream chip=0 tile=0 declared twice"},
      {".stream\n", "t.tasm:1:1: expected tile=N"},
      {".tensor W bf16 [4, 4] sram 0 weight\n", "t.tasm:1:23: an SRAM tensor names its tile"},
      {".tensor W bf16 [4, 4] hbm 0 weights\n", "t.tasm:1:29: expected a role"},
      {".tensor W bf16 [4 4] hbm 0 weight\n", "t.tasm:1:19: expected ',' or ']'"},
      {".tensor r1 bf16 [4] hbm 0 weight\n", "t.tasm:1:9: expected a tensor name"},
      {".tensor W bf16 [4] sram@1 0 weight\n.stream tile=0\n  vec.fill dst=sram[W], rows=1, cols=1\n",
       "t.tasm:3:21: tensor 'W' is in the SRAM of tile 1, not tile 0"},
      {".region w weights 0\n", "t.tasm:1:20: expected the region's size in bytes"},
      {".meta x \"unterminated\n", "t.tasm:1:9: unterminated string"},
      {".frob\n", "t.tasm:1:1: unknown directive '.frob'"},
      {".stream tile=0\n  nop 1 $\n", "t.tasm:2:9: unexpected character '$'"},
      {".stream tile=0\n  sem.signal sem=1, after=later\n", "t.tasm:2:27: expected a unit (all, dma, matmul, vector, none)"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(error_of(c.text), HasSubstr(c.message)) << c.text;
  }
}

TEST(Assembly, ReportsEveryBadLine) {
  try {
    assemble(".stream tile=0\n  frob\n  nop x\n  halt\n  zap\n", "t.tasm");
    FAIL();
  } catch (const AsmError& e) {
    EXPECT_EQ(e.diagnostics().size(), 3u) << e.what();
  }
}

TEST(Assembly, CommentsAndStrings) {
  const Program p = assemble(".meta note \"a;b \\\"c\\\" \\\\\"  ; comment\n# another\n");
  EXPECT_EQ(p.meta.at("note"), "a;b \"c\" \\");
  EXPECT_EQ(assemble(disassemble(p)), p);
}

}  // namespace
}  // namespace tessera::isa
