// A slow, cycle-by-cycle model of the processing-element (PE) grid of a systolic array: the
// golden reference for the closed-form timing in arch/systolic.hpp. Every register of the array
// is simulated, every operand, weight and partial sum moves one PE (or one skew stage) per
// cycle and carries its value, so the reference computes the MATMUL itself. Latency and
// occupancy are read off the simulated cycles; nothing here evaluates a timing formula.
//
// Each moving word also carries tags (which tile or block, which row, which k step). The tags
// decide nothing about timing: they address the output buffer and let every PE check that
// what meets it belongs together. A mismatch throws std::logic_error, so a mistimed rule
// cannot silently produce a plausible number.
//
// The semantics are those summarised in arch/systolic.hpp, taken cycle by cycle. Where they
// leave a choice open, this model takes the reading that keeps a single shadow register per
// PE physically consistent:
//
// Weight-stationary. A tile's weights stream in on a weight port, one row per cycle for R
//   cycles, and shift down the columns through the shadow registers. The port is skewed by
//   column like the inputs (column c sees the row c cycles later): PE (i, c) still needs tile
//   j's shadow weights at s_j + i + c, when tile j's first input reaches it, while tile j+1's
//   load may already begin at s_j; with the skew, tile j+1's first word reaches that shadow
//   at the end of that cycle at the earliest. The controller still only asks the rule's
//   question ("were the R rows pushed?"); the switch check in each PE proves the skewed load
//   is in time.
// Output-stationary. "When the last PE has done its last MAC the block's accumulators move to
//   the shadow" cannot hold PE by PE: PE (0, 0) usually starts the next block before PE (R-1,
//   C-1) finishes this one. So each PE moves its own accumulator to its shadow right after its
//   own last MAC, and each column drains (shifting its shadows down and out of the bottom, one
//   row per cycle for R cycles) from the cycle its bottom PE has moved; for the last column
//   that is the written rule. A shadow register is free again once the drain has shifted its
//   value on. A block is issued at the first cycle at which the input ports are free and a
//   trial run of the array shows none of the block's results would land in a busy shadow
//   register and none of its columns would start draining while the previous drain runs.
// Occupancy. Each array runs a second MATMUL of the same shape right behind the first, under
//   the same rules. ws: its first tile's load may begin when the first MATMUL's last tile
//   begins streaming; occupancy is the cycle that tile begins streaming, minus R. os: the
//   base of its first block. With several arrays each runs its own round-robin share alone;
//   an array with nothing to do reports zeros.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "arch/systolic.hpp"

namespace tessera::sim::test {
using arch::ArrayShape;
using arch::Dataflow;
using arch::MatmulTiming;
using arch::matmul_timing;

// Dense row-major matrix. `padded` reads zero outside it, which is what the unused rows and
// columns of a partial tile see.
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> data;

  Matrix() = default;
  Matrix(int64_t r, int64_t c) : rows(r), cols(c), data(static_cast<size_t>(r * c), 0.0) {}
  double& at(int64_t r, int64_t c) { return data[r * cols + c]; }
  double at(int64_t r, int64_t c) const { return data[r * cols + c]; }
  double padded(int64_t r, int64_t c) const {
    return (r >= 0 && r < rows && c >= 0 && c < cols) ? at(r, c) : 0.0;
  }
};

// What one array did. The reference runs two MATMULs of the same shape back to back: the
// second one measures occupancy and shows that no state leaks from one into the next.
struct ArrayRun {
  int64_t items = 0;           // tiles (ws) or blocks (os) of the first MATMUL on this array
  int64_t latency = 0;         // cycle at which the first MATMUL's last result is complete
  int64_t occupancy = 0;       // ws: second MATMUL's first stream cycle - R; os: its first base
  int64_t second_latency = 0;  // cycle at which the second MATMUL's last result is complete
};

