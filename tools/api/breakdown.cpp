#include "tools/api/breakdown.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace tessera::api {
namespace {

// "l0.q_proj+l0.k_proj" -> "q_proj+k_proj": a loop operator's name without its layer.
std::string without_layer(const std::string& name) {
  std::string out;
  for (size_t i = 0; i < name.size();) {
    if ((i == 0 || name[i - 1] == '+') && name.compare(i, 3, "l0.") == 0) {
      i += 3;
      continue;
    }
    out += name[i++];
  }
  return out;
}

}  // namespace

void trace_operators(sim::Trace& trace, const sim::RunResult& run, const Breakdown& b,
                     const std::vector<compiler::MarkedOp>& marks, const arch::Derived& d, int64_t layers,
                     int64_t simulated) {
  const int ops = trace.track("operators", 0), layer_track = trace.track("layers", 0);
  std::map<int64_t, std::pair<sim::Tick, sim::Tick>> layer_span;
  for (const Breakdown::Span& s : b.spans) {
    const sim::Attribution::Region& r = run.regions[s.region];
    std::string name = "(other)";
    if (r.id >= 0 && size_t(r.id) < marks.size()) {
      const compiler::MarkedOp& m = marks[size_t(r.id)];
      const int64_t per = m.instances_per_layer(), layer = r.instance / per, round = r.instance % per;
      name = m.name;
      if (m.in_layer_loop) {
        name = fmt::format("l{}.{}", layer, without_layer(m.name));
        auto [it, fresh] = layer_span.try_emplace(layer, s.start, s.end);
        it->second.first = std::min(it->second.first, s.start);
        it->second.second = std::max(it->second.second, s.end);
      }
      if (per > 1)
        name += fmt::format(" (part {} of {} simulated, standing for {:.3g})", round, per, m.instance_weight(round));
    }
    const double secs = sim::ticks_to_seconds(s.end - s.start);
    const std::map<std::string, double> u = utilization(r.activity, secs, d, run.slots);
    const nlohmann::json args = {{"seconds", secs},
                                 {"flops", 2 * r.activity.total_macs()},
                                 {"hbm_bytes", r.activity.hbm_read + r.activity.hbm_write},
                                 {"bound", bound_of(u)}};
    trace.labelled(ops, name, s.start, s.end, args.dump());
  }
  for (const auto& [l, span] : layer_span) {
    trace.labelled(layer_track, fmt::format("layer {}", l), span.first, span.second, R"({"simulated":true})");
  }
  if (simulated >= 2 && simulated < layers) {
    const double each = b.layers[size_t(simulated)].seconds;
    const nlohmann::json args = {{"simulated", false}, {"layers", layers - simulated}, {"seconds_each", each}};
    trace.labelled(layer_track, fmt::format("layers {}-{} (extrapolated, not simulated)", simulated, layers - 1),
                   run.time, run.time + sim::seconds_to_ticks(each * double(layers - simulated)), args.dump());
  }
}

std::pair<int64_t, int64_t> layer_bounds(const std::vector<compiler::MarkedOp>& marks) {
  int64_t first = -1, after = -1;
  for (size_t i = 0; i < marks.size(); ++i) {
    if (marks[i].in_layer_loop && first < 0) first = int64_t(i);
    if (!marks[i].in_layer_loop && first >= 0 && after < 0) after = int64_t(i);
  }
  return {first, after};
}

