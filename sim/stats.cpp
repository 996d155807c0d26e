#include "sim/stats.hpp"

namespace tessera::sim {

double& Stats::add(std::string name, std::string unit, std::string desc) {
  stats_.push_back({std::move(name), std::move(unit), std::move(desc), 0.0});
  return stats_.back().value;
}

const Stat* Stats::find(std::string_view name) const {
  for (const Stat& s : stats_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

double Stats::value(std::string_view name) const {
  const Stat* s = find(name);
  return s ? s->value : 0.0;
}

double Stats::sum(std::string_view prefix, std::string_view suffix) const {
  double total = 0;
  for (const Stat& s : stats_) {
    if (s.name.size() >= prefix.size() + suffix.size() && s.name.starts_with(prefix) && s.name.ends_with(suffix)) {
      total += s.value;
    }
  }
  return total;
}

nlohmann::json Stats::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const Stat& s : stats_) j[s.name] = {{"value", s.value}, {"unit", s.unit}, {"desc", s.desc}};
  return j;
}

}  // namespace tessera::sim
