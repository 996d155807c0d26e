// Property: random valid programs survive binary -> text -> binary byte for byte, and
// text -> binary -> text gives the canonical text back.
#include <gtest/gtest.h>

#include <random>

#include "isa/assembly.hpp"
#include "isa/encoding.hpp"

namespace tessera::isa {
namespace {

class RandomProgram {
 public:
  explicit RandomProgram(uint64_t seed) : rng_(seed) {}

  Program make() {
    Program p;
    const int nmeta = pick(0, 3);
    for (int i = 0; i < nmeta; ++i) p.meta["k" + std::to_string(i)] = random_text();
    p.regions.push_back({"all", RegionKind::Weights, 0, uint64_t(1) << 30});
    const int nsym = pick(0, 6);
    for (int i = 0; i < nsym; ++i) {
      Symbol s;
      s.name = "t" + std::to_string(i) + (pick(0, 1) ? ".w" : "");
      s.dtype = static_cast<Dtype>(pick(1, kDtypeCount - 1));
      s.shape = {pick(1, 64), pick(1, 64)};
      s.space = static_cast<Space>(pick(1, 3));
      s.tile = s.space == Space::Sram ? pick(0, 3) : -1;
      s.addr = uint64_t(pick(0, 1 << 20));
      s.role = static_cast<Role>(pick(0, 5));
      p.symbols.push_back(s);
    }
    const int nstreams = pick(1, 3);
    for (int t = 0; t < nstreams; ++t) {
      Stream& st = p.stream(uint32_t(pick(0, 1)), uint32_t(t));
      int depth = 0;
      const int n = pick(0, 40);
      for (int i = 0; i < n; ++i) {
        Instr in = random_instr();
        if (in.op == Opcode::EndLoop && depth == 0) continue;
        if (in.op == Opcode::Loop && depth == kMaxLoopDepth) continue;
        depth += in.op == Opcode::Loop ? 1 : in.op == Opcode::EndLoop ? -1 : 0;
        st.code.push_back(in);
      }
      while (depth-- > 0) st.code.push_back(Instr::make(Opcode::EndLoop));
    }
    return p;
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  std::string random_text() {
    const std::string alphabet = "ab ;#\"\\\t=[]x";
    std::string s;
    for (int i = pick(0, 8); i > 0; --i) s += alphabet[size_t(pick(0, int(alphabet.size()) - 1))];
    return s;
  }

  int64_t value(const FieldDef& f) {
    int64_t lo = 0, hi = 0;
    switch (f.kind) {
      case FieldKind::S:
      case FieldKind::RegImm:
      case FieldKind::Addr:
        lo = -(int64_t(1) << (f.bits - 1)), hi = (int64_t(1) << (f.bits - 1)) - 1;
        break;
      case FieldKind::Dtype: hi = kDtypeCount - 1; break;
      case FieldKind::Space: hi = 3; break;
      case FieldKind::Bcast: hi = 3; break;
      case FieldKind::Act: hi = 3; break;
      case FieldKind::After: hi = 4; break;
      case FieldKind::Reg: hi = kNumRegs - 1; break;
      case FieldKind::Flag: hi = 1; break;
      default: hi = (int64_t(1) << f.bits) - 1;
    }
    switch (pick(0, 5)) {
      case 0: return lo;
      case 1: return hi;
      case 2: return f.def;
      case 3: return std::clamp<int64_t>(pick(0, 1 << 20), lo, hi);  // near symbols
      default: return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
    }
  }

  Instr random_instr() {
    Instr in = Instr::make(static_cast<Opcode>(pick(0, kOpCount - 1)));
    const OpDef& d = in.def();
    for (size_t i = 0; i < d.fields.size(); ++i) {
      in.f[i] = value(d.fields[i]);
      if (d.fields[i].kind == FieldKind::RegImm || d.fields[i].kind == FieldKind::Addr) {
        in.base[i] = static_cast<uint8_t>(pick(0, 2) == 0 ? pick(1, kNumRegs - 1) : 0);
      }
      if (d.fields[i].kind == FieldKind::F32 && pick(0, 3) == 0) {
        const float specials[] = {0.0f, -0.0f, 1.0f, 1e-45f, 3.4e38f, -INFINITY, NAN};
        in.set_f32(int(i), specials[pick(0, 6)]);
      }
    }
    return in;
  }

  std::mt19937_64 rng_;
};

TEST(RoundTripProperty, RandomProgramsSurviveBinaryTextBinary) {
  for (uint64_t seed = 1; seed <= 400; ++seed) {
    const Program p = RandomProgram(seed).make();
    const std::vector<uint8_t> bin = write_binary(p);
    const std::string text = disassemble(read_binary(bin));
    Program back;
    try {
      back = assemble(text, "random.tasm");
    } catch (const AsmError& e) {
      FAIL() << "seed " << seed << ": " << e.what() << "\n" << text;
    }
    ASSERT_EQ(write_binary(back), bin) << "seed " << seed << "\n" << text;
    ASSERT_EQ(disassemble(back), text) << "seed " << seed;
  }
}

}  // namespace
}  // namespace tessera::isa
