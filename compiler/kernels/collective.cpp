#include "compiler/kernels/collective.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <utility>

namespace tessera::compiler {
namespace {

// The tiles' SRAM for adding received parts, taken once per kernel.
struct Adder {
  uint64_t a = 0, b = 0;
  int64_t chunk = 0;  // values per add
  int loaded = 0, stored = 0;
};

Adder make_adder(ProgramBuilder& pb, Dtype d) {
  Adder x;
  x.chunk = std::max<int64_t>(1, int64_t(pb.sram_free() / 2 / 64 * 64) / esize(d));
  x.a = pb.sram_alloc(uint64_t(x.chunk * esize(d))), x.b = pb.sram_alloc(uint64_t(x.chunk * esize(d)));
  x.loaded = pb.sem_alloc(), x.stored = pb.sem_alloc();
  return x;
}

// Adds `count` values at `from` into `into` (HBM), each tile a slice, in the adder's chunks.
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

// One chip's view of a ring collective: its place in the ring, the parts, and its semaphores.
class Ring {
 public:
  Ring(ProgramBuilder& pb, const std::vector<int>& ring, const CollectiveSpec& s, const char* what)
      : pb_(pb), s_(s), ring_(ring), n_(int64_t(ring.size())), e_(esize(s.dtype)) {
    const auto at = std::find(ring.begin(), ring.end(), pb.chip());
    if (at == ring.end()) throw CompileError(fmt::format("{}: chip {} is not in its ring", what, pb.chip()));
    c_ = at - ring.begin();
    if (s.elements < n_) {
      throw CompileError(fmt::format("{} of {} values over {} chips: fewer values than chips", what, s.elements, n_));
    }
    arrived_ = pb.sem_alloc(), sent_ = pb.sem_alloc();
  }

  // Part p (modulo n): its first value and its length.
  std::pair<int64_t, int64_t> part(int64_t p) const {
    p = (p % n_ + n_) % n_;
    return {p * s_.elements / n_, (p + 1) * s_.elements / n_ - p * s_.elements / n_};
  }
  int64_t position() const { return c_; }

  // Step `step`: part `out` to the next chip; part `in` from the previous one, into `into`.
  void exchange(int64_t step, int64_t out, Addr into, int64_t in) {
    const auto [out0, outn] = part(out);
    const int64_t next = ring_[size_t((c_ + 1) % n_)], prev = ring_[size_t((c_ + n_ - 1) % n_)];
    pb_.emit(0, send(advance(s_.buf, out0 * e_), outn * e_, next, s_.tag + step, sent_));
    pb_.emit(0, recv(into, part(in).second * e_, prev, s_.tag + step, arrived_));
    pb_.emit(0, sem_wait(arrived_));
    ++sends_;
  }

  void reduce_scatter(const Adder& add) {
    for (int64_t step = 0; step < n_ - 1; ++step) {
      // Part c - step - 1 out (the sum so far), part c - step - 2 in: after n - 1 steps chip c
      // has added every chip's part c.
      const int64_t in = c_ - step - 2;
      exchange(step, c_ - step - 1, s_.scratch, in);
      const auto [in0, inn] = part(in);
      pb_.barrier_all();  // the part has arrived: every tile adds a slice of it
      add_into(pb_, add, advance(s_.buf, in0 * e_), {s_.scratch}, inn, s_.dtype);
      pb_.barrier_all();  // the sums are in HBM: the next step sends one of them
    }
  }

  // Steps first .. first + n - 2 (tags follow a reduce-scatter's in an all-reduce).
  void all_gather(int64_t first) {
    for (int64_t j = 0; j < n_ - 1; ++j) {
      const int64_t in = c_ - j - 1;
      exchange(first + j, c_ - j, advance(s_.buf, part(in).first * e_), in);
    }
  }

  // Nothing may overwrite a part still being sent.
  void finish() { pb_.emit(0, sem_wait(sent_, sends_)); }

  // Tags of a kernel's steps.
  int64_t steps() const { return 2 * (n_ - 1); }