struct PeGridResult {
  int64_t latency = 0;    // max over arrays
  int64_t occupancy = 0;  // max over arrays
  Matrix out;             // first MATMUL's result
  Matrix second_out;      // second MATMUL's result
  std::vector<ArrayRun> arrays;
};

namespace detail {

constexpr int64_t kMaxPack = 4;
using Lanes = std::array<double, kMaxPack>;  // the p values a PE uses per cycle

// A MATMUL's operands and where its results go.
struct Job {
  const Matrix* a = nullptr;
  const Matrix* b = nullptr;
  Matrix* out = nullptr;
};

[[noreturn]] inline void fail(const std::string& what, int64_t t) {
  throw std::logic_error("pe grid, cycle " + std::to_string(t) + ": " + what);
}

// `depth` registers in a row: a word that goes in at cycle t comes out at cycle t + depth.
// These are the triangular skew buffers in front of the array. (A ring buffer: the slot read
// out this cycle is the one written `depth` cycles ago.)
template <class Word>
class DelayLine {
 public:
  explicit DelayLine(int64_t depth) : regs_(static_cast<size_t>(depth)) {}
  Word step(const Word& in) {
    if (regs_.empty()) return in;
    Word out = regs_[next_];
    regs_[next_] = in;
    next_ = (next_ + 1) % regs_.size();
    return out;
  }

 private:
  std::vector<Word> regs_;
  size_t next_ = 0;
};

// Far more cycles than any case waits between two results: a controller rule that never
// fires fails instead of hanging.
constexpr int64_t kQuietLimit = 100'000;

// ---------------------------------------------------------------------------------------------
// Weight-stationary array.
// ---------------------------------------------------------------------------------------------

struct WsTile {
  int job = 0;
  int64_t kt = 0, nt = 0;  // k-tile and n-tile of B
};

class WsArray {
 public:
  WsArray(int64_t rows, int64_t cols, int64_t pack, const std::array<Job, 2>& jobs,
          std::vector<WsTile> tiles)
      : R_(rows),
        C_(cols),
        p_(pack),
        jobs_(jobs),
        tiles_(std::move(tiles)),
        shadow_(cells()),
        active_(cells()),
        x_(cells()),
        psum_(cells()),
        start_(tiles_.size(), -1),
        next_shadow_(cells()),
        next_x_(cells()),
        next_psum_(cells()) {
    for (int64_t c = 0; c < C_; ++c) wskew_.emplace_back(c);
    for (int64_t i = 0; i < R_; ++i) xskew_.emplace_back(i);
    for (const WsTile& tl : tiles_) outputs_left_ += m(tl) * C_;  // padding columns included
  }

  ArrayRun run() {
    ArrayRun r;
    for (const WsTile& tl : tiles_) r.items += tl.job == 0;
    if (tiles_.empty()) return r;
    for (int64_t t = 0; outputs_left_ > 0; ++t) {
      if (t - last_out_ > kQuietLimit) fail("weight-stationary array stopped producing", t);
      cycle(t);
    }
    r.latency = done_[0];
    r.second_latency = done_[1];
    for (size_t j = 0; j < tiles_.size(); ++j) {
      if (tiles_[j].job == 1) {
        r.occupancy = start_[j] - R_;
        break;
      }
    }
    return r;
  }

 private:
  struct WeightWord {  // one PE's p weights, travelling down to row dest
    bool valid = false;
    int64_t tile = -1, dest = -1;
    Lanes w{};
  };
  struct InputWord {  // one PE row's p values of row `row` of A
    bool valid = false;
    int64_t tile = -1, row = -1;
    Lanes x{};
  };
  struct PsumWord {
    bool valid = false;
    int64_t tile = -1, row = -1;
    double v = 0;
  };

  size_t cells() const { return static_cast<size_t>(R_ * C_); }
  size_t at(int64_t i, int64_t c) const { return static_cast<size_t>(i * C_ + c); }
  int64_t m(const WsTile& tl) const { return jobs_[tl.job].a->rows; }
  int64_t m_of(int64_t tile) const { return m(tiles_[tile]); }

