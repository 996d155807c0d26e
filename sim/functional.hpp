// Functional mode: what MATMUL, the vector instructions and DMA do to the bytes. Timing never
// depends on any of this, so performance mode (which skips it) reports the same time.
#pragma once

#include <cstdint>
#include <vector>

#include "isa/instr.hpp"
#include "sim/memory.hpp"

namespace tessera::sim {

// MATMUL with its fields resolved (registers applied), on a tile's SRAM.
void functional_matmul(Memory& sram, const isa::Instr& in, const int64_t* v);

// A vector instruction with its fields resolved.
void functional_vector(Memory& sram, const isa::Instr& in, const int64_t* v);

// moe.route with its fields resolved (`v`), from the logits in `sram`: every table.
void functional_route(Memory& sram, const int64_t* v);

// Performance mode's moe.route: only the table control flow reads (cnt, which ld loads), for the
// experts `drawn` (rows x k, each row's distinct), into `store`.
void route_counts(Memory& store, const int64_t* v, const std::vector<int32_t>& drawn);

// Performance mode's routing: k distinct experts for each of `rows` tokens, expert e drawn with
// probability proportional to 1 / rank(e)^skew over the experts left (ranks shuffled per call),
// from a generator seeded with (seed, call).
std::vector<int32_t> draw_routing(int64_t rows, int64_t experts, int64_t k, double skew, uint64_t seed,
                                  uint64_t call);

// The part of a DMA covering rows [row, row + rows), or, when a row is split, bytes
// [offset, offset + bytes) of row `row` (rows == 1). `v` holds the resolved fields.
// A gather reads its row numbers from `idx` (the issuing tile's SRAM).
void functional_dma(const Memory& src, Memory& dst, const Memory& idx, const isa::Instr& in, const int64_t* v,
                    uint64_t row, uint64_t rows, uint64_t offset, uint64_t bytes);

}  // namespace tessera::sim
