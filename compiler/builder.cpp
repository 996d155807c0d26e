#include "compiler/builder.hpp"

#include <fmt/format.h>

namespace tessera::compiler {

ProgramBuilder::ProgramBuilder(const arch::Arch& arch, int chip)
    : arch_(arch), chip_(chip), tiles_(int(arch.tiles())) {
  for (int t = 0; t < tiles_; ++t) program_.stream(uint32_t(chip), uint32_t(t));
  for (isa::Stream& s : program_.streams) streams_.push_back(&s);
}

isa::Program ProgramBuilder::take() {
  for (isa::Stream* s : streams_) s->code.push_back(halt());
  return std::move(program_);
}

uint64_t ProgramBuilder::hbm_region(const std::string& name, isa::RegionKind kind, uint64_t bytes) {
  const uint64_t align = 4096;
  const uint64_t base = (hbm_next_ + align - 1) / align * align;
  const uint64_t size = std::max<uint64_t>((bytes + align - 1) / align * align, align);
  // Checked here, before a kernel emits instructions for a region that cannot exist.
  const uint64_t capacity = uint64_t(arch_.hbm.capacity);
  if (bytes > capacity || base + size > capacity) {
    throw CompileError(fmt::format("HBM exhausted: region '{}' of {} bytes at offset {} does not fit {}'s {} bytes",
                                   name, bytes, base, arch_.name, capacity));
  }
  program_.regions.push_back({name, kind, base, size});
  hbm_next_ = base + size;
  return base;
}

uint64_t ProgramBuilder::sram_alloc(uint64_t bytes, uint64_t align) {
  const uint64_t base = (sram_next_ + align - 1) / align * align;
  if (base + bytes > uint64_t(arch_.chip.tile.sram.capacity)) {
    throw CompileError(fmt::format("tile SRAM exhausted: {} bytes wanted at offset {} of {}", bytes, base,
                                   uint64_t(arch_.chip.tile.sram.capacity)));
  }
  sram_next_ = base + bytes;
  return base;
}

uint64_t ProgramBuilder::sram_free() const { return uint64_t(arch_.chip.tile.sram.capacity) - sram_next_; }

int ProgramBuilder::sem_alloc() {
  if (sem_next_ >= isa::kNumSems) throw CompileError("out of semaphores");
  return sem_next_++;
}

int ProgramBuilder::barrier_id() {
  const int id = barrier_next_;
  barrier_next_ = (barrier_next_ + 1) % isa::kNumBarriers;
  return id;
}

void ProgramBuilder::barrier_all(bool kernel) {
  const int id = barrier_id();
  for (int t = 0; t < tiles_; ++t) emit(t, barrier(id, tiles_, kernel));
}

uint8_t ProgramBuilder::reg_alloc() {
  for (uint8_t r = 1; r < isa::kNumRegs; ++r) {
    if (!(regs_used_ & (1u << r))) {
      regs_used_ = uint16_t(regs_used_ | (1u << r));
      return r;
    }
  }
  throw CompileError("out of scalar registers");
}

void ProgramBuilder::reg_release(uint8_t r) { regs_used_ = uint16_t(regs_used_ & ~(1u << r)); }

}  // namespace tessera::compiler
