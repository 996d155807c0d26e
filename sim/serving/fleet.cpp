#include "sim/serving/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <stdexcept>

namespace tessera::sim::serving {

namespace {

// Requests dealt to `n` replicas in turn; each replica's result appended to `out`.
void deal(const std::vector<workloads::Request>& requests, const SchedulerConfig& config, int64_t n,
          IterationCost& cost, FleetResult& out, std::vector<int64_t>& replica_of, int64_t& done,
          const std::function<void(int64_t)>& progress) {
  std::vector<std::vector<workloads::Request>> shares(static_cast<size_t>(n));
  replica_of.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    replica_of[i] = int64_t(out.replicas.size() + i % size_t(n));
    shares[i % size_t(n)].push_back(requests[i]);
  }
  for (const auto& share : shares) {
    out.replicas.push_back(serve(share, config, cost, [&](int64_t finished) {
      if (progress) progress(done + finished);
    }));
    done += int64_t(share.size());
  }
}

// Each request's result in a fleet, in the order dealt (replica_of).
std::vector<RequestResult> gather(const FleetResult& f, const std::vector<int64_t>& replica_of) {
  std::vector<size_t> next(f.replicas.size(), 0);
  std::vector<RequestResult> out;
  for (const int64_t r : replica_of) out.push_back(f.replicas[size_t(r)].requests[next[size_t(r)]++]);
  return out;
}

}  // namespace

FleetResult serve_fleet(const std::vector<workloads::Request>& requests, const SchedulerConfig& config,
                        const Pools& pools, IterationCost& cost, const KvTransfer& transfer,
                        const std::function<void(int64_t)>& progress) {
  FleetResult out;
  out.pools = pools;
  int64_t done = 0;
  if (!pools.disaggregated()) {
    if (pools.colocated < 1) throw std::runtime_error("serving: a fleet needs at least one replica");
    deal(requests, config, pools.colocated, cost, out, out.replica_of, done, progress);
    out.all.requests = gather(out, out.replica_of);
  } else {
    if (pools.prefill < 1 || pools.decode < 1)
      throw std::runtime_error(fmt::format("serving: disaggregated pools need a prefill and a decode replica at least, got {} and {}",
                                           pools.prefill, pools.decode));
    if (!transfer) throw std::runtime_error("serving: disaggregated pools need a KV transfer");
    // Prefill pool: each request's prompt and first token.
    std::vector<workloads::Request> prompts = requests;
    for (workloads::Request& r : prompts) r.output_tokens = 1;
    std::vector<int64_t> prefill_of;
    int64_t prefilled = 0;
    deal(prompts, config, pools.prefill, cost, out, prefill_of, prefilled, {});
    out.all.requests = gather(out, prefill_of);
    for (size_t i = 0; i < requests.size(); ++i) out.all.requests[i].output_tokens = requests[i].output_tokens;

    // KV caches of the requests with more to decode, each prefill replica sending one at a time.
    std::vector<double> link_free(size_t(pools.prefill), 0.0);
    std::vector<size_t> order;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!out.all.requests[i].rejected && requests[i].output_tokens > 1) order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return out.all.requests[a].first_token < out.all.requests[b].first_token;
    });
    std::vector<workloads::Request> decodes;
    for (const size_t i : order) {
      const IterationCostResult t = transfer(requests[i].prompt_tokens);
      double& free_at = link_free[size_t(prefill_of[i])];
      const double start = std::max(out.all.requests[i].first_token, free_at);
      free_at = start + t.seconds;
      out.transfer_seconds += t.seconds, out.transfer_joules += t.joules;
      workloads::Request d = requests[i];
      d.arrival = free_at;
      decodes.push_back(d);
    }
    std::vector<size_t> by_arrival(decodes.size());
    std::iota(by_arrival.begin(), by_arrival.end(), size_t(0));
    std::stable_sort(by_arrival.begin(), by_arrival.end(),
                     [&](size_t a, size_t b) { return decodes[a].arrival < decodes[b].arrival; });
    std::vector<workloads::Request> sorted;
    for (const size_t k : by_arrival) sorted.push_back(decodes[k]);

    // Decode pool: the rest of each request's output.
    SchedulerConfig decode = config;
    decode.arrives_prefilled = true, decode.prefix_caching = false;
    std::vector<int64_t> decode_of;
    deal(sorted, decode, pools.decode, cost, out, decode_of, done, progress);
    const std::vector<RequestResult> decoded = gather(out, decode_of);
    out.replica_of = prefill_of;
    for (size_t k = 0; k < sorted.size(); ++k) {
      const size_t i = order[by_arrival[k]];
      RequestResult& r = out.all.requests[i];
      r.finished = decoded[k].finished;
      r.preemptions += decoded[k].preemptions, r.swaps += decoded[k].swaps;
      out.replica_of[i] = decode_of[k];
    }
    if (progress) progress(int64_t(requests.size()));
  }
  for (const ServeResult& r : out.replicas) {
    out.all.iterations.insert(out.all.iterations.end(), r.iterations.begin(), r.iterations.end());
    out.all.seconds = std::max(out.all.seconds, r.seconds);
    out.all.joules += r.joules;
  }
  out.all.joules += out.transfer_joules;
  return out;
}