  void cycle(int64_t t) {
    // Controller. A load is complete once its R rows have been pushed.
    if (loading_ >= 0 && load_rows_ == R_) {
      loaded_ = loading_;
      loading_ = -1;
    }
    // Streaming needs the loaded weights and a free input port (previous tile's m rows fed).
    if (loaded_ >= 0 && (streaming_ < 0 || rows_fed_ == m_of(streaming_))) {
      streaming_ = loaded_;
      loaded_ = -1;
      rows_fed_ = 0;
      start_[streaming_] = t;
    }
    // The shadow registers are free once their tile streams (or at the very start).
    if (loading_ < 0 && loaded_ < 0 && next_load_ < static_cast<int64_t>(tiles_.size())) {
      loading_ = next_load_++;
      load_rows_ = 0;
    }

    // Weight port: the row for the bottom PE row goes first, it has the farthest to travel.
    std::vector<WeightWord> win(static_cast<size_t>(C_));
    if (loading_ >= 0) {
      const WsTile& tl = tiles_[loading_];
      const Matrix& b = *jobs_[tl.job].b;
      const int64_t dest = R_ - 1 - load_rows_;
      for (int64_t c = 0; c < C_; ++c) {
        WeightWord w{true, loading_, dest, {}};
        for (int64_t q = 0; q < p_; ++q)
          w.w[q] = b.padded(tl.kt * R_ * p_ + dest * p_ + q, tl.nt * C_ + c);
        win[c] = w;
      }
      ++load_rows_;
    }
    for (int64_t c = 0; c < C_; ++c) win[c] = wskew_[c].step(win[c]);

    // Input port: row rows_fed_ of A, split into the R PE rows' p values, then skewed by row.
    std::vector<InputWord> xin(static_cast<size_t>(R_));
    if (streaming_ >= 0 && rows_fed_ < m_of(streaming_)) {
      const WsTile& tl = tiles_[streaming_];
      const Matrix& a = *jobs_[tl.job].a;
      for (int64_t i = 0; i < R_; ++i) {
        InputWord x{true, streaming_, rows_fed_, {}};
        for (int64_t q = 0; q < p_; ++q) x.x[q] = a.padded(rows_fed_, tl.kt * R_ * p_ + i * p_ + q);
        xin[i] = x;
      }
      ++rows_fed_;
    }
    for (int64_t i = 0; i < R_; ++i) xin[i] = xskew_[i].step(xin[i]);

    // PEs: everything below reads this cycle's registers and writes next cycle's (next_*),
    // except the active weights, which only their own PE reads.
    for (int64_t i = 0; i < R_; ++i) {
      for (int64_t c = 0; c < C_; ++c) {
        const InputWord& x = c == 0 ? xin[i] : x_[at(i, c - 1)];
        const PsumWord above = i == 0 ? PsumWord{} : psum_[at(i - 1, c)];
        next_x_[at(i, c)] = x;
        next_psum_[at(i, c)] = PsumWord{};
        if (!x.valid) {
          if (above.valid) fail("a partial sum reached a PE without its input", t);
          continue;
        }
        WeightWord& w = active_[at(i, c)];
        if (w.tile != x.tile) {
          // The tile's first wave: its weights must be parked in this PE's shadow by now.
          const WeightWord& s = shadow_[at(i, c)];
          if (!s.valid || s.tile != x.tile || s.dest != i)
            fail("weights of tile " + std::to_string(x.tile) + " not in the shadow of PE (" +
                     std::to_string(i) + ", " + std::to_string(c) + ")",
                 t);
          w = s;
        }
        PsumWord out{true, x.tile, x.row, 0.0};
        if (i > 0) {
          if (!above.valid || above.tile != x.tile || above.row != x.row)
            fail("partial sum and input out of step", t);
          out.v = above.v;
        }
        for (int64_t q = 0; q < p_; ++q) out.v += w.w[q] * x.x[q];
        next_psum_[at(i, c)] = out;
      }
    }

    // Shadow chains: a word still travelling (dest below its row) moves down one row; a word
    // at its row stays parked until the next load's words reach it.
    for (int64_t c = 0; c < C_; ++c) {
      for (int64_t i = 0; i < R_; ++i) {
        const WeightWord& from = i == 0 ? win[c] : shadow_[at(i - 1, c)];
        const WeightWord& here = shadow_[at(i, c)];
        if (from.valid && from.dest >= i)
          next_shadow_[at(i, c)] = from;
        else if (!here.valid || here.dest == i)
          next_shadow_[at(i, c)] = here;
        else
          fail("a gap in a weight load", t);
      }
    }

    // The bottom row's partial sums leave at the end of this cycle: complete at t + 1.
    for (int64_t c = 0; c < C_; ++c) {
      const PsumWord& o = next_psum_[at(R_ - 1, c)];
      if (!o.valid) continue;
      const WsTile& tl = tiles_[o.tile];
      const Job& job = jobs_[tl.job];
      const int64_t col = tl.nt * C_ + c;
      if (col < job.out->cols) job.out->at(o.row, col) += o.v;  // k-tiles accumulate here
      done_[tl.job] = std::max(done_[tl.job], t + 1);
      last_out_ = t + 1;
      --outputs_left_;
    }

    x_.swap(next_x_);
    psum_.swap(next_psum_);
    shadow_.swap(next_shadow_);
  }

