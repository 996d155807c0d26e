#include "sim/chip.hpp"

#include <fmt/format.h>

#include <algorithm>

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
      prefix_("chip" + std::to_string(index)),
      opt_(opt),
      stats_(stats),
      memory_(memory),
      trace_(trace),
      clock_(a.chip.clock),
      meter_(EnergyPrices::from(a), opt.power_window),
      scheduler_("scheduler"),
      noc_(a, stats, prefix_ + ".noc", &meter_),
      hbm_(a) {
  for (int64_t i = 0; i < a.shared_memory_instances(); ++i) {
    shared_ports_.push_back(std::make_unique<Timeline>());
    shared_bytes_.push_back(&stats.add(fmt::format("{}.shared{}.bytes", prefix_, i), "bytes",
                                       "bytes read and written in this shared-memory instance"));
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
}

void Chip::load(const isa::Program& p) {
  for (auto& t : tiles_) t->load(p.find_stream(uint32_t(index_), uint32_t(t->index())));
}

int64_t Chip::shared_instance(int64_t tile) const {
  return arch_.chip.shared_memory.scope == arch::SharedScope::Cluster ? tile / arch_.chip.cluster_size : 0;
}

Tick Chip::shared_access(int64_t instance, Tick t, uint64_t bytes, bool /*write*/) {
  const Tick d = shared_duration(bytes);
  *shared_bytes_[size_t(instance)] += double(bytes);
  const Tick start = shared_ports_[size_t(instance)]->reserve(t, d);
  meter_.add(start, start + d, double(bytes) * meter_.prices().shared);
  return start + d;
}

void Chip::barrier_arrive(int id, int count, Tile& tile) {
  Barrier& b = barriers_[size_t(id)];
  if (b.waiting.empty()) b.first_arrival = now_ticks();
  b.waiting.push_back(&tile);
  if (int(b.waiting.size()) < count) return;
  // Arrivals gather at a central point and the release fans out: twice the mesh diameter.
  const int diameter = noc_.hops(0, int(tiles() - 1));
  const Tick latency = Tick(2 * std::max(diameter, 1)) * noc_.hop_time();
  if (trace_) trace_->slice(barrier_track_, "barrier", b.first_arrival, now_ticks() + latency);
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
  const std::string p = prefix_ + ".hbm.";
  stats_.add(p + "read_bytes", "bytes", "bytes read from HBM") = reads;
  stats_.add(p + "write_bytes", "bytes", "bytes written to HBM") = writes;
  stats_.add(p + "row_hits", "count", "accesses to an open row") = hits;
  stats_.add(p + "row_misses", "count", "accesses that opened a row in an idle bank") = misses;
  stats_.add(p + "row_conflicts", "count", "accesses that closed another row first") = conflicts;
  stats_.add(p + "refreshes", "count", "all-bank refreshes") = refreshes;
  stats_.add(p + "data_busy_ps", "ps", "sum over pseudo-channels of time the data bus was busy") = busy;
}

}  // namespace tessera::sim
