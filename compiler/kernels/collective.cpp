#include "compiler/kernels/collective.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <utility>

namespace tessera::compiler {
namespace {

// One chip's place in a group of chips (ring order), and the parts a tensor of `elements`
// values (when given) is cut into over them: part p (modulo n) is [p * elements / n,
// (p + 1) * elements / n).
class Group {
 public:
  Group(int chip, const std::vector<int>& chips, const char* what, int64_t elements = -1)
      : chips_(chips), n_(int64_t(chips.size())), elements_(elements) {
    const auto at = std::find(chips.begin(), chips.end(), chip);
    if (at == chips.end()) throw CompileError(fmt::format("{}: chip {} is not in its group", what, chip));
    c_ = at - chips.begin();
    if (elements >= 0 && elements < n_) {
      throw CompileError(fmt::format("{} of {} values over {} chips: fewer values than chips", what, elements, n_));
    }
  }
  int64_t size() const { return n_; }
  int64_t position() const { return c_; }
  int at(int64_t p) const { return chips_[size_t(wrap(p))]; }  // the chip at position p
  int64_t first(int64_t p) const { return wrap(p) * elements_ / n_; }
  int64_t count(int64_t p) const { return (wrap(p) + 1) * elements_ / n_ - first(p); }

 private:
  int64_t wrap(int64_t p) const { return (p % n_ + n_) % n_; }
  std::vector<int> chips_;
  int64_t n_, elements_, c_ = 0;
};

// The tiles' SRAM for adding received parts, taken once per kernel.
struct Adder {
  uint64_t a = 0, b = 0;
  int64_t chunk = 0;  // values per add
  int loaded = 0, stored = 0;
};

Adder make_adder(KernelContext& ctx, Dtype d) {
  Adder x;
  x.chunk = std::max<int64_t>(1, int64_t(ctx.sram_left() / 2 / 64 * 64) / esize(d));
  x.a = ctx.sram(uint64_t(x.chunk * esize(d))), x.b = ctx.sram(uint64_t(x.chunk * esize(d)));
  x.loaded = ctx.sem(), x.stored = ctx.sem();
  return x;
}

// Adds `count` values at each of `from` into `into` (HBM), each tile a slice, in the adder's
// chunks: the own values loaded once, every addend added to them, the sum stored once.
void add_into(ProgramBuilder& pb, const Adder& add, Addr into, const std::vector<Addr>& from, int64_t count, Dtype d) {
  const int tiles = pb.tiles();
  const int64_t e = esize(d);
  const Tensor2 ta{sram(int64_t(add.a)), 0, d}, tb{sram(int64_t(add.b)), 0, d};
  for (int t = 0; t < tiles; ++t) {
    const int64_t lo = t * count / tiles, hi = (t + 1) * count / tiles;
    int64_t chunks = 0;
    for (int64_t x = lo; x < hi; x += add.chunk, ++chunks) {
      const int64_t len = std::min(add.chunk, hi - x);
      Block blk;
      blk.d0 = len;
      const Addr mine = advance(into, x * e);
      pb.emit(t, dma(sram(int64_t(add.a)), mine, blk, d, Dtype::None, {add.loaded}));
      for (size_t k = 0; k < from.size(); ++k) {
        pb.emit(t, dma(sram(int64_t(add.b)), advance(from[k], x * e), blk, d, Dtype::None, {add.loaded}));
        pb.emit(t, sem_wait(add.loaded, k == 0 ? 2 : 1));
        pb.emit(t, vec_binary(Opcode::VAdd, ta, tb, ta, 1, len));
      }
      pb.emit(t, dma(mine, sram(int64_t(add.a)), blk, d, Dtype::None, {add.stored}));
    }
    if (chunks > 0) pb.emit(t, sem_wait(add.stored, chunks));
  }
}

// One chip's part of a ring collective: its group, and its semaphores.
class Ring {
 public:
  Ring(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s, const char* what)
      : pb_(ctx.pb), s_(s), g_(ctx.pb.chip(), ring, what, s.elements), e_(esize(s.dtype)) {
    arrived_ = ctx.sem(), sent_ = ctx.sem();
  }

  const Group& group() const { return g_; }

  // Step `step`: part `out` to the next chip; part `in` from the previous one, into `into`.
  void exchange(int64_t step, int64_t out, Addr into, int64_t in) {
    const int64_t c = g_.position();
    pb_.emit(0, send(advance(s_.buf, g_.first(out) * e_), g_.count(out) * e_, g_.at(c + 1), s_.tag + step, sent_));
    pb_.emit(0, recv(into, g_.count(in) * e_, g_.at(c - 1), s_.tag + step, arrived_));
    pb_.emit(0, sem_wait(arrived_));
    ++sends_;
  }

