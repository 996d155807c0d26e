// One decoded instruction: its opcode, the raw value of every field (in table order) and, for
// register-based fields (RegImm, Addr), the base register.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

#include "isa/dtype.hpp"
#include "isa/opcodes.hpp"

namespace tessera::isa {

struct Instr {
  Opcode op = Opcode::Nop;
  std::array<int64_t, kMaxFields> f{};     // field values; F32 fields hold the float's bits
  std::array<uint8_t, kMaxFields> base{};  // base register of RegImm/Addr fields (r0 = none)

  // An instruction of `op` with every field at its default.
  static Instr make(Opcode op);

  const OpDef& def() const { return op_def(op); }
  int64_t operator[](int i) const { return f[static_cast<size_t>(i)]; }
  float f32(int i) const { return std::bit_cast<float>(static_cast<uint32_t>(f[size_t(i)])); }
  Dtype dtype(int i) const { return static_cast<Dtype>(f[size_t(i)]); }
  Space space(int i) const { return static_cast<Space>(f[size_t(i)]); }
  void set_f32(int i, float v) { f[size_t(i)] = std::bit_cast<uint32_t>(v); }

  bool operator==(const Instr&) const = default;
};

inline Instr Instr::make(Opcode op) {
  Instr in;
  in.op = op;
  const OpDef& d = op_def(op);
  for (size_t i = 0; i < d.fields.size(); ++i) in.f[i] = d.fields[i].def;
  return in;
}

}  // namespace tessera::isa
