// Every opcode: encode/decode round trip at defaults and at the extremes of every field; the
// decoder rejects what no encoder writes.
#include "isa/encoding.hpp"

#include <gtest/gtest.h>

#include "isa/program.hpp"

namespace tessera::isa {
namespace {

// Smallest and largest value a field accepts.
std::pair<int64_t, int64_t> field_range(const FieldDef& f) {
  switch (f.kind) {
    case FieldKind::S:
    case FieldKind::RegImm:
    case FieldKind::Addr:
      return {-(int64_t(1) << (f.bits - 1)), (int64_t(1) << (f.bits - 1)) - 1};
    case FieldKind::Dtype: return {0, kDtypeCount - 1};
    case FieldKind::Space: return {0, 3};
    case FieldKind::Bcast: return {0, int64_t(kBcastNames.size()) - 1};
    case FieldKind::Act: return {0, int64_t(kActNames.size()) - 1};
    case FieldKind::After: return {0, int64_t(kAfterNames.size()) - 1};
    case FieldKind::Reg: return {0, kNumRegs - 1};
    case FieldKind::Flag: return {0, 1};
    default: return {0, (int64_t(1) << f.bits) - 1};
  }
}

Instr round_trip(const Instr& in) {
  std::vector<uint8_t> bytes;
  encode(in, bytes);
  EXPECT_EQ(bytes.size(), size_t(encoded_bytes(in.op)));
  EXPECT_EQ(bytes.size() % 8, 0u);
  size_t off = 0;
  Instr out = decode(bytes, off);
  EXPECT_EQ(off, bytes.size());
  return out;
}

TEST(Encoding, EveryOpcodeRoundTripsAtDefaultsAndExtremes) {
  for (int op = 0; op < kOpCount; ++op) {
    const Opcode o = static_cast<Opcode>(op);
    SCOPED_TRACE(std::string(op_def(o).mnemonic));
    const Instr def = Instr::make(o);
    EXPECT_EQ(round_trip(def), def);
    Instr lo = def, hi = def;
    for (size_t i = 0; i < def.def().fields.size(); ++i) {
      const FieldDef& f = def.def().fields[i];
      auto [min, max] = field_range(f);
      lo.f[i] = min;
      hi.f[i] = max;
      if (f.kind == FieldKind::RegImm || f.kind == FieldKind::Addr) lo.base[i] = 0, hi.base[i] = kNumRegs - 1;
    }
    EXPECT_EQ(round_trip(lo), lo);
    EXPECT_EQ(round_trip(hi), hi);
  }
}

TEST(Encoding, EncoderRejectsValuesThatDoNotFit) {
  Instr in = Instr::make(Opcode::Matmul);
  in.f[size_t(field_index(Opcode::Matmul, "m"))] = 65536;
  std::vector<uint8_t> bytes;
  EXPECT_THROW(encode(in, bytes), EncodeError);
  Instr d = Instr::make(Opcode::Dma);
  d.f[size_t(field_index(Opcode::Dma, "ss1"))] = int64_t(1) << 39;  // one past the signed max
  EXPECT_THROW(encode(d, bytes), EncodeError);
  Instr nop = Instr::make(Opcode::Nop);
  nop.base[0] = 3;  // a register on a field that takes none
  EXPECT_THROW(encode(nop, bytes), EncodeError);
}

TEST(Encoding, DecoderRejectsUnknownOpcodeTruncationPaddingAndBadEnums) {
  std::vector<uint8_t> bytes(8, 0);
  bytes[0] = static_cast<uint8_t>(kOpCount);
  size_t off = 0;
  EXPECT_THROW(decode(bytes, off), DecodeError);

  std::vector<uint8_t> dma;
  encode(Instr::make(Opcode::Dma), dma);
  std::vector<uint8_t> cut(dma.begin(), dma.end() - 8);
  off = 0;
  EXPECT_THROW(decode(cut, off), DecodeError);

  std::vector<uint8_t> nop;
  encode(Instr::make(Opcode::Nop), nop);
  nop.back() |= 0x80;  // a padding bit
  off = 0;
  EXPECT_THROW(decode(nop, off), DecodeError);

  // matmul dtype field set to 15 (no such dtype): find it by encoding two instructions that
  // differ only there.
  Instr a = Instr::make(Opcode::Matmul), b = a;
  const int dt = field_index(Opcode::Matmul, "dtype");
  a.f[size_t(dt)] = 0;
  b.f[size_t(dt)] = 1;
  std::vector<uint8_t> ea, eb;
  encode(a, ea);
  encode(b, eb);
  size_t byte = 0;
  while (ea[byte] == eb[byte]) ++byte;
  const int bit = __builtin_ctz(unsigned(ea[byte] ^ eb[byte]));
  std::vector<uint8_t> bad = ea;
  // Set all 4 bits of the field to 1 (value 15); the field may straddle a byte boundary.
  for (int k = 0; k < 4; ++k) {
    const size_t pos = byte * 8 + size_t(bit + k);
    bad[pos / 8] |= static_cast<uint8_t>(1u << (pos % 8));
  }
  off = 0;
  try {
    decode(bad, off);
    FAIL() << "decoded a dtype of 15";
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("field dtype"), std::string::npos) << e.what();
  }
}

TEST(Encoding, FieldIndicesComeFromTheTable) {
  static_assert(field_index(Opcode::Dma, "dst") == 0);
  EXPECT_EQ(find_field(Opcode::Matmul, "k"), field_index(Opcode::Matmul, "k"));
  EXPECT_EQ(find_field(Opcode::Matmul, "zz"), -1);
  for (int op = 0; op < kOpCount; ++op) {
    EXPECT_LE(op_def(static_cast<Opcode>(op)).fields.size(), size_t(kMaxFields));
  }
}

TEST(ProgramBinary, RoundTripAndCorruption) {
  Program p;
  p.meta["model"] = "m";
  p.regions.push_back({"w", RegionKind::Weights, 0, 4096});
  p.symbols.push_back({"W", Dtype::Bf16, {32, 64}, Space::Hbm, -1, 0, Role::Weight});
  Stream& s = p.stream(0, 1);
  s.code.push_back(Instr::make(Opcode::Dma));
  s.code.push_back(Instr::make(Opcode::Halt));
  const std::vector<uint8_t> bytes = write_binary(p);
  EXPECT_EQ(read_binary(bytes), p);
  EXPECT_EQ(write_binary(read_binary(bytes)), bytes);

  std::vector<uint8_t> bad = bytes;
  bad[0] = 'X';
  EXPECT_THROW(read_binary(bad), FormatError);
  bad = bytes;
  bad[8] = 99;  // version
  EXPECT_THROW(read_binary(bad), FormatError);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    std::vector<uint8_t> shorter(bytes.begin(), bytes.begin() + long(cut));
    EXPECT_ANY_THROW(read_binary(shorter)) << "truncated to " << cut;
  }
  bad = bytes;
  bad.push_back(0);
  EXPECT_THROW(read_binary(bad), FormatError);
}

TEST(ProgramBinary, RejectsWhatTextCouldNotSpell) {
  Program p;
  p.symbols.push_back({"not a name", Dtype::Bf16, {1}, Space::Hbm, -1, 0, Role::Weight});
  EXPECT_THROW(read_binary(write_binary(p)), FormatError);
  Program q;
  q.symbols.push_back({"s", Dtype::Bf16, {1}, Space::Sram, -1, 0, Role::Weight});  // SRAM without a tile
  EXPECT_THROW(read_binary(write_binary(q)), FormatError);
  Program r;
  r.streams.push_back({0, 0, {}, {}});
  r.streams.push_back({0, 0, {}, {}});
  EXPECT_THROW(read_binary(write_binary(r)), FormatError);
}

}  // namespace
}  // namespace tessera::isa