int64_t fewest(const std::function<bool(int64_t)>& meets, int64_t max, const std::function<bool(int64_t, int64_t)>& gain) {
  int64_t fail = 0, n = 1;
  for (;;) {
    if (meets(n)) break;
    fail = n;
    if (n >= max) return 0;
    const int64_t up = std::min(2 * n, max);
    if (gain && !gain(n, up)) return 0;
    n = up;
  }
  while (n - fail > 1) {  // meets(n), not meets(fail)
    const int64_t mid = fail + (n - fail) / 2;
    (meets(mid) ? n : fail) = mid;
  }
  return n;
}

FleetPlan plan_fleet(const std::vector<workloads::Request>& requests, const FleetSpec& spec, const Slo& slo,
                     double attainment, bool disaggregated, int64_t max_replicas) {
  if (!spec.cost) throw std::runtime_error("serving: a plan needs an iteration cost");
  if (!(attainment > 0 && attainment <= 1))
    throw std::runtime_error(fmt::format("serving: the SLO attainment to plan for must be in (0, 1], got {}", attainment));
  if (max_replicas < 1) throw std::runtime_error(fmt::format("serving: at most {} replicas: at least 1 needed", max_replicas));
  FleetPlan plan;
  std::map<std::pair<int64_t, int64_t>, ServeMetrics> seen;
  auto at = [&](const Pools& p) -> const ServeMetrics& {
    const std::pair<int64_t, int64_t> key{p.colocated > 0 ? p.colocated : p.prefill, p.colocated > 0 ? 0 : p.decode};
    auto it = seen.find(key);
    if (it != seen.end()) return it->second;
    ++plan.replays;
    const FleetResult f = serve_fleet(requests, spec.config, p, *spec.cost, spec.transfer);
    return seen.emplace(key, summarize(f.all, spec.config, slo, spec.idle_watts, p.replicas())).first->second;
  };
  // More replicas still help while the attainment rises or the mean TTFT (TPOT) falls by a tenth.
  auto helps = [](const ServeMetrics& a, const ServeMetrics& b, bool ttft, bool tpot) {
    return b.slo_attainment > a.slo_attainment + 1e-4 || (ttft && b.ttft.mean < 0.9 * a.ttft.mean) ||
           (tpot && b.tpot.mean < 0.9 * a.tpot.mean);
  };
  auto finish = [&](const Pools& p, bool ok) {
    plan.feasible = ok, plan.pools = p, plan.metrics = at(p);
    plan.usd_per_hour = spec.usd_per_hour ? spec.usd_per_hour(p, plan.metrics) : 0.0;
    return plan;
  };
  if (!disaggregated) {
    auto pools = [](int64_t n) { return Pools{n, 0, 0}; };
    const int64_t n = fewest([&](int64_t k) { return at(pools(k)).slo_attainment >= attainment; }, max_replicas,
                             [&](int64_t a, int64_t b) { return helps(at(pools(a)), at(pools(b)), true, true); });
    if (n == 0) return finish(pools(seen.rbegin()->first.first), false);
    return finish(pools(n), true);
  }
  // TTFT depends on the prefill pool alone; size it with as many decode replicas, then the decode pool.
  auto pools = [](int64_t p, int64_t d) { return Pools{0, p, d}; };
  const int64_t p = fewest([&](int64_t k) { return at(pools(k, k)).ttft_attainment >= attainment; }, max_replicas,
                           [&](int64_t a, int64_t b) { return helps(at(pools(a, a)), at(pools(b, b)), true, false); });
  if (p == 0) return finish(pools(seen.rbegin()->first.first, seen.rbegin()->first.second), false);
  const int64_t d = fewest([&](int64_t k) { return at(pools(p, k)).slo_attainment >= attainment; }, max_replicas,
                           [&](int64_t a, int64_t b) { return helps(at(pools(p, a)), at(pools(p, b)), false, true); });
  if (d == 0) {
    int64_t most = 1;
    for (const auto& [key, m] : seen) most = key.first == p ? std::max(most, key.second) : most;
    return finish(pools(p, most), false);
  }
  return finish(pools(p, d), true);
}

int64_t cheapest(const std::vector<FleetPlan>& plans) {
  int64_t best = -1;
  for (size_t i = 0; i < plans.size(); ++i) {
    const double usd = plans[i].usd_per_hour;
    if (plans[i].feasible && std::isfinite(usd) && (best < 0 || usd < plans[size_t(best)].usd_per_hour)) best = int64_t(i);
  }
  return best;
}

}  // namespace tessera::sim::serving