  void reduce_scatter(const Adder& add) {
    const int64_t c = g_.position();
    for (int64_t step = 0; step < g_.size() - 1; ++step) {
      // Part c - step - 1 out (the sum so far), part c - step - 2 in: after n - 1 steps chip c
      // has added every chip's part c.
      const int64_t in = c - step - 2;
      exchange(step, c - step - 1, s_.scratch, in);
      pb_.barrier_all();  // the part has arrived: every tile adds a slice of it
      add_into(pb_, add, advance(s_.buf, g_.first(in) * e_), {s_.scratch}, g_.count(in), s_.dtype);
      pb_.barrier_all();  // the sums are in HBM: the next step sends one of them
    }
  }

  // Steps first .. first + n - 2 (tags follow a reduce-scatter's in an all-reduce).
  void all_gather(int64_t first) {
    const int64_t c = g_.position();
    for (int64_t j = 0; j < g_.size() - 1; ++j) {
      const int64_t in = c - j - 1;
      exchange(first + j, c - j, advance(s_.buf, g_.first(in) * e_), in);
    }
  }

  // Nothing may overwrite a part still being sent.
  void finish() { pb_.emit(0, sem_wait(sent_, sends_)); }

  // Tags of a kernel's steps.
  int64_t steps() const { return 2 * (g_.size() - 1); }

