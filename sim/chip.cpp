#include "sim/chip.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "sim/functional.hpp"

namespace tessera::sim {

using sc_core::sc_module_name;

// ---- Scheduler -------------------------------------------------------------------------------

Scheduler::Scheduler(sc_module_name name) : sc_core::sc_module(name) {
  SC_METHOD(run);
  sensitive << event_;
  dont_initialize();
}

void Scheduler::at(Tick t, std::function<void()> fn) {
  const Tick now = now_ticks();
  if (t < now) t = now;
  const bool earliest = queue_.empty() || t < queue_.top().t;
  queue_.push({t, seq_++, std::move(fn)});
  // A later notify is ignored while an earlier one is pending; an earlier one replaces it.
  if (earliest) event_.notify(ticks(t - now));
}

void Scheduler::run() {
  const Tick now = now_ticks();
  while (!queue_.empty() && queue_.top().t <= now) {
    // Move the callback out before popping: it may schedule more work.
    std::function<void()> fn = std::move(const_cast<Item&>(queue_.top()).fn);
    queue_.pop();
    fn();
  }
  if (!queue_.empty()) event_.notify(ticks(queue_.top().t - now));
}

// ---- Chip ------------------------------------------------------------------------------------

Chip::Chip(sc_module_name name, const arch::Arch& a, int index, const SimOptions& opt, Stats& stats,
           ChipMemory* memory, Trace* trace)
    : sc_core::sc_module(name),
      arch_(a),
      index_(index),
      prefix_("system.chip" + std::to_string(index)),
      opt_(opt),
      stats_(stats),
      memory_(memory),
      trace_(trace),
      clock_(a.chip.clock),
      meter_(EnergyPrices::from(a), opt.power_window),
      scheduler_("scheduler"),
      noc_(a, stats, prefix_ + ".noc", slots_, &meter_),
      hbm_(a),
      hbm_cache_(uint64_t(a.chip.shared_memory.hbm_cache * a.chip.shared_memory.capacity)),
      hbm_read_(stats.add(prefix_ + ".hbm.read_bytes", "bytes", "bytes read from HBM")),
      hbm_write_(stats.add(prefix_ + ".hbm.write_bytes", "bytes", "bytes written to HBM")),
      hbm_hits_(stats.add(prefix_ + ".hbm.row_hits", "count", "accesses to an open row")),
      hbm_misses_(stats.add(prefix_ + ".hbm.row_misses", "count", "accesses that opened a row in an idle bank")),
      hbm_conflicts_(stats.add(prefix_ + ".hbm.row_conflicts", "count", "accesses that closed another row first")),
      hbm_refreshes_(stats.add(prefix_ + ".hbm.refreshes", "count", "all-bank refreshes")),
      hbm_busy_(stats.add(prefix_ + ".hbm.data_busy_ps", "ps",
                          "sum over pseudo-channels of time the data bus was busy")),
      comm_("comm", *this) {
  for (int64_t i = 0; i < a.shared_memory_instances(); ++i) {
    shared_ports_.push_back(std::make_unique<Timeline>());
    shared_bytes_.push_back(&stats.add(fmt::format("{}.shared{}.bytes", prefix_, i), "bytes",
                                       "bytes read and written in this shared-memory instance"));
    shared_slots_.push_back(slots_.add(Resource::SharedMemory));
  }
  if (trace_) {
    for (int64_t pc = 0; pc < hbm_.geometry().pcs; ++pc) {
      hbm_tracks_.push_back(trace_->track(fmt::format("hbm.pc{}", pc), index_));
    }
    noc_.set_trace(trace_, index_);
    barrier_track_ = trace_->track("barriers", index_);
  }
  for (int64_t t = 0; t < a.tiles(); ++t) {
    tiles_.push_back(std::make_unique<Tile>(fmt::format("tile{}", t).c_str(), *this, int(t)));
  }
  attribution_ = std::make_unique<Attribution>(slots_, int(a.tiles()));
}

void Chip::region_began(int r) {
  const Attribution::Region& region = (*attribution_)[r];
  const auto& want = opt_.snapshot_marks;
  if (std::find(want.begin(), want.end(), region.id) == want.end()) return;
  collect_hbm_stats();
  Snapshot s{region.id, region.instance, now_ticks(), {}};
  s.values.reserve(stats_.all().size());
  for (const Stat& st : stats_.all()) s.values.push_back(st.value);
  snapshots_.push_back(std::move(s));
}

Tick Chip::issued(int64_t kernel) const {
  return opt_.eager_launch ? Tick(kernel + 1) * seconds_to_ticks(arch_.chip.launch.host) : 0;
}

void Chip::load(const isa::Program& p) {
  for (auto& t : tiles_) t->load(p.find_stream(uint32_t(index_), uint32_t(t->index())), issued(0));
}

int64_t Chip::shared_instance(int64_t tile) const {
  return arch_.chip.shared_memory.scope == arch::SharedScope::Cluster ? tile / arch_.chip.cluster_size : 0;
}

Tick Chip::shared_access(int64_t instance, Tick t, uint64_t bytes, bool /*write*/, Activity& act) {
  const Tick d = shared_duration(bytes);
  *shared_bytes_[size_t(instance)] += double(bytes);
  act.shared += double(bytes);
  act.busy[size_t(shared_slots_[size_t(instance)])] += double(d);
  const Tick start = shared_ports_[size_t(instance)]->reserve(t, d);
  meter_.add(start, start + d, double(bytes) * meter_.prices().shared);
  return start + d;
}

void Chip::barrier_arrive(int id, int count, bool kernel, Tile& tile) {
  Barrier& b = barriers_[size_t(id)];
  if (b.waiting.empty()) b.first_arrival = now_ticks();
  b.waiting.push_back(&tile);
  if (int(b.waiting.size()) < count) return;
  // Arrivals gather at a central point and the release fans out: twice the mesh diameter.
  // A kernel boundary on a chip that launches kernels takes the launch gap instead, and under
  // eager launch the next kernel starts no earlier than the host issues it.
  const int diameter = noc_.hops(0, int(tiles() - 1));
  Tick latency = Tick(2 * std::max(diameter, 1)) * noc_.hop_time();
  if (kernel) {
    ++kernels_ended_;
    if (arch_.chip.launch.gap > 0) latency = seconds_to_ticks(arch_.chip.launch.gap);
    if (opt_.eager_launch) latency = std::max(latency, issued(kernels_ended_) - now_ticks());
  }
  if (trace_) trace_->slice(barrier_track_, kernel ? "kernel boundary" : "barrier", b.first_arrival, now_ticks() + latency);
  std::vector<Tile*> release;
  release.swap(b.waiting);
  scheduler_.at(now_ticks() + latency, [release] {
    for (Tile* t : release) t->barrier_release();
  });
}

bool Chip::all_halted() const {
  return std::all_of(tiles_.begin(), tiles_.end(), [](const auto& t) { return t->halted(); });
}

std::string Chip::deadlock_report() const {
  std::string s;
  for (const auto& t : tiles_) {
    if (t->halted()) continue;
    s += fmt::format("  chip {} tile {}: {}\n", index_, t->index(), t->blocked_reason());
  }
  return s;
}

void Chip::tidy(Tick now) {
  if (now - tidied_ < 1'000'000) return;
  tidied_ = now;
  noc_.forget_before(now);
  for (auto& t : tiles_) t->sram().forget_before(now);
  for (auto& p : shared_ports_) p->forget_before(now);
  for (int64_t pc = 0; pc < hbm_.geometry().pcs; ++pc) hbm_.channel(pc).forget_before(now);
}

void Chip::collect_hbm_stats() {
  double reads = 0, writes = 0, hits = 0, misses = 0, conflicts = 0, refreshes = 0, busy = 0;
  for (int64_t pc = 0; pc < hbm_.geometry().pcs; ++pc) {
    const HbmChannelStats& c = hbm_.channel(pc).stats();
    reads += double(c.read_bytes);
    writes += double(c.write_bytes);
    hits += double(c.row_hits);
    misses += double(c.row_misses);
    conflicts += double(c.row_conflicts);
    refreshes += double(c.refreshes);
    busy += double(c.data_busy);
  }
  hbm_read_ = reads, hbm_write_ = writes, hbm_hits_ = hits, hbm_misses_ = misses;
  hbm_conflicts_ = conflicts, hbm_refreshes_ = refreshes, hbm_busy_ = busy;
}

const std::vector<int32_t>& Chip::routing_draw(uint64_t n, int64_t rows, int64_t experts, int64_t k) {
  if (routing_draws_.size() <= n) routing_draws_.resize(n + 1);
  std::vector<int32_t>& d = routing_draws_[n];
  if (d.size() != size_t(rows * k)) d = draw_routing(rows, experts, k, opt_.routing_skew, opt_.routing_seed, n);
  return d;
}

}  // namespace tessera::sim