Breakdown attribute(const sim::RunResult& run, const std::vector<compiler::MarkedOp>& marks, int64_t layers,
                    int64_t simulated) {
  Breakdown b;
  const bool sampled = simulated >= 2 && simulated < layers;
  // Each region instance's share of time: from the previous completion to its own.
  const std::vector<sim::Attribution::Region>& regions = run.regions;
  std::vector<size_t> by_end(regions.size());
  std::iota(by_end.begin(), by_end.end(), 0);
  std::stable_sort(by_end.begin(), by_end.end(), [&](size_t x, size_t y) { return regions[x].end < regions[y].end; });
  std::vector<double> seconds(regions.size(), 0.0);
  sim::Tick before = 0;
  for (size_t i : by_end) {
    seconds[i] = sim::ticks_to_seconds(std::max<sim::Tick>(regions[i].end - before, 0));
    if (regions[i].end > before) b.spans.push_back({i, before, regions[i].end});
    before = std::max(before, regions[i].end);
  }
  // The last few cycles until every tile halts belong to the operator that ended last.
  if (!by_end.empty()) seconds[by_end.back()] += sim::ticks_to_seconds(std::max<sim::Tick>(run.time - before, 0));

  // Operators in mark order, then work outside any (or an unknown) mark.
  const size_t other = marks.size();
  b.ops.resize(marks.size() + 1);
  for (size_t m = 0; m < marks.size(); ++m) {
    Share& s = b.ops[m];
    s.name = marks[m].in_layer_loop ? without_layer(marks[m].name) : marks[m].name;
    s.kind = marks[m].kind;
    s.layers = marks[m].in_layer_loop ? layers : 0;
  }
  b.ops[other].name = "(other)", b.ops[other].kind = "none";
  const int64_t per_layer_rows = marks.empty() ? 0 : (layers > 0 ? layers : 0);
  b.layers.resize(size_t(per_layer_rows));
  for (int64_t l = 0; l < per_layer_rows; ++l) {
    b.layers[size_t(l)].name = fmt::format("layer {}", l);
    b.layers[size_t(l)].kind = "layer";
    b.layers[size_t(l)].extrapolated = sampled && l >= simulated;
  }
  // Every simulated instance stands for itself and for its share of what was not simulated:
  // an emitted round other than the first and the last two for the rounds not emitted, a layer
  // after the first for the layers not simulated (each extrapolated layer is the mean of layers
  // 1 .. K-1).
  const double per_layer = sampled ? 1.0 / double(simulated - 1) : 0.0;
  for (size_t i = 0; i < regions.size(); ++i) {
    const sim::Attribution::Region& r = regions[i];
    const bool known = r.id >= 0 && size_t(r.id) < marks.size();
    const compiler::MarkedOp* m = known ? &marks[size_t(r.id)] : nullptr;
    const int64_t per = m ? m->instances_per_layer() : 1, round = r.instance % per;
    const int64_t layer = m && m->in_layer_loop ? r.instance / per : -1;
    const double w_round = m ? m->instance_weight(round) : 1.0;
    const double w_layers = layer >= 1 ? double(layers - simulated) * per_layer : 0.0;
    const double secs = seconds[i], active = sim::ticks_to_seconds(r.end - r.start);
    auto add = [&](Share& to, double w) {
      to.seconds += w * secs;
      to.active += w * active;
      to.activity.add(r.activity, w);
    };
    add(b.ops[known ? size_t(r.id) : other], w_round * (1.0 + w_layers));
    if (layer < 0 || layer >= per_layer_rows) continue;
    add(b.layers[size_t(layer)], w_round);
    if (layer >= 1) {
      for (int64_t l = simulated; sampled && l < layers; ++l) add(b.layers[size_t(l)], w_round * per_layer);
    }
  }
  for (Share& s : b.layers) s.active = s.seconds;  // a layer's operators run one after another
  b.ops[other].active = b.ops[other].seconds;
  for (const Share& s : b.ops) {
    b.seconds += s.seconds;
    b.total.add(s.activity);
  }
  // Work outside any operator: shown only when there is some.
  if (b.ops[other].activity.instructions == 0 && b.ops[other].seconds == 0) b.ops.pop_back();
  return b;
}

sim::Stats extrapolate_stats(const sim::RunResult& run, const std::vector<compiler::MarkedOp>& marks,
                             int64_t layers, int64_t simulated) {
  const auto [first, after] = layer_bounds(marks);
  const std::vector<double>* start = nullptr;  // the start of layer 1
  const std::vector<double>* end = nullptr;    // the end of the loop
  for (const sim::Snapshot& s : run.snapshots) {
    if (s.mark == first && s.instance == 1) start = &s.values;
    if (s.mark == after && s.instance == 0) end = &s.values;
  }
  std::vector<double> final_values;
  for (const sim::Stat& s : run.stats.all()) final_values.push_back(s.value);
  if (end == nullptr) end = &final_values;
  if (start == nullptr) throw std::logic_error("no snapshot at the start of layer 1");
  sim::Stats out;
  size_t i = 0;
  for (const sim::Stat& s : run.stats.all()) {
    auto at = [&](const std::vector<double>* v) { return i < v->size() ? (*v)[i] : 0.0; };
    const double per_layer = (at(end) - at(start)) / double(simulated - 1);
    out.add(s.name, s.unit, s.desc) = s.value + double(layers - simulated) * per_layer;
    ++i;
  }
  return out;
}

std::map<std::string, double> utilization(const sim::Activity& a, double seconds, const arch::Derived& d,
                                          const sim::Slots& slots) {
  std::map<std::string, double> u;
  double compute = 0;
  for (int dt = 1; dt < isa::kDtypeCount; ++dt) {
    const double macs = a.macs[size_t(dt)];
    if (macs == 0 || seconds <= 0) continue;
    compute += 2 * macs / seconds /
               d.peak_flops.at(std::string(isa::array_dtype_class(static_cast<isa::Dtype>(dt))));
  }
  u["compute"] = compute;
  u["hbm_bandwidth"] = seconds > 0 ? (a.hbm_read + a.hbm_write) / seconds / d.hbm_bandwidth : 0;
  u["interconnect"] = seconds > 0 && d.link_bandwidth > 0 ? a.link_bits / 8 / seconds / d.link_bandwidth : 0;
  const auto peak = a.peak_utilization(slots, seconds * 1e12);
  for (int k = 0; k < sim::kResourceKinds; ++k) {
    const auto r = static_cast<sim::Resource>(k);
    if (r != sim::Resource::Arrays) u[std::string(sim::resource_name(r))] = peak[size_t(k)];
  }
  return u;
}

std::string bound_of(const std::map<std::string, double>& u) {
  std::string best = "latency";
  double most = kSaturated;
  for (const auto& [k, v] : u) {
    if (k != "capacity" && v >= most) best = k, most = v;
  }
  return best;
}

}  // namespace tessera::api
