// The memory an instruction touches: one byte range per operand, with registers resolved.
// The verifier checks these ranges; the simulator's scoreboard orders instructions by them.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "isa/instr.hpp"

namespace tessera::isa {

struct Access {
  Space space = Space::None;
  int64_t tile = int64_t(kTileSelf);  // SRAM owner; kTileSelf = the issuing tile
  int64_t begin = 0;                  // bytes [begin, end)
  int64_t end = 0;
  int64_t align = 1;                  // required alignment of begin and of every row/stride
  bool write = false;
  std::string_view operand;           // field name, for messages
};

// Value of a register-based field: regs[base] + immediate.
inline int64_t resolve(const Instr& in, int field, const int64_t* regs) {
  return regs[in.base[size_t(field)]] + in.f[size_t(field)];
}

// Appends the accesses of `in` (memory instructions only; others append nothing).
void collect_accesses(const Instr& in, const int64_t* regs, std::vector<Access>& out);

// Bytes one element of `d` occupies when it can be addressed alone (1 for sub-byte formats).
int64_t element_align(Dtype d);

// Destination dtype of a DMA (ddt, or sdt when ddt is none).
Dtype dma_dst_dtype(const Instr& dma);

// Whether a DMA may convert `from` to `to` (the conversions a DMA engine performs).
bool dma_conversion_ok(Dtype from, Dtype to);

}  // namespace tessera::isa
