// plan(): for each system, mapping and mode, the fewest replicas that meet the SLO at each load
// (sim/serving/fleet.hpp's search over replays on that replica's cost grid), priced owned and
// cloud, and the cheapest.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "compiler/hf_frontend.hpp"
#include "tools/api/serve.hpp"

namespace tessera::api {

namespace {

// A per-hour price spread over the requests a fleet serves, for a user making `per_month` of them.
double per_user_month(double usd_per_hour, double requests_per_s, double per_month) {
  return requests_per_s > 0 ? usd_per_hour / (requests_per_s * 3600.0) * per_month : std::nan("");
}

}  // namespace

PlanReport plan(const std::vector<arch::Arch>& systems, const std::vector<workloads::Request>& traffic,
                const PlanSpec& spec, const RunOptions& options, const std::function<void(const PlanProgress&)>& progress) {
  const auto host_start = std::chrono::steady_clock::now();
  if (systems.empty()) throw std::runtime_error("plan: no systems given");
  if (traffic.empty()) throw std::runtime_error("plan: no requests to replay");
  if (spec.serve.model.empty()) throw std::runtime_error("plan: no model given");
  if (spec.loads.empty()) throw std::runtime_error("plan: no loads given");
  for (const double l : spec.loads) {
    if (!(l > 0) || !std::isfinite(l)) throw std::runtime_error(fmt::format("plan: a load of {}: loads are multiples above 0", l));
  }
  if (!(spec.requests_per_user_month > 0) || !std::isfinite(spec.requests_per_user_month)) {
    throw std::runtime_error(fmt::format("plan: {} requests per user-month: give a number above 0", spec.requests_per_user_month));
  }
  const sim::serving::Slo slo = spec.serve.slo.empty() ? sim::serving::Slo{} : sim::serving::parse_slo(spec.serve.slo);
  if (!std::isfinite(slo.ttft) && !std::isfinite(slo.tpot)) throw std::runtime_error("plan: give an SLO to plan for (--slo ttft=..,tpot=..)");

  PlanReport rep;
  rep.model = compiler::load_model_config(spec.serve.model).name;
  rep.pricing = options.pricing, rep.slo = slo, rep.attainment = spec.attainment;
  rep.requests_per_user_month = spec.requests_per_user_month, rep.loads = spec.loads;
  std::vector<std::vector<workloads::Request>> loads;
  for (const double l : spec.loads) loads.push_back(l == 1.0 ? traffic : workloads::scale_rate(traffic, l));

  for (const arch::Arch& a : systems) {
    std::vector<int64_t> mappings = spec.tp;
    if (mappings.empty()) {
      for (int64_t tp = 1; tp <= a.system.chips; ++tp) {
        if (a.system.chips % tp == 0) mappings.push_back(tp);
      }
    }
    for (const int64_t tp : mappings) {
      std::unique_ptr<Deployment> d;
      try {
        d = std::make_unique<Deployment>(a, tp, spec.serve, options);
      } catch (const std::exception& e) {
        rep.skipped.push_back(fmt::format("{} tp {}: {}", a.name, tp, e.what()));
        continue;
      }
      sim::serving::FleetSpec fs;
      fs.config = d->config(), fs.cost = &d->cost(), fs.idle_watts = d->idle_watts();
      fs.transfer = [&d](int64_t tokens) { return d->transfer(tokens); };
      fs.usd_per_hour = [&](const sim::serving::Pools& p, const sim::serving::ServeMetrics& m) {
        return usd_per_hour(a, double(tp * p.replicas()), m.seconds > 0 ? m.joules / m.seconds : 0.0, options.pricing);
      };
      for (size_t li = 0; li < loads.size(); ++li) {
        for (const bool disaggregated : {false, true}) {
          if (disaggregated && !spec.disaggregation) continue;
          if (progress) {
            progress({fmt::format("{} tp {} {} at {}x", a.name, tp, disaggregated ? "disaggregated" : "co-located", spec.loads[li]),
                      rep.replays, rep.simulations + d->cost().simulations()});
          }
          PlanRow row;
          row.system = a.name, row.load = spec.loads[li], row.tp = tp, row.disaggregated = disaggregated;
          try {
            row.fleet = sim::serving::plan_fleet(loads[li], fs, slo, spec.attainment, disaggregated, spec.max_replicas);
          } catch (const std::exception& e) {
            rep.skipped.push_back(fmt::format("{} tp {} at {}x: {}", a.name, tp, spec.loads[li], e.what()));
            continue;
          }
          rep.replays += row.fleet.replays;
          const sim::serving::ServeMetrics& m = row.fleet.metrics;
          row.chips = tp * row.fleet.pools.replicas();
          row.avg_power_w = m.seconds > 0 ? m.joules / m.seconds : 0.0;
          row.utilization = m.seconds > 0 ? m.busy_seconds / (double(row.fleet.pools.replicas()) * m.seconds) : 0.0;
          row.usd_per_hour_owned = usd_per_hour(a, double(row.chips), row.avg_power_w, "owned");
          row.usd_per_hour_cloud = usd_per_hour(a, double(row.chips), row.avg_power_w, "cloud");
          auto per_million = [&](double usd_h) { return m.tokens_per_s > 0 ? usd_h / (m.tokens_per_s * 3600.0) * 1e6 : std::nan(""); };
          row.usd_per_million_tokens_owned = per_million(row.usd_per_hour_owned);
          row.usd_per_million_tokens_cloud = per_million(row.usd_per_hour_cloud);
          row.usd_per_user_month_owned = per_user_month(row.usd_per_hour_owned, m.requests_per_s, spec.requests_per_user_month);
          row.usd_per_user_month_cloud = per_user_month(row.usd_per_hour_cloud, m.requests_per_s, spec.requests_per_user_month);
          rep.rows.push_back(row);
        }
      }
      rep.simulations += d->cost().simulations();
    }
  }
  // Rows by load, then as the systems and mappings were given; the cheapest feasible row at each
  // load, by the pricing asked for.
  std::stable_sort(rep.rows.begin(), rep.rows.end(), [](const PlanRow& x, const PlanRow& y) { return x.load < y.load; });
  for (const double l : spec.loads) {
    std::vector<sim::serving::FleetPlan> at_load;
    std::vector<int64_t> row_of;
    for (size_t i = 0; i < rep.rows.size(); ++i) {
      if (rep.rows[i].load == l) at_load.push_back(rep.rows[i].fleet), row_of.push_back(int64_t(i));
    }
    const int64_t k = sim::serving::cheapest(at_load);
    rep.best.push_back(k < 0 ? -1 : row_of[size_t(k)]);
  }
  rep.host_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - host_start).count();
  return rep;
}

