#include "sim/system.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace tessera::sim {

namespace {

// Chips are c0, c1, ...; the node after them is the switch (the scale-out switch when there are
// domains), and a domain's own switches follow as sw1, sw2, ...
std::string node_name(int node, int chips) {
  return node < chips ? fmt::format("c{}", node) : node == chips ? "sw" : fmt::format("sw{}", node - chips);
}

}  // namespace

Fabric::Fabric(sc_core::sc_module_name name, const arch::Arch& a, Stats& stats, Trace* trace)
    : sc_core::sc_module(name),
      port("port"),
      chips("chips"),
      topology_(make_topology(a.system)),
      scheduler_("scheduler"),
      trace_(trace) {
  port(*this);
  const int n = topology_->chips();
  for (const LinkSpec& s : topology_->links()) {
    const std::string id = fmt::format("system.link.{}-{}", node_name(s.from, n), node_name(s.to, n));
    links_.push_back(std::unique_ptr<Link>(new Link{
        s, Timeline{}, stats.add(id + ".bytes", "bytes", "bytes carried in this direction"),
        stats.add(id + ".busy_ps", "ps", "time this direction carried data"),
        trace ? trace->track(id.substr(7), s.from < n ? s.from : s.to) : -1}));
  }
}

Tick Fabric::transmit(Piece piece, Tick ready, Activity& act, PowerMeter& meter) {
  const int64_t pair = int64_t(piece.src) * topology_->chips() + piece.dst;
  auto found = routes_.find(pair);
  if (found == routes_.end()) found = routes_.emplace(pair, topology_->route(piece.src, piece.dst)).first;
  const std::vector<int>& route = found->second;
  Tick at = ready, left = ready, arrival = ready;
  Tick previous = 0;  // the previous hop's transfer time
  for (size_t h = 0; h < route.size(); ++h) {
    Link& l = *links_[size_t(route[h])];
    const Tick d = seconds_to_ticks(double(piece.size) / l.spec.bandwidth);
    // Cut-through: a hop starts once the piece's head has crossed the previous one, and no
    // earlier than its tail could keep up with.
    at = std::max(at, at + previous - d);
    // No piece starts before now: the calendar forgets what ended, so it stays short.
    if (l.calendar.intervals() > 64) l.calendar.forget_before(now_ticks());
    const Tick start = l.calendar.reserve(at, d);
    const Tick latency = seconds_to_ticks(l.spec.latency);
    if (h == 0) left = start + d;
    const double bits = double(piece.size) * 8.0;
    (l.spec.scale_out ? act.scale_out_bits : act.link_bits) += bits;
    meter.add(start, start + d, bits * (l.spec.scale_out ? meter.prices().scale_out : meter.prices().link));
    l.bytes += double(piece.size);
    l.busy += double(d);
    if (trace_) trace_->busy(l.track, start, start + d);
    arrival = start + d + latency;
    at = start + latency;
    previous = d;
  }
  const int dst = piece.dst;
  scheduler_.at(arrival, [this, dst, piece = std::move(piece)]() mutable { chips[dst]->arrive(std::move(piece)); });
  return left;
}

System::System(const arch::Arch& a, const SimOptions& opt, Stats& stats, const std::vector<ChipMemory*>& memories,
               Trace* trace) {
  if (a.system.chips > 1) fabric_ = std::make_unique<Fabric>("fabric", a, stats, trace);
  for (int64_t c = 0; c < a.system.chips; ++c) {
    chips_.push_back(std::make_unique<Chip>(fmt::format("chip{}", c).c_str(), a, int(c), opt, stats,
                                            memories.empty() ? nullptr : memories[size_t(c)], trace));
    if (fabric_) {
      chips_.back()->comm().fabric(fabric_->port);
      fabric_->chips(chips_.back()->comm().port);
    }
  }
}

}  // namespace tessera::sim
