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
  if (e < 1 || rounds_emitted == rounds) return;
  pb.emit(t, mark(mark_id));
  if (t == 0) record().push_back(scale_ * round_weight(e));
}

double KernelContext::round_weight(int64_t e) const {
  const bool steady = rounds_emitted < rounds && e >= 1 && e + 2 < rounds_emitted;
  return steady ? 1.0 + double(rounds - rounds_emitted) / double(rounds_emitted - 3) : 1.0;
}

void KernelContext::nest_in(KernelContext& outer, int64_t e) {
  mark_id = outer.mark_id, sample_rounds = outer.sample_rounds;
  record_ = &outer.record();
  scale_ = outer.scale_ * outer.round_weight(e);
  auto rest = [](const Pool& p) {
    const uint64_t used = (p.next + 63) / 64 * 64;
    return Pool{p.base + used, p.size - std::min(p.size, used), 0};
  };
  sram_ = rest(outer.sram_), shared_ = rest(outer.shared_);
  sem_base_ = outer.sem_base_ + outer.sem_next_, sem_count_ = outer.sem_count_ - outer.sem_next_;
}

int KernelContext::sem() {
  if (sem_next_ >= sem_count_) throw CompileError(fmt::format("a kernel needs more than {} semaphores", sem_count_));
  return sem_base_ + sem_next_++;
}

}  // namespace tessera::compiler
