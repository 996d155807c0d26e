#include "compiler/kernels/collective.hpp"

#include <fmt/format.h>

#include "arch/network.hpp"

#include <algorithm>
#include <deque>
#include <memory>
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

// One chip's part of a reduce-scatter and an all-gather over a group (an all-reduce runs one
// after the other): after the reduce-scatter chip c holds the sum of part c, after the
// all-gather every chip holds every part. A ring passes parts to the next chip in n - 1 steps
// each; a direct exchange sends every part straight to its chip in one step each.
class Exchange {
 public:
  Exchange(KernelContext& ctx, const std::vector<int>& chips, const CollectiveSpec& s, const char* what)
      : pb_(ctx.pb), s_(s), g_(ctx.pb.chip(), chips, what, s.elements), e_(esize(s.dtype)) {
    arrived_ = ctx.sem(), sent_ = ctx.sem();
  }
  virtual ~Exchange() = default;
  const Group& group() const { return g_; }
  // Tags tag .. tag + steps() / 2 - 1.
  virtual void reduce_scatter(const Adder& add) = 0;
  // Tags tag + first .. tag + first + steps() / 2 - 1.
  virtual void all_gather(int64_t first) = 0;
  // The tags of a reduce-scatter and an all-gather.
  virtual int64_t steps() const = 0;
  // Nothing may overwrite a part still being sent.
  void finish() {
    if (unwaited_ > 0) pb_.emit(0, sem_wait(sent_, unwaited_));
    unwaited_ = 0;
  }

 protected:
  Addr part(int64_t p) const { return advance(s_.buf, g_.first(p) * e_); }
  void send_part(int64_t p, int64_t to, int64_t tag) {
    pb_.emit(0, send(part(p), g_.count(p) * e_, g_.at(to), s_.tag + tag, sent_));
    ++unwaited_;
  }
  void recv_part(Addr into, int64_t p, int64_t from, int64_t tag) {
    pb_.emit(0, recv(into, g_.count(p) * e_, g_.at(from), s_.tag + tag, arrived_));
  }

  ProgramBuilder& pb_;
  const CollectiveSpec& s_;
  Group g_;
  int64_t e_;
  int arrived_ = 0, sent_ = 0;
  int64_t unwaited_ = 0;  // sends not yet waited for
};

class RingExchange : public Exchange {
 public:
  using Exchange::Exchange;

  void reduce_scatter(const Adder& add) override {
    const int64_t c = g_.position();
    for (int64_t step = 0; step < g_.size() - 1; ++step) {
      // Part c - step - 1 out (the sum so far), part c - step - 2 in: after n - 1 steps chip c
      // has added every chip's part c.
      const int64_t in = c - step - 2;
      exchange(step, c - step - 1, s_.scratch, in);
      pb_.barrier_all();  // the part has arrived: every tile adds a slice of it
      add_into(pb_, add, part(in), {s_.scratch}, g_.count(in), s_.dtype);
      pb_.barrier_all();  // the sums are in HBM: the next step sends one of them
    }
  }

  void all_gather(int64_t first) override {
    const int64_t c = g_.position();
    for (int64_t j = 0; j < g_.size() - 1; ++j) exchange(first + j, c - j, part(c - j - 1), c - j - 1);
  }

  int64_t steps() const override { return 2 * (g_.size() - 1); }

 private:
  // Step `step`: part `out` to the next chip; part `in` from the previous one, into `into`.
  void exchange(int64_t step, int64_t out, Addr into, int64_t in) {
    const int64_t c = g_.position();
    send_part(out, c + 1, step);
    recv_part(into, in, c - 1, step);
    pb_.emit(0, sem_wait(arrived_));
  }
};

class DirectExchange : public Exchange {
 public:
  using Exchange::Exchange;

  // Part p to chip p; part c from every other chip, each into a slot of its own of scratch, then
  // added to this chip's.
  void reduce_scatter(const Adder& add) override {
    const int64_t n = g_.size(), c = g_.position(), slot = (s_.elements + n - 1) / n * e_;
    std::vector<Addr> slots;
    for (int64_t k = 1; k < n; ++k) {
      slots.push_back(advance(s_.scratch, (k - 1) * slot));
      send_part(c + k, c + k, 0);
      recv_part(slots.back(), c, c - k, 0);
    }
    pb_.emit(0, sem_wait(arrived_, n - 1));
    finish();  // the parts sent are read: sums may come back into them
    pb_.barrier_all();
    add_into(pb_, add, part(c), slots, g_.count(c), s_.dtype);
    pb_.barrier_all();
  }

  // The sum of part c to every other chip; theirs into their parts.
  void all_gather(int64_t first) override {
    const int64_t n = g_.size(), c = g_.position();
    for (int64_t k = 1; k < n; ++k) {
      send_part(c, c + k, first);
      recv_part(part(c - k), c - k, c - k, first);
    }
    pb_.emit(0, sem_wait(arrived_, n - 1));
  }

  int64_t steps() const override { return 2; }
};

// Scratch values the reduce-scatter of `elements` over n chips needs.
int64_t scratch_values(bool direct, int64_t n, int64_t elements) {
  return (direct ? n - 1 : 1) * ((elements + n - 1) / n);
}

// Whether the chips of a scale-up domain reach each other in one hop.
bool any_to_any(const arch::SystemParams& s) {
  return s.topology == arch::Topology::Switch || s.topology == arch::Topology::FullyConnected;
}

std::unique_ptr<Exchange> exchange(KernelContext& ctx, bool direct, const std::vector<int>& chips,
                                   const CollectiveSpec& s, const char* what) {
  if (direct) return std::make_unique<DirectExchange>(ctx, chips, s, what);
  return std::make_unique<RingExchange>(ctx, chips, s, what);
}

