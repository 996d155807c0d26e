// What a kernel emitter gets: the program builder, and this op's share of the machine's
// scratch resources (tile SRAM, shared memory, semaphores). An op normally has all of them;
// when the next op prefetches (starts loading weights while this one still works), the two
// take opposite halves.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "compiler/builder.hpp"

namespace tessera::compiler {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Bytes of one element as the kernels lay tensors out (sub-byte formats take a byte).
inline int64_t esize(Dtype d) { return std::max(1, isa::dtype_bits(d) / 8); }

struct Pool {
  uint64_t base = 0, size = 0, next = 0;
  uint64_t take(uint64_t bytes, uint64_t align = 64);
  uint64_t left() const { return size - next; }
};

class KernelContext {
 public:
  // half: -1 for everything, 0 or 1 for that half.
  KernelContext(ProgramBuilder& pb, int half = -1);

  ProgramBuilder& pb;
  const arch::Arch& arch() const { return pb.arch(); }
  int tiles() const { return pb.tiles(); }

  uint64_t sram(uint64_t bytes, uint64_t align = 64);  // same offset on every tile
  uint64_t sram_left() const { return sram_.left(); }
  uint64_t shared(uint64_t bytes);                     // in every shared-memory instance
  uint64_t shared_left() const { return shared_.left(); }
  int sem();                                           // same index on every tile

  // Sampled rounds. A kernel whose work repeats in rounds of equal cost on every tile (GEMM
  // passes, attention's unit pairs) may emit only `sample_rounds` of them (0: all, at least 4):
  // the first sample_rounds - 2 and the last two, so that start-up, the last round (possibly
  // partial, prefetching nothing) and the one before it (prefetching the last) are simulated,
  // and rounds 1 .. sample_rounds - 3 (each prefetching a whole round) stand for the ones in
  // between. It marks the start of every emitted round after the first on every tile of the
  // chip (each then has one region instance per round, work or not), so the rounds can be
  // told apart; rounds follow one another on the whole chip (passes in lockstep, barriers).
  int64_t sample_rounds = 0;
  int64_t mark_id = -1;                      // the op's mark
  int64_t rounds = 1, rounds_emitted = 1;    // what the kernel had and emitted
  // Rounds to emit of `total`; records both.
  int64_t plan_rounds(int64_t total);
  // The round that emitted round e is.
  int64_t round_at(int64_t e) const { return e + 2 < rounds_emitted ? e : rounds - (rounds_emitted - e); }
  // The emitted round that round r is (the inverse of round_at), or -1 when it is not emitted.
  int64_t emitted_index(int64_t r) const {
    if (r + 2 < rounds_emitted) return r;
    return r >= rounds - 2 || rounds_emitted == rounds ? r - (rounds - rounds_emitted) : -1;
  }
  // On tile t, emitted round e begins: marks it when rounds are sampled. Every tile marks every
  // emitted round; tile 0's marks record the weights, in its order.
  void begin_round(int t, int64_t e);
  // What emitted round e stands for: itself, and a steady round (1 .. rounds_emitted - 3) also
  // its share of the rounds not emitted.
  double round_weight(int64_t e) const;

  // The weight of each region instance of the op within a layer, in order (the first begins
  // with the op): what it stands for when rounds are sampled.
  const std::vector<double>& instance_weights() const { return weights_; }
  // A kernel of the op that runs inside emitted round e of `outer` (an MoE's expert): same mark
  // and sampling, its rounds' instances recorded with outer's, each standing for its share of
  // round e too; its scratch (SRAM, shared memory, semaphores) is what outer has not taken.
  void nest_in(KernelContext& outer, int64_t e);

 private:
  std::vector<double>& record() { return record_ ? *record_ : weights_; }
  std::vector<double> weights_{1.0};
  std::vector<double>* record_ = nullptr;
  double scale_ = 1.0;
  Pool sram_, shared_;
  int sem_base_, sem_count_, sem_next_ = 0;
};

}  // namespace tessera::compiler
