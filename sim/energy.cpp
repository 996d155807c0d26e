#include "sim/energy.hpp"

#include <algorithm>

namespace tessera::sim {

EnergyPrices EnergyPrices::from(const arch::Arch& a) {
  EnergyPrices p;
  for (int d = 1; d < isa::kDtypeCount; ++d) {
    const std::string_view cls = isa::array_dtype_class(static_cast<isa::Dtype>(d));
    if (!cls.empty() && a.power.mac_energy.has(cls)) p.mac[size_t(d)] = a.power.mac_energy.at(cls);
  }
  p.sram_read = a.power.sram_read_energy;
  p.sram_write = a.power.sram_write_energy;
  p.shared = a.power.shared_memory_energy;
  p.hbm = a.hbm.energy_per_bit * 8;
  p.noc = a.power.noc_energy;
  p.vector = a.power.vector_energy;
  p.link = a.system.link.energy_per_bit;
  p.scale_out = a.system.scale_out.energy_per_bit;
  p.static_power = a.power.static_power;
  p.active_power = a.power.active_power;
  return p;
}

double Energy::dynamic() const {
  double sum = 0;
  for (const auto& [k, j] : joules) {
    if (k != "static") sum += j;
  }
  return sum;
}

double Energy::total() const {
  double sum = 0;
  for (const auto& [k, j] : joules) sum += j;
  return sum;
}

Energy price(const EnergyPrices& p, const Activity& a, double seconds, int64_t chips) {
  Energy e;
  double mac = 0;
  for (size_t d = 0; d < a.macs.size(); ++d) mac += a.macs[d] * p.mac[d];
  e.joules["mac"] = mac;
  e.joules["sram"] = a.sram_read * p.sram_read + a.sram_write * p.sram_write;
  e.joules["shared_memory"] = a.shared * p.shared;
  e.joules["hbm"] = (a.hbm_read + a.hbm_write) * p.hbm;
  e.joules["noc"] = a.noc_bit_hops * p.noc;
  e.joules["vector"] = a.vector_elements * p.vector;
  e.joules["link"] = a.link_bits * p.link + a.scale_out_bits * p.scale_out;
  e.joules["active"] = p.active_power * seconds * double(chips);
  e.joules["static"] = p.static_power * seconds * double(chips);
  return e;
}

PowerMeter::PowerMeter(const EnergyPrices& prices, Tick window)
    : prices_(prices), window_(window), per_window_(uint64_t(window)) {}

void PowerMeter::spread(Tick start, Tick end, Tick final_tick, double joules) {
  const size_t first = size_t(per_window_.div(uint64_t(start)));
  const size_t last = size_t(per_window_.div(uint64_t(final_tick)));
  if (bins_.size() <= last) bins_.resize(last + 1, 0.0);
  last_bin_ = last;
  lo_ = Tick(last) * window_;
  if (first == last) {
    bins_[first] += joules;
    return;
  }
  const double per_tick = joules / double(end - start);
  for (size_t b = first; b <= last; ++b) {
    const Tick lo = std::max(start, Tick(b) * window_), hi = std::min(end, Tick(b + 1) * window_);
    bins_[b] += per_tick * double(hi - lo);
  }
}

double peak_power(const std::vector<std::vector<double>>& bins, Tick window, Tick end,
                  double static_power) {
  size_t n = 0;
  for (const auto& b : bins) n = std::max(n, b.size());
  double peak = 0;
  for (size_t i = 0; i < n; ++i) {
    double sum = 0;
    for (const auto& b : bins) sum += i < b.size() ? b[i] : 0.0;
    peak = std::max(peak, sum);
  }
  return peak / ticks_to_seconds(n <= 1 ? std::clamp<Tick>(end, 1, window) : window) + static_power;
}

}  // namespace tessera::sim