nlohmann::json PlanReport::to_json() const {
  using nlohmann::json;
  auto number = [](double x) { return std::isfinite(x) ? json(x) : json(nullptr); };
  json rows_json = json::array();
  for (const PlanRow& r : rows) {
    const sim::serving::ServeMetrics& m = r.fleet.metrics;
    rows_json.push_back({{"system", r.system},
                         {"load", r.load},
                         {"tp", r.tp},
                         {"mode", r.disaggregated ? "disaggregated" : "co-located"},
                         {"feasible", r.fleet.feasible},
                         {"replicas", r.fleet.pools.colocated},
                         {"prefill_replicas", r.fleet.pools.prefill},
                         {"decode_replicas", r.fleet.pools.decode},
                         {"chips", r.chips},
                         {"replays", r.fleet.replays},
                         {"slo_attainment", m.slo_attainment},
                         {"ttft_p99", m.ttft.p99},
                         {"tpot_p99", m.tpot.p99},
                         {"requests_per_s", m.requests_per_s},
                         {"tokens_per_s", m.tokens_per_s},
                         {"utilization", r.utilization},
                         {"avg_power_w", r.avg_power_w},
                         {"usd_per_hour_owned", number(r.usd_per_hour_owned)},
                         {"usd_per_hour_cloud", number(r.usd_per_hour_cloud)},
                         {"usd_per_million_tokens_owned", number(r.usd_per_million_tokens_owned)},
                         {"usd_per_million_tokens_cloud", number(r.usd_per_million_tokens_cloud)},
                         {"usd_per_user_month_owned", number(r.usd_per_user_month_owned)},
                         {"usd_per_user_month_cloud", number(r.usd_per_user_month_cloud)}});
  }
  json best_json = json::array();
  for (size_t i = 0; i < best.size(); ++i) best_json.push_back({{"load", loads[i]}, {"row", best[i] >= 0 ? json(best[i]) : json(nullptr)}});
  return {{"model", model},
          {"slo", {{"ttft", number(slo.ttft)}, {"tpot", number(slo.tpot)}}},
          {"attainment", attainment},
          {"requests_per_user_month", requests_per_user_month},
          {"pricing", pricing},
          {"rows", rows_json},
          {"cheapest", best_json},
          {"skipped", skipped},
          {"simulations", simulations},
          {"replays", replays},
          {"host_seconds", host_seconds}};
}

}  // namespace tessera::api
