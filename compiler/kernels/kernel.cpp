#include "compiler/kernels/kernel.hpp"

#include <fmt/format.h>

namespace tessera::compiler {

uint64_t Pool::take(uint64_t bytes, uint64_t align) {
  const uint64_t at = (next + align - 1) / align * align;
  if (at + bytes > size) {
    throw CompileError(fmt::format("a kernel needs {} more bytes of scratch than its {} (offset {})", bytes, size, at));
  }
  next = at + bytes;
  return base + at;
}

KernelContext::KernelContext(ProgramBuilder& b, int half)
    : pb(b), sem_base_(half == 1 ? isa::kNumSems / 2 : 0), sem_count_(half < 0 ? isa::kNumSems : isa::kNumSems / 2) {
  auto split = [&](uint64_t total) {
    return half < 0 ? Pool{0, total, 0} : Pool{uint64_t(half) * (total / 2), total / 2, 0};
  };
  sram_ = split(uint64_t(b.arch().chip.tile.sram.capacity));
  shared_ = split(uint64_t(b.arch().chip.shared_memory.capacity));
}

uint64_t KernelContext::sram(uint64_t bytes, uint64_t align) { return sram_.take(bytes, align); }
uint64_t KernelContext::shared(uint64_t bytes) { return shared_.take(bytes, 64); }

int64_t KernelContext::plan_rounds(int64_t total) {
  rounds = total;
  rounds_emitted = sample_rounds >= 4 && total > sample_rounds ? sample_rounds : total;
  return rounds_emitted;
}

void KernelContext::begin_round(int t, int64_t e) {
  if (e >= 1 && rounds_emitted < rounds) pb.emit(t, mark(mark_id));
}

int KernelContext::sem() {
  if (sem_next_ >= sem_count_) throw CompileError(fmt::format("a kernel needs more than {} semaphores", sem_count_));
  return sem_base_ + sem_next_++;
}

}  // namespace tessera::compiler
