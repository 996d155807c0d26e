// What a kernel emitter gets: the program builder, and this op's share of the machine's
// scratch resources (tile SRAM, shared memory, semaphores). An op normally has all of them;
// when the next op prefetches (starts loading weights while this one still works), the two
// take opposite halves.
#pragma once

#include <algorithm>
#include <cstdint>

#include "compiler/builder.hpp"

namespace tessera::compiler {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Bytes of one element as the kernels lay tensors out (sub-byte formats take a byte).
inline int64_t esize(Dtype d) { return std::max(1, isa::dtype_bits(d) / 8); }

struct Pool {
  uint64_t base = 0, size = 0, next = 0;
  uint64_t take(uint64_t bytes, uint64_t align = 64);
  uint64_t left() const { return size - next; }
};

class KernelContext {
 public:
  // half: -1 for everything, 0 or 1 for that half.
  KernelContext(ProgramBuilder& pb, int half = -1);

  ProgramBuilder& pb;
  const arch::Arch& arch() const { return pb.arch(); }
  int tiles() const { return pb.tiles(); }

  uint64_t sram(uint64_t bytes, uint64_t align = 64);  // same offset on every tile
  uint64_t sram_left() const { return sram_.left(); }
  uint64_t shared(uint64_t bytes);                     // in every shared-memory instance
  uint64_t shared_left() const { return shared_.left(); }
  int sem();                                           // same index on every tile

 private:
  Pool sram_, shared_;
  int sem_base_, sem_count_, sem_next_ = 0;
};

}  // namespace tessera::compiler