  int64_t R_, C_, p_;
  std::array<Job, 2> jobs_;
  std::vector<WsTile> tiles_;
  std::vector<WeightWord> shadow_, active_;
  std::vector<InputWord> x_;    // the input word each PE saw, passed right next cycle
  std::vector<PsumWord> psum_;  // each PE's partial sum, passed down next cycle
  std::vector<DelayLine<WeightWord>> wskew_;
  std::vector<DelayLine<InputWord>> xskew_;
  std::vector<int64_t> start_;           // cycle each tile began streaming
  std::vector<WeightWord> next_shadow_;  // next cycle's registers, reused to save allocations
  std::vector<InputWord> next_x_;
  std::vector<PsumWord> next_psum_;
  int64_t next_load_ = 0, loading_ = -1, load_rows_ = 0, loaded_ = -1;
  int64_t streaming_ = -1, rows_fed_ = 0;
  int64_t outputs_left_ = 0, last_out_ = 0;
  std::array<int64_t, 2> done_{0, 0};
};

// ---------------------------------------------------------------------------------------------
// Output-stationary array.
// ---------------------------------------------------------------------------------------------

struct OsBlock {
  int job = 0;
  int64_t mb = 0, nb = 0;  // row block and column block of the result
};

class OsArray {
 public:
  OsArray(int64_t rows, int64_t cols, int64_t pack, const std::array<Job, 2>& jobs,
          std::vector<OsBlock> blocks)
      : R_(rows),
        C_(cols),
        p_(pack),
        jobs_(jobs),
        blocks_(std::move(blocks)),
        a_(cells()),
        b_(cells()),
        acc_(cells()),
        shadow_(cells()),
        drain_(static_cast<size_t>(C_)),
        base_(blocks_.size(), -1),
        drains_started_(blocks_.size(), 0),
        next_a_(cells()),
        next_b_(cells()),
        next_shadow_(cells()),
        moving_(cells()) {
    for (int64_t i = 0; i < R_; ++i) askew_.emplace_back(i);
    for (int64_t j = 0; j < C_; ++j) bskew_.emplace_back(j);
    outputs_left_ = static_cast<int64_t>(blocks_.size()) * R_ * C_;
    for (size_t j = 0; j < jobs_.size(); ++j)  // k steps of p MACs each
      for (int64_t k0 = 0; k0 < jobs_[j].a->cols; k0 += p_) ++ks_[j];
  }

