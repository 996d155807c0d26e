// Collectives across the chips of a system, as programs of send and recv: the building blocks
// that tensor, pipeline and expert parallelism put between a model's operators.
//
// Ring all-reduce (the bandwidth-optimal algorithm on a ring, and what NCCL runs within a
// node): the tensor is cut into n parts; in n - 1 reduce-scatter steps every chip sends one
// part to the next chip of the ring and adds the part it receives from the previous one into
// its own (every tile adds a slice: HBM to SRAM, vec.add, back), so that after them chip c holds
// the sum of part c + 1; in n - 1 all-gather steps the sums go round. Each chip sends
// 2 (n - 1) / n of the tensor: time ~ 2 (n - 1) / n x bytes / link bandwidth + 2 (n - 1) x latency,
// plus the adds.
#pragma once

#include <cstdint>
#include <vector>

#include "compiler/builder.hpp"
#include "compiler/kernels/kernel.hpp"

namespace tessera::compiler {

struct AllReduceSpec {
  int64_t elements = 0;
  Dtype dtype = Dtype::Fp32;  // of the values, and of their sum
  Addr buf;                   // HBM, the same address on every chip: the values, then the sum
  Addr scratch;               // HBM, a part's bytes (ceil(elements / n) values): a received part
  int64_t tag = 0;            // tags tag .. tag + 2 (n - 1) - 1 are the kernel's
};

// Emits chip pb.chip()'s part of the all-reduce over chips 0 .. chips - 1 (a ring in that
// order), with SRAM and semaphores from the builder. Every chip's program depends only on its
// index, so each chip's code is generated on its own, as a model's would be.
void emit_ring_all_reduce(ProgramBuilder& pb, int64_t chips, const AllReduceSpec& s);

// The programs of several chips' builders as one: every chip's streams, and the memory map
// they share (each builder must have made the same regions).
isa::Program take_system(std::vector<ProgramBuilder>& chips);

}  // namespace tessera::compiler