 private:
  ProgramBuilder& pb_;
  const CollectiveSpec& s_;
  std::vector<int> ring_;
  int64_t n_, c_ = 0, e_;
  int arrived_ = 0, sent_ = 0;
  int64_t sends_ = 0;
};

}  // namespace

std::vector<int> all_chips(int64_t chips) {
  std::vector<int> ring(static_cast<size_t>(chips));
  std::iota(ring.begin(), ring.end(), 0);
  return ring;
}

void emit_ring_reduce_scatter(ProgramBuilder& pb, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;  // one chip holds the sum already
  Ring r(pb, ring, s, "a reduce-scatter");
  r.reduce_scatter(make_adder(pb, s.dtype));
  r.finish();
}

void emit_ring_all_gather(ProgramBuilder& pb, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;
  Ring r(pb, ring, s, "an all-gather");
  r.all_gather(0);
  r.finish();
}

void emit_ring_all_reduce(ProgramBuilder& pb, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;
  Ring r(pb, ring, s, "an all-reduce");
  r.reduce_scatter(make_adder(pb, s.dtype));
  r.all_gather(int64_t(ring.size()) - 1);
  r.finish();
}

void emit_hierarchical_all_reduce(ProgramBuilder& pb, int64_t chips, int64_t domain, const CollectiveSpec& s) {
  if (domain >= chips || domain < 2) return emit_ring_all_reduce(pb, all_chips(chips), s);
  if (chips % domain != 0) {
    throw CompileError(fmt::format("an all-reduce over {} chips in domains of {}: the domains do not divide them",
                                   chips, domain));
  }
  const int c = pb.chip(), first = int(c / domain * domain), local = int(c % domain);
  std::vector<int> inside, across;
  for (int i = 0; i < int(domain); ++i) inside.push_back(first + i);
  for (int d = 0; d < int(chips / domain); ++d) across.push_back(d * int(domain) + local);
  const Adder add = make_adder(pb, s.dtype);
  // Reduce-scatter within the domain: this chip holds the domain's sum of part `local`.
  Ring in(pb, inside, s, "an all-reduce");
  in.reduce_scatter(add);
  // That part all-reduced across the domains, over the chips holding the same part.
  CollectiveSpec mine = s;
  const auto [first_value, values] = in.part(local);
  mine.buf = advance(s.buf, first_value * esize(s.dtype)), mine.elements = values, mine.tag = s.tag + in.steps();
  Ring out(pb, across, mine, "an all-reduce");
  out.reduce_scatter(add);
  out.all_gather(int64_t(across.size()) - 1);
  // And gathered within the domain.
  in.all_gather(domain - 1);
  out.finish();
  in.finish();
}

void emit_ring_broadcast(ProgramBuilder& pb, const std::vector<int>& ring, const CollectiveSpec& s, int64_t segments) {
  const int64_t n = int64_t(ring.size()), e = esize(s.dtype);
  if (n < 2) return;
  const auto at = std::find(ring.begin(), ring.end(), pb.chip());
  if (at == ring.end()) throw CompileError(fmt::format("a broadcast: chip {} is not in its ring", pb.chip()));
  if (segments < 1 || s.elements < segments) {
    throw CompileError(fmt::format("a broadcast of {} values in {} segments: each needs a value", s.elements, segments));
  }
  const int64_t p = at - ring.begin();
  const int arrived = pb.sem_alloc(), sent = pb.sem_alloc();
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

void emit_all_to_all(ProgramBuilder& pb, int64_t chips, const CollectiveSpec& s) {
  if (chips < 2) return;
  if (s.elements % chips != 0) {
    throw CompileError(fmt::format("an all-to-all of {} values over {} chips: not a whole block per chip", s.elements,
                                   chips));
  }
  const int64_t c = pb.chip(), block = s.elements / chips * esize(s.dtype);
  const int arrived = pb.sem_alloc(), sent = pb.sem_alloc();
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

void emit_direct_all_reduce(ProgramBuilder& pb, const std::vector<int>& group, const CollectiveSpec& s) {
  const int64_t n = int64_t(group.size()), e = esize(s.dtype);
  if (n < 2) return;
  const auto at = std::find(group.begin(), group.end(), pb.chip());
  if (at == group.end()) throw CompileError(fmt::format("an all-reduce: chip {} is not in its group", pb.chip()));
  if (s.elements < n) {
    throw CompileError(fmt::format("an all-reduce of {} values over {} chips: fewer values than chips", s.elements, n));
  }
  const int64_t c = at - group.begin(), slot = (s.elements + n - 1) / n * e;
  auto first = [&](int64_t p) { return p * s.elements / n; };
  auto count = [&](int64_t p) { return first(p + 1) - first(p); };
  const Adder add = make_adder(pb, s.dtype);
  const int arrived = pb.sem_alloc(), sent = pb.sem_alloc();
  // Part p to chip p; part c from every other chip, each into a slot of its own.
  std::vector<Addr> slots;
  for (int64_t k = 1; k < n; ++k) {
    const int64_t to = (c + k) % n, from = (c + n - k) % n;
    slots.push_back(advance(s.scratch, (k - 1) * slot));
    pb.emit(0, send(advance(s.buf, first(to) * e), count(to) * e, group[size_t(to)], s.tag, sent));
    pb.emit(0, recv(slots.back(), count(c) * e, group[size_t(from)], s.tag, arrived));
  }
  pb.emit(0, sem_wait(arrived, n - 1));
  pb.emit(0, sem_wait(sent, n - 1));  // the parts sent are read: the sums may come back into them
  pb.barrier_all();
  add_into(pb, add, advance(s.buf, first(c) * e), slots, count(c), s.dtype);
  pb.barrier_all();
  // The sum of part c to every other chip; theirs into their parts.
  for (int64_t k = 1; k < n; ++k) {
    const int64_t to = (c + k) % n, from = (c + n - k) % n;
    pb.emit(0, send(advance(s.buf, first(c) * e), count(c) * e, group[size_t(to)], s.tag + 1, sent));
    pb.emit(0, recv(advance(s.buf, first(from) * e), count(from) * e, group[size_t(from)], s.tag + 1, arrived));
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

void emit_all_reduce(ProgramBuilder& pb, const std::vector<int64_t>& group, const CollectiveSpec& s) {
  const std::vector<int> chips(group.begin(), group.end());
  switch (all_reduce_kind(pb.arch(), int64_t(group.size()))) {
    case AllReduceKind::Hierarchical: return emit_hierarchical_all_reduce(pb, pb.arch().system.chips, pb.arch().system.domain(), s);
    case AllReduceKind::Direct: return emit_direct_all_reduce(pb, chips, s);
    case AllReduceKind::Ring: return emit_ring_all_reduce(pb, chips, s);
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