  ArrayRun run() {
    ArrayRun r;
    for (const OsBlock& bl : blocks_) r.items += bl.job == 0;
    if (blocks_.empty()) return r;
    for (int64_t t = 0; outputs_left_ > 0; ++t) {
      if (t - last_out_ > kQuietLimit) fail("output-stationary array stopped producing", t);
      if (port_free() && next_block_ < static_cast<int64_t>(blocks_.size()) && fits(t)) issue(t);
      cycle(t);
    }
    r.latency = done_[0];
    r.second_latency = done_[1];
    for (size_t b = 0; b < blocks_.size(); ++b) {
      if (blocks_[b].job == 1) {
        r.occupancy = base_[b];
        break;
      }
    }
    return r;
  }

 private:
  struct Operand {  // p values of A (moving right) or of B (moving down) for k step `step`
    bool valid = false;
    int64_t block = -1, step = -1;
    bool last = false;
    Lanes v{};
  };
  struct Acc {
    bool valid = false;
    int64_t block = -1, steps = 0;
    double v = 0;
  };
  struct Result {  // a finished accumulator on its way out; `row` is the PE row it came from
    bool valid = false;
    int64_t block = -1, row = -1;
    double v = 0;
  };
  struct Drain {
    bool active = false;
    int64_t block = -1, step = 0;
  };

  size_t cells() const { return static_cast<size_t>(R_ * C_); }
  size_t at(int64_t i, int64_t j) const { return static_cast<size_t>(i * C_ + j); }
  const Job& job(int64_t block) const { return jobs_[blocks_[block].job]; }
  int64_t ks(int64_t block) const { return ks_[blocks_[block].job]; }
  bool port_free() const { return feeding_ < 0 || fed_ == ks(feeding_); }

  void issue(int64_t t) {
    feeding_ = next_block_++;
    fed_ = 0;
    base_[feeding_] = t;
  }

  // Would the next block, issued now, find free shadow registers and drains? Runs a copy of
  // the array (issuing nothing else) until all that block's columns have started draining,
  // after which it can no longer collide, or until it collides.
  bool fits(int64_t t) const {
    OsArray trial = *this;
    trial.trial_ = true;
    trial.issue(t);
    const size_t b = static_cast<size_t>(trial.feeding_);
    for (int64_t tt = t; trial.drains_started_[b] < C_ && !trial.conflict_; ++tt) {
      if (tt - t > kQuietLimit) fail("trial run never finished", tt);
      trial.cycle(tt);
    }
    return !trial.conflict_;
  }

  // A collision of the block being tried is the answer "not yet"; outside a trial, the issue
  // rule should have prevented it.
  void conflict(const std::string& what, int64_t t) {
    if (!trial_) fail(what, t);
    conflict_ = true;
  }

