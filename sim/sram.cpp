#include "sim/sram.hpp"

#include <algorithm>
#include <numeric>

namespace tessera::sim {

uint64_t sram_cycles(const arch::SramParams& p, uint64_t rows, uint64_t row_bytes, uint64_t stride) {
  const uint64_t port = uint64_t(p.bytes_per_cycle), banks = uint64_t(p.banks);
  const uint64_t w = std::max<uint64_t>(1, port / banks);
  if (rows == 0 || row_bytes == 0) return 0;
  if (rows == 1 || stride == 0 || stride == row_bytes) return (rows * row_bytes + port - 1) / port;
  if (row_bytes >= port) return rows * ((row_bytes + port - 1) / port);
  const uint64_t rb = (row_bytes + w - 1) / w;
  uint64_t per_cycle = banks / rb;
  if (stride % w == 0) {
    const uint64_t sb = (stride / w) % banks;
    const uint64_t g = std::gcd(sb, banks);  // gcd(0, banks) = banks
    const uint64_t distinct = banks / g;
    per_cycle = std::min(per_cycle, distinct / ((rb + g - 1) / g));
  }
  per_cycle = std::max<uint64_t>(per_cycle, 1);
  return (rows + per_cycle - 1) / per_cycle;
}

SramPorts::SramPorts(const arch::SramParams& p, Clock clock, Stats& stats, const std::string& prefix,
                     Slots& slots, PowerMeter* meter)
    : p_(p),
      clock_(clock),
      ports_(size_t(p.ports)),
      meter_(meter),
      slot_(slots.add(Resource::SramPorts, int(p.ports))),
      read_bytes_(stats.add(prefix + ".read_bytes", "bytes", "bytes read through the SRAM ports")),
      write_bytes_(stats.add(prefix + ".write_bytes", "bytes", "bytes written through the SRAM ports")),
      conflict_cycles_(stats.add(prefix + ".bank_conflict_cycles", "cycles",
                                 "port cycles lost to bank conflicts of strided accesses")) {}

Tick SramPorts::access(Tick t, uint64_t rows, uint64_t row_bytes, uint64_t stride, bool write, Activity& act) {
  const uint64_t cycles = sram_cycles(p_, rows, row_bytes, stride);
  const uint64_t ideal = (rows * row_bytes + uint64_t(p_.bytes_per_cycle) - 1) / uint64_t(p_.bytes_per_cycle);
  conflict_cycles_ += double(cycles - std::min(cycles, ideal));
  (write ? write_bytes_ : read_bytes_) += double(rows * row_bytes);
  (write ? act.sram_write : act.sram_read) += double(rows * row_bytes);
  const Tick d = clock_.cycles(double(cycles));
  act.busy[size_t(slot_)] += double(d);
  // The port that frees first.
  size_t best = 0;
  Timeline::Slot slot{};
  for (size_t i = 0; i < ports_.size(); ++i) {
    const Timeline::Slot s = ports_[i].find(t, d);
    if (i == 0 || s.start < slot.start) best = i, slot = s;
  }
  const Tick start = slot.start;
  ports_[best].reserve(slot, d);
  if (meter_) {
    const double price = write ? meter_->prices().sram_write : meter_->prices().sram_read;
    meter_->add(start, start + d, double(rows * row_bytes) * price);
  }
  return start + d;
}

void SramPorts::forget_before(Tick now) {
  for (Timeline& p : ports_) p.forget_before(now);
}

}  // namespace tessera::sim
