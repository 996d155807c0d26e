// Functional mode: what MATMUL, the vector instructions and DMA do to the bytes. Timing never
// depends on any of this, so performance mode (which skips it) reports the same time.
#pragma once

#include <cstdint>

#include "isa/instr.hpp"
#include "sim/memory.hpp"

namespace tessera::sim {

// MATMUL with its fields resolved (registers applied), on a tile's SRAM.
void functional_matmul(Memory& sram, const isa::Instr& in, const int64_t* v);

// A vector instruction with its fields resolved.
void functional_vector(Memory& sram, const isa::Instr& in, const int64_t* v);

// The part of a DMA covering rows [row, row + rows), or, when a row is split, bytes
// [offset, offset + bytes) of row `row` (rows == 1). `v` holds the resolved fields.
void functional_dma(const Memory& src, Memory& dst, const isa::Instr& in, const int64_t* v, uint64_t row,
                    uint64_t rows, uint64_t offset, uint64_t bytes);

}  // namespace tessera::sim