  void cycle(int64_t t) {
    // Ports: step fed_ of the block being fed, A by rows from the left, B by columns from the
    // top, each skewed so PE (i, j) does step kk at base + i + j + kk.
    std::vector<Operand> ain(static_cast<size_t>(R_)), bin(static_cast<size_t>(C_));
    if (feeding_ >= 0 && fed_ < ks(feeding_)) {
      const OsBlock& bl = blocks_[feeding_];
      const Matrix& a = *job(feeding_).a;
      const Matrix& b = *job(feeding_).b;
      const bool last = fed_ == ks(feeding_) - 1;
      for (int64_t i = 0; i < R_; ++i) {
        Operand o{true, feeding_, fed_, last, {}};
        for (int64_t q = 0; q < p_; ++q) o.v[q] = a.padded(bl.mb * R_ + i, fed_ * p_ + q);
        ain[i] = o;
      }
      for (int64_t j = 0; j < C_; ++j) {
        Operand o{true, feeding_, fed_, last, {}};
        for (int64_t q = 0; q < p_; ++q) o.v[q] = b.padded(fed_ * p_ + q, bl.nb * C_ + j);
        bin[j] = o;
      }
      ++fed_;
    }
    for (int64_t i = 0; i < R_; ++i) ain[i] = askew_[i].step(ain[i]);
    for (int64_t j = 0; j < C_; ++j) bin[j] = bskew_[j].step(bin[j]);

    // PEs: MAC, and after the block's last step hand the accumulator to the shadow. Operands
    // go to next cycle's registers (next_*); the accumulator only its own PE reads.
    for (int64_t i = 0; i < R_; ++i) {
      for (int64_t j = 0; j < C_; ++j) {
        const Operand& a = j == 0 ? ain[i] : a_[at(i, j - 1)];
        const Operand& b = i == 0 ? bin[j] : b_[at(i - 1, j)];
        if (a.valid != b.valid || (a.valid && (a.block != b.block || a.step != b.step)))
          fail("A and B operands out of step", t);
        next_a_[at(i, j)] = a;
        next_b_[at(i, j)] = b;
        moving_[at(i, j)] = Result{};
        if (!a.valid) continue;
        Acc& acc = acc_[at(i, j)];
        if (a.step == 0) {
          if (acc.valid) fail("accumulator still busy at a block's first step", t);
          acc = Acc{true, a.block, 0, 0.0};
        } else if (!acc.valid || acc.block != a.block || acc.steps != a.step) {
          fail("accumulator out of step", t);
        }
        for (int64_t q = 0; q < p_; ++q) acc.v += a.v[q] * b.v[q];
        ++acc.steps;
        if (a.last) {
          moving_[at(i, j)] = Result{true, acc.block, i, acc.v};
          acc = Acc{};
        }
      }
    }

    // Drains: a draining column sends its bottom shadow out (complete at t + 1) and shifts
    // the rows still holding this block's results down by one; the row it empties is free.
    next_shadow_ = shadow_;
    for (int64_t j = 0; j < C_; ++j) {
      Drain& d = drain_[j];
      if (!d.active) continue;
      const Result& bottom = shadow_[at(R_ - 1, j)];
      if (!bottom.valid || bottom.block != d.block || bottom.row != R_ - 1 - d.step)
        fail("drain out of step", t);
      deliver(bottom, j, t);
      for (int64_t r = R_ - 1; r > d.step; --r) {
        const Result& from = shadow_[at(r - 1, j)];
        if (!from.valid || from.block != d.block) fail("drain lost a result", t);
        next_shadow_[at(r, j)] = from;
      }
      next_shadow_[at(d.step, j)] = Result{};
      if (++d.step == R_) d = Drain{};
    }

    // Finished accumulators land in the shadow at the end of this cycle; a column whose bottom
    // PE just finished starts draining next cycle.
    for (int64_t i = 0; i < R_; ++i) {
      for (int64_t j = 0; j < C_; ++j) {
        const Result& mv = moving_[at(i, j)];
        if (!mv.valid) continue;
        if (next_shadow_[at(i, j)].valid) conflict("shadow register still busy", t);
        next_shadow_[at(i, j)] = mv;
        if (i == R_ - 1) {
          Drain& d = drain_[j];
          if (d.active) conflict("column still draining the previous block", t);
          d = Drain{true, mv.block, 0};
          ++drains_started_[mv.block];
        }
      }
    }

    a_.swap(next_a_);
    b_.swap(next_b_);
    shadow_.swap(next_shadow_);
  }

  void deliver(const Result& res, int64_t j, int64_t t) {
    const OsBlock& bl = blocks_[res.block];
    Matrix& out = *job(res.block).out;
    const int64_t row = bl.mb * R_ + res.row, col = bl.nb * C_ + j;
    if (!trial_ && row < out.rows && col < out.cols) out.at(row, col) = res.v;
    done_[bl.job] = std::max(done_[bl.job], t + 1);
    last_out_ = t + 1;
    --outputs_left_;
  }

