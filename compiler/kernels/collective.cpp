#include "compiler/kernels/collective.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace tessera::compiler {

void emit_ring_all_reduce(ProgramBuilder& pb, int64_t chips, const AllReduceSpec& s) {
  const int64_t n = chips, e = esize(s.dtype), c = pb.chip();
  if (n < 2) return;  // one chip holds the sum already
  if (s.elements < n) {
    throw CompileError(fmt::format("an all-reduce of {} values over {} chips: fewer values than chips", s.elements, n));
  }
  // Part p: values [first(p), first(p + 1)).
  auto first = [&](int64_t p) { return p * s.elements / n; };
  auto part = [&](int64_t p) {
    p = (p % n + n) % n;
    return std::pair{first(p), first(p + 1) - first(p)};
  };
  const int tiles = pb.tiles();
  const int64_t next = (c + 1) % n, prev = (c + n - 1) % n;
  const int64_t chunk = std::max<int64_t>(1, int64_t(pb.sram_free() / 2 / 64 * 64) / e);  // values per add
  const uint64_t a = pb.sram_alloc(uint64_t(chunk * e)), b = pb.sram_alloc(uint64_t(chunk * e));
  const int arrived = pb.sem_alloc(), loaded = pb.sem_alloc(), stored = pb.sem_alloc(), sent = pb.sem_alloc();
  for (int64_t step = 0; step < 2 * (n - 1); ++step) {
    // Reduce-scatter: send part c - step, add part c - step - 1 received into it. All-gather
    // (step j = step - (n - 1)): send part c + 1 - j, the sum, and receive part c - j in place.
    const bool reduce = step < n - 1;
    const int64_t j = step - (n - 1);
    const auto [out0, outn] = part(reduce ? c - step : c + 1 - j);
    const auto [in0, inn] = part(reduce ? c - step - 1 : c - j);
    pb.emit(0, send(advance(s.buf, out0 * e), outn * e, next, s.tag + step, sent));
    pb.emit(0, recv(reduce ? s.scratch : advance(s.buf, in0 * e), inn * e, prev, s.tag + step, arrived));
    pb.emit(0, sem_wait(arrived));
    if (!reduce) continue;
    pb.barrier_all();  // the part has arrived: every tile adds a slice of it
    for (int t = 0; t < tiles; ++t) {
      const int64_t lo = t * inn / tiles, hi = (t + 1) * inn / tiles;
      int64_t chunks = 0;
      for (int64_t x = lo; x < hi; x += chunk, ++chunks) {
        const int64_t len = std::min(chunk, hi - x);
        Block blk;
        blk.d0 = len;
        const Addr mine = advance(s.buf, (in0 + x) * e);
        pb.emit(t, dma(sram(int64_t(a)), advance(s.scratch, x * e), blk, s.dtype, Dtype::None, {loaded}));
        pb.emit(t, dma(sram(int64_t(b)), mine, blk, s.dtype, Dtype::None, {loaded}));
        pb.emit(t, sem_wait(loaded, 2));
        const Tensor2 ta{sram(int64_t(a)), 0, s.dtype}, tb{sram(int64_t(b)), 0, s.dtype};
        pb.emit(t, vec_binary(Opcode::VAdd, tb, ta, tb, 1, len));
        pb.emit(t, dma(mine, sram(int64_t(b)), blk, s.dtype, Dtype::None, {stored}));
      }
      if (chunks > 0) pb.emit(t, sem_wait(stored, chunks));
    }
    pb.barrier_all();  // the sums are in HBM: the next step sends one of them
  }
  pb.emit(0, sem_wait(sent, 2 * (n - 1)));  // nothing overwrites a part still being sent
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
