// Code generation target: one instruction stream per tile, an HBM memory map and symbol table,
// and the bookkeeping kernels share (SRAM layout, semaphores, barriers, registers).
//
// Kernels are SPMD: every tile gets its own instructions, but SRAM offsets and semaphore
// numbers are allocated the same on every tile, so one tile can name another's buffer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "compiler/emit.hpp"
#include "compiler/error.hpp"
#include "isa/program.hpp"

namespace tessera::compiler {

class ProgramBuilder {
 public:
  ProgramBuilder(const arch::Arch& arch, int chip = 0);

  const arch::Arch& arch() const { return arch_; }
  int chip() const { return chip_; }
  int tiles() const { return tiles_; }
  isa::Program& program() { return program_; }
  isa::Program take();  // appends halt to every stream and hands the program over

  void emit(int tile, const Instr& in) { streams_[size_t(tile)]->code.push_back(in); }
  size_t size(int tile) const { return streams_[size_t(tile)]->code.size(); }

  // HBM: a region of `bytes` (aligned), with a symbol for it; returns its address.
  uint64_t hbm_region(const std::string& name, isa::RegionKind kind, uint64_t bytes);
  uint64_t hbm_used() const { return hbm_next_; }
  void symbol(isa::Symbol s) { program_.symbols.push_back(std::move(s)); }

  // SRAM, the same offset on every tile. Freed all at once by sram_reset() between kernels.
  uint64_t sram_alloc(uint64_t bytes, uint64_t align = 64);
  uint64_t sram_free() const;
  void sram_reset() { sram_next_ = 0; }

  // Semaphores, the same index on every tile; released with sem_reset() once every wait of the
  // kernel that took them has been satisfied (at the kernel's closing barrier).
  int sem_alloc();
  void sem_reset() { sem_next_ = 0; }

  // Every tile waits for every other; `kernel`: the barrier also ends a kernel (isa barrier).
  void barrier_all(bool kernel = false);
  // A barrier id for a kernel that places its barriers itself, tile by tile (each tile then
  // emits barrier(id, tiles()) at the same point of its work).
  int barrier_id();

  // Scalar registers r1..r15, the same on every tile; register_reset() returns them.
  uint8_t reg_alloc();
  void reg_release(uint8_t r);

 private:
  const arch::Arch& arch_;
  int chip_;
  int tiles_;
  isa::Program program_;
  std::vector<isa::Stream*> streams_;
  uint64_t hbm_next_ = 0;
  uint64_t sram_next_ = 0;
  int sem_next_ = 0;
  int barrier_next_ = 0;
  uint16_t regs_used_ = 1;  // bit r set when taken; r0 is always zero
};

}  // namespace tessera::compiler