  int64_t R_, C_, p_;
  std::array<Job, 2> jobs_;
  std::vector<OsBlock> blocks_;
  std::vector<Operand> a_, b_;  // operands each PE saw, passed right (A) and down (B)
  std::vector<Acc> acc_;
  std::vector<Result> shadow_;
  std::vector<Drain> drain_;  // per column
  std::vector<DelayLine<Operand>> askew_, bskew_;
  std::vector<int64_t> base_;             // cycle each block's first step entered the ports
  std::vector<int64_t> drains_started_;   // per block, columns that began draining
  std::vector<Operand> next_a_, next_b_;  // next cycle's registers, reused to save allocations
  std::vector<Result> next_shadow_;
  std::vector<Result> moving_;  // accumulators finishing this cycle
  int64_t next_block_ = 0, feeding_ = -1, fed_ = 0;
  int64_t outputs_left_ = 0, last_out_ = 0;
  std::array<int64_t, 2> done_{0, 0};
  std::array<int64_t, 2> ks_{0, 0};
  bool trial_ = false, conflict_ = false;
};

}  // namespace detail

// Runs a MATMUL (a x b) and, right behind it, a second one of the same shape (a2 x b2) on
// `shape.count` arrays of shape.rows x shape.cols PEs doing `pack` MACs each per cycle.
inline PeGridResult simulate_pe_grid(const ArrayShape& shape, int64_t pack, const Matrix& a,
                                     const Matrix& b, const Matrix& a2, const Matrix& b2) {
  if (shape.rows < 1 || shape.cols < 1 || shape.count < 1 || pack < 1 || pack > detail::kMaxPack)
    throw std::invalid_argument("pe grid: bad array shape or packing");
  if (a.cols != b.rows || a.rows < 1 || a.cols < 1 || b.cols < 1 || a2.rows != a.rows ||
      a2.cols != a.cols || b2.rows != b.rows || b2.cols != b.cols)
    throw std::invalid_argument("pe grid: bad operand shapes");
  const int64_t R = shape.rows, C = shape.cols, m = a.rows, k = a.cols, n = b.cols;

  PeGridResult res;
  res.out = Matrix(m, n);
  res.second_out = Matrix(m, n);
  const std::array<detail::Job, 2> jobs{detail::Job{&a, &b, &res.out},
                                        detail::Job{&a2, &b2, &res.second_out}};

  for (int64_t arr = 0; arr < shape.count; ++arr) {
    ArrayRun run;
    if (shape.dataflow == Dataflow::WeightStationary) {
      // n-tiles dealt round robin; each n-tile brings all its k-tiles, k innermost.
      std::vector<detail::WsTile> tiles;
      for (int job = 0; job < 2; ++job) {
        int64_t index = 0;
        for (int64_t nt = 0; nt * C < n; ++nt, ++index) {
          if (index % shape.count != arr) continue;
          for (int64_t kt = 0; kt * R * pack < k; ++kt) tiles.push_back({job, kt, nt});
        }
      }
      run = detail::WsArray(R, C, pack, jobs, std::move(tiles)).run();
    } else {
      // Blocks row block by row block, dealt round robin.
      std::vector<detail::OsBlock> blocks;
      for (int job = 0; job < 2; ++job) {
        int64_t index = 0;
        for (int64_t mb = 0; mb * R < m; ++mb)
          for (int64_t nb = 0; nb * C < n; ++nb, ++index)
            if (index % shape.count == arr) blocks.push_back({job, mb, nb});
      }
      run = detail::OsArray(R, C, pack, jobs, std::move(blocks)).run();
    }
    res.latency = std::max(res.latency, run.latency);
    res.occupancy = std::max(res.occupancy, run.occupancy);
    res.arrays.push_back(run);
  }
  return res;
}

}  // namespace tessera::sim::test
