// Binary encoding of instructions: an 8-bit opcode followed by the fields in table order,
// packed least-significant bit first (RegImm and Addr fields: 4 register bits, then the value),
// padded with zeros to a whole number of 64-bit words.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa/instr.hpp"

namespace tessera::isa {

class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class EncodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Whether `value` fits field `fd` (width, sign, enumeration range). `why` says what is wrong.
bool field_value_ok(const FieldDef& fd, int64_t value, std::string* why = nullptr);

// Appends the encoding of `in` to `out`. Throws EncodeError for a value that does not fit.
void encode(const Instr& in, std::vector<uint8_t>& out);

// Decodes one instruction at `bytes[offset]`, advancing `offset`. Throws DecodeError for an
// unknown opcode, a truncated instruction, a field value out of range or non-zero padding.
Instr decode(std::span<const uint8_t> bytes, size_t& offset);

}  // namespace tessera::isa