 private:
  ProgramBuilder& pb_;
  const CollectiveSpec& s_;
  Group g_;
  int64_t e_;
  int arrived_ = 0, sent_ = 0;
  int64_t sends_ = 0;
};

}  // namespace

std::vector<int> all_chips(int64_t chips) {
  std::vector<int> ring(static_cast<size_t>(chips));
  std::iota(ring.begin(), ring.end(), 0);
  return ring;
}

void emit_ring_reduce_scatter(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;  // one chip holds the sum already
  Ring r(ctx, ring, s, "a reduce-scatter");
  r.reduce_scatter(make_adder(ctx, s.dtype));
  r.finish();
}

void emit_ring_all_gather(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;
  Ring r(ctx, ring, s, "an all-gather");
  r.all_gather(0);
  r.finish();
}

void emit_ring_all_reduce(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;
  Ring r(ctx, ring, s, "an all-reduce");
  r.reduce_scatter(make_adder(ctx, s.dtype));
  r.all_gather(int64_t(ring.size()) - 1);
  r.finish();
}

void emit_hierarchical_all_reduce(KernelContext& ctx, int64_t chips, int64_t domain, const CollectiveSpec& s) {
  if (domain >= chips || domain < 2) return emit_ring_all_reduce(ctx, all_chips(chips), s);
  if (chips % domain != 0) {
    throw CompileError(fmt::format("an all-reduce over {} chips in domains of {}: the domains do not divide them",
                                   chips, domain));
  }
  const int c = ctx.pb.chip(), first = int(c / domain * domain), local = int(c % domain);
  std::vector<int> inside, across;
  for (int i = 0; i < int(domain); ++i) inside.push_back(first + i);
  for (int d = 0; d < int(chips / domain); ++d) across.push_back(d * int(domain) + local);
  const Adder add = make_adder(ctx, s.dtype);
  // Reduce-scatter within the domain: this chip holds the domain's sum of part `local`.
  Ring in(ctx, inside, s, "an all-reduce");
  in.reduce_scatter(add);
  // That part all-reduced across the domains, over the chips holding the same part.
  CollectiveSpec mine = s;
  mine.buf = advance(s.buf, in.group().first(local) * esize(s.dtype)), mine.elements = in.group().count(local);
  mine.tag = s.tag + in.steps();
  Ring out(ctx, across, mine, "an all-reduce");
  out.reduce_scatter(add);
  out.all_gather(int64_t(across.size()) - 1);
  // And gathered within the domain.
  in.all_gather(domain - 1);
  out.finish();
  in.finish();
}

void emit_ring_broadcast(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s, int64_t segments) {
  const int64_t n = int64_t(ring.size()), e = esize(s.dtype);
  if (n < 2) return;
  if (segments < 1 || s.elements < segments) {
    throw CompileError(fmt::format("a broadcast of {} values in {} segments: each needs a value", s.elements, segments));
  }
  ProgramBuilder& pb = ctx.pb;
  const int64_t p = Group(pb.chip(), ring, "a broadcast").position();
  const int arrived = ctx.sem(), sent = ctx.sem();
  int64_t sends = 0;
  for (int64_t i = 0; i < segments; ++i) {
    const int64_t first = i * s.elements / segments, count = (i + 1) * s.elements / segments - first;
    const Addr seg = advance(s.buf, first * e);
    if (p > 0) {  // the segment from the previous chip, before it goes on
      pb.emit(0, recv(seg, count * e, ring[size_t(p - 1)], s.tag, arrived));
      pb.emit(0, sem_wait(arrived));
    }
    if (p + 1 < n) pb.emit(0, send(seg, count * e, ring[size_t(p + 1)], s.tag, sent)), ++sends;
  }
  if (sends > 0) pb.emit(0, sem_wait(sent, sends));
}

void emit_all_to_all(KernelContext& ctx, int64_t chips, const CollectiveSpec& s) {
  if (chips < 2) return;
  if (s.elements % chips != 0) {
    throw CompileError(fmt::format("an all-to-all of {} values over {} chips: not a whole block per chip", s.elements,
                                   chips));
  }
  ProgramBuilder& pb = ctx.pb;
  const int64_t c = pb.chip(), block = s.elements / chips * esize(s.dtype);
  const int arrived = ctx.sem(), sent = ctx.sem();
  // Own block in place; then every peer's at once (each a message of its own), starting with the
  // next chip so that not every chip sends to chip 0 first.
  Block blk;
  blk.d0 = block;
  pb.emit(0, dma(advance(s.scratch, c * block), advance(s.buf, c * block), blk, Dtype::Int8, Dtype::None, {arrived}));
  for (int64_t k = 1; k < chips; ++k) {
    const int64_t to = (c + k) % chips, from = (c + chips - k) % chips;
    pb.emit(0, send(advance(s.buf, to * block), block, to, s.tag, sent));
    pb.emit(0, recv(advance(s.scratch, from * block), block, from, s.tag, arrived));
  }
  pb.emit(0, sem_wait(arrived, chips));
  pb.emit(0, sem_wait(sent, chips - 1));
}

void emit_direct_all_reduce(KernelContext& ctx, const std::vector<int>& group, const CollectiveSpec& s) {
  const int64_t n = int64_t(group.size()), e = esize(s.dtype);
  if (n < 2) return;
  ProgramBuilder& pb = ctx.pb;
  const Group g(pb.chip(), group, "an all-reduce", s.elements);
  const int64_t c = g.position(), slot = (s.elements + n - 1) / n * e;
  const Adder add = make_adder(ctx, s.dtype);
  const int arrived = ctx.sem(), sent = ctx.sem();
  // Part p to chip p; part c from every other chip, each into a slot of its own.
  std::vector<Addr> slots;
  for (int64_t k = 1; k < n; ++k) {
    slots.push_back(advance(s.scratch, (k - 1) * slot));
    pb.emit(0, send(advance(s.buf, g.first(c + k) * e), g.count(c + k) * e, g.at(c + k), s.tag, sent));
    pb.emit(0, recv(slots.back(), g.count(c) * e, g.at(c - k), s.tag, arrived));
  }
  pb.emit(0, sem_wait(arrived, n - 1));
  pb.emit(0, sem_wait(sent, n - 1));  // the parts sent are read: the sums may come back into them
  pb.barrier_all();
  add_into(pb, add, advance(s.buf, g.first(c) * e), slots, g.count(c), s.dtype);
  pb.barrier_all();
  // The sum of part c to every other chip; theirs into their parts.
  for (int64_t k = 1; k < n; ++k) {
    pb.emit(0, send(advance(s.buf, g.first(c) * e), g.count(c) * e, g.at(c + k), s.tag + 1, sent));
    pb.emit(0, recv(advance(s.buf, g.first(c - k) * e), g.count(c - k) * e, g.at(c - k), s.tag + 1, arrived));
  }
  pb.emit(0, sem_wait(arrived, n - 1));
  pb.emit(0, sem_wait(sent, n - 1));
}

namespace {

enum class AllReduceKind { Ring, Direct, Hierarchical };

AllReduceKind all_reduce_kind(const arch::Arch& a, int64_t group) {
  const arch::SystemParams& sys = a.system;
  if (group == sys.chips && sys.domain() < sys.chips) return AllReduceKind::Hierarchical;
  const bool any_to_any = sys.topology == arch::Topology::Switch || sys.topology == arch::Topology::FullyConnected;
  return any_to_any ? AllReduceKind::Direct : AllReduceKind::Ring;
}

}  // namespace

void emit_all_reduce(KernelContext& ctx, const std::vector<int64_t>& group, const CollectiveSpec& s) {
  const std::vector<int> chips(group.begin(), group.end());
  const arch::SystemParams& sys = ctx.arch().system;
  switch (all_reduce_kind(ctx.arch(), int64_t(group.size()))) {
    case AllReduceKind::Hierarchical: return emit_hierarchical_all_reduce(ctx, sys.chips, sys.domain(), s);
    case AllReduceKind::Direct: return emit_direct_all_reduce(ctx, chips, s);
    case AllReduceKind::Ring: return emit_ring_all_reduce(ctx, chips, s);
  }
}

int64_t all_reduce_scratch(const arch::Arch& a, int64_t group, int64_t elements) {
  auto part = [&](int64_t n) { return (elements + n - 1) / n; };
  switch (all_reduce_kind(a, group)) {
    case AllReduceKind::Hierarchical: return part(a.system.domain());  // the ring inside a domain
    case AllReduceKind::Direct: return (group - 1) * part(group);
    case AllReduceKind::Ring: return part(group);
  }
  return elements;
}

isa::Program take_system(std::vector<ProgramBuilder>& chips) {
  isa::Program all = chips.at(0).take();
  for (size_t c = 1; c < chips.size(); ++c) {
    isa::Program p = chips[c].take();
    if (p.regions != all.regions) {
      throw CompileError(fmt::format("chip {} has another memory map than chip 0", c));
    }
    for (isa::Stream& s : p.streams) all.streams.push_back(std::move(s));
  }
  return all;
}

}  // namespace tessera::compiler
