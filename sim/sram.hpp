// A tile's scratchpad ports. DMA and the vector unit read and write through `ports` ports of
// bytes_per_cycle each; the systolic arrays have their own operand paths. The SRAM has `banks`
// banks of width w = bytes_per_cycle / banks, interleaved every w bytes.
//
// Cycles for `rows` rows of `row_bytes` bytes, `stride` apart:
//   contiguous (stride == row_bytes, one row, or packed): ceil(total / bytes_per_cycle)
//   rows wider than a port: rows * ceil(row_bytes / bytes_per_cycle)
//   narrower rows: a row covers rb = ceil(row_bytes / w) banks and successive rows start
//   sb = stride / w banks apart (mod banks); rows start on D = banks / gcd(sb, banks)
//   distinct banks, so at most min(banks / rb, D / ceil(rb / gcd)) rows fit in one cycle
//   without a bank conflict (a stride that is not a multiple of w spreads rows: banks / rb).
//   Column walks with a stride of banks * w thus take one cycle per element.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "sim/activity.hpp"
#include "sim/energy.hpp"
#include "sim/stats.hpp"
#include "sim/time.hpp"
#include "sim/timeline.hpp"

namespace tessera::sim {

// Port cycles for an access pattern (the formula above).
uint64_t sram_cycles(const arch::SramParams& p, uint64_t rows, uint64_t row_bytes, uint64_t stride);

class SramPorts {
 public:
  // `meter` (optional) is charged the energy of every byte read and written; the ports take
  // one slot of `slots`.
  SramPorts(const arch::SramParams& p, Clock clock, Stats& stats, const std::string& prefix,
            Slots& slots, PowerMeter* meter = nullptr);
  // Reserves the port that can start soonest at or after t; returns when the access ends. The
  // bytes and the port time are charged to `act`.
  Tick access(Tick t, uint64_t rows, uint64_t row_bytes, uint64_t stride, bool write, Activity& act);
  // How long such an access holds a port.
  Tick duration(uint64_t rows, uint64_t row_bytes, uint64_t stride) const {
    return clock_.cycles(double(sram_cycles(p_, rows, row_bytes, stride)));
  }
  void forget_before(Tick now);

 private:
  const arch::SramParams& p_;
  Clock clock_;
  std::vector<Timeline> ports_;
  PowerMeter* meter_;
  int slot_;
  double& read_bytes_;
  double& write_bytes_;
  double& conflict_cycles_;
};

}  // namespace tessera::sim