void all_reduce(Exchange& x, const Adder& add) {
  x.reduce_scatter(add);
  x.all_gather(x.steps() / 2);
  x.finish();
}

enum class AllReduceKind { Ring, Direct, Hierarchical, Torus };

AllReduceKind all_reduce_kind(const arch::Arch& a, int64_t group) {
  const arch::SystemParams& sys = a.system;
  if (group == sys.chips && sys.domain() < sys.chips) return AllReduceKind::Hierarchical;
  if (group == sys.chips && arch::torus_dims(sys.topology, sys.chips).size() > 1) return AllReduceKind::Torus;
  return any_to_any(sys) ? AllReduceKind::Direct : AllReduceKind::Ring;
}

}  // namespace

std::vector<int> all_chips(int64_t chips) {
  std::vector<int> ring(static_cast<size_t>(chips));
  std::iota(ring.begin(), ring.end(), 0);
  return ring;
}

void emit_ring_reduce_scatter(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;  // one chip holds the sum already
  RingExchange r(ctx, ring, s, "a reduce-scatter");
  r.reduce_scatter(make_adder(ctx, s.dtype));
  r.finish();
}

void emit_ring_all_gather(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;
  RingExchange r(ctx, ring, s, "an all-gather");
  r.all_gather(0);
  r.finish();
}

void emit_ring_all_reduce(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s) {
  if (ring.size() < 2) return;
  RingExchange r(ctx, ring, s, "an all-reduce");
  all_reduce(r, make_adder(ctx, s.dtype));
}

void emit_direct_all_reduce(KernelContext& ctx, const std::vector<int>& group, const CollectiveSpec& s) {
  if (group.size() < 2) return;
  DirectExchange d(ctx, group, s, "an all-reduce");
  all_reduce(d, make_adder(ctx, s.dtype));
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
  // Reduce-scatter within the domain (direct when its chips reach each other in one hop): this
  // chip holds the domain's sum of part `local`.
  const std::unique_ptr<Exchange> in = exchange(ctx, any_to_any(ctx.arch().system), inside, s, "an all-reduce");
  in->reduce_scatter(add);
  // That part all-reduced across the domains, over the chips holding the same part: directly,
  // through the scale-out switch.
  CollectiveSpec mine = s;
  mine.buf = advance(s.buf, in->group().first(local) * esize(s.dtype)), mine.elements = in->group().count(local);
  mine.tag = s.tag + in->steps();
  DirectExchange out(ctx, across, mine, "an all-reduce");
  all_reduce(out, add);
  // And gathered within the domain.
  in->all_gather(in->steps() / 2);
  in->finish();
}

void emit_torus_all_reduce(KernelContext& ctx, const std::vector<int>& dims, const CollectiveSpec& s) {
  const int c = ctx.pb.chip();
  const Adder add = make_adder(ctx, s.dtype);
  std::deque<CollectiveSpec> specs{s};  // each ring's part of the tensor (the exchanges refer to them)
  std::vector<std::unique_ptr<Exchange>> rings;
  int stride = 1;
  for (int n : dims) {
    const int x = c / stride % n;
    if (n > 1) {
      std::vector<int> line;  // the chips along this dimension through c, in coordinate order
      for (int i = 0; i < n; ++i) line.push_back(c + (i - x) * stride);
      rings.push_back(exchange(ctx, false, line, specs.back(), "an all-reduce"));
      rings.back()->reduce_scatter(add);
      CollectiveSpec part = specs.back();
      part.buf = advance(part.buf, rings.back()->group().first(x) * esize(s.dtype));
      part.elements = rings.back()->group().count(x), part.tag += rings.back()->steps();
      specs.push_back(part);
    }
    stride *= n;
  }
  for (auto r = rings.rbegin(); r != rings.rend(); ++r) (*r)->all_gather((*r)->steps() / 2);
  for (const std::unique_ptr<Exchange>& r : rings) r->finish();
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

void emit_all_reduce(KernelContext& ctx, const std::vector<int64_t>& group, const CollectiveSpec& s) {
  const std::vector<int> chips(group.begin(), group.end());
  const arch::SystemParams& sys = ctx.arch().system;
  switch (all_reduce_kind(ctx.arch(), int64_t(group.size()))) {
    case AllReduceKind::Hierarchical: return emit_hierarchical_all_reduce(ctx, sys.chips, sys.domain(), s);
    case AllReduceKind::Torus: return emit_torus_all_reduce(ctx, arch::torus_dims(sys.topology, sys.chips), s);
    case AllReduceKind::Direct: return emit_direct_all_reduce(ctx, chips, s);
    case AllReduceKind::Ring: return emit_ring_all_reduce(ctx, chips, s);
  }
}

int64_t all_reduce_scratch(const arch::Arch& a, int64_t group, int64_t elements) {
  switch (all_reduce_kind(a, group)) {
    case AllReduceKind::Hierarchical: {  // the reduce-scatter within a domain, then the one across
      const int64_t d = a.system.domain(), part = (elements + d - 1) / d;
      return std::max(scratch_values(any_to_any(a.system), d, elements), scratch_values(true, group / d, part));
    }
    case AllReduceKind::Direct: return scratch_values(true, group, elements);
    case AllReduceKind::Ring: return scratch_values(false, group, elements);
    case AllReduceKind::Torus:  // the first dimension's ring holds the largest parts
      return scratch_values(false, arch::torus_dims(a.system.topology, group).front(), elements);
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
