// Statistics, gem5 style: each component registers its counters once, with a dotted name,
// a unit and a description, and then increments them through references (no string lookups on
// hot paths). Registration order is kept, so dumps are deterministic.
#pragma once

#include <cstdint>
#include <deque>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::sim {

struct Stat {
  std::string name;  // "system.chip0.tile12.sa.busy_ps"
  std::string unit;  // "ps", "bytes", "count", ...
  std::string desc;
  double value = 0;
};

class Stats {
 public:
  // Registers a counter; the reference stays valid for the life of this object.
  double& add(std::string name, std::string unit, std::string desc);
  const std::deque<Stat>& all() const { return stats_; }
  const Stat* find(std::string_view name) const;
  double value(std::string_view name) const;  // 0 when absent
  // Sum of every stat whose name matches prefix*suffix, e.g. ("system.chip0.tile", ".sa.macs_bf16").
  double sum(std::string_view prefix, std::string_view suffix) const;
  // {"system.chip0.tile0.sa.busy_ps": {"value": ..., "unit": ..., "desc": ...}, ...}
  nlohmann::json to_json() const;

 private:
  std::deque<Stat> stats_;
};

}  // namespace tessera::sim
