// The tile sequencer: issues its stream in order, one instruction per core cycle, to the DMA
// engines, the arrays and the vector unit. A scoreboard over byte ranges holds back an
// instruction that touches memory an earlier, unfinished instruction writes (or writes memory
// it reads), so loads, matrix work and vector work overlap exactly as far as the program allows.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "sim/chip.hpp"
#include "sim/functional.hpp"

namespace tessera::sim {

using isa::Opcode;
using sc_core::sc_module_name;

namespace {

Unit unit_of(const isa::Instr& in) {
  switch (in.def().cls) {
    case isa::OpClass::Dma: return Unit::Dma;
    case isa::OpClass::Matmul: return Unit::Matmul;
    case isa::OpClass::Vector: return Unit::Vector;
    case isa::OpClass::Comm: return Unit::Comm;
    default: return Unit::None;
  }
}

bool overlaps(const isa::Access& a, const isa::Access& b) {
  return a.space == b.space && a.tile == b.tile && a.begin < b.end && b.begin < a.end;
}

constexpr int kSemSignalTile = isa::field_index(Opcode::SemSignal, "tile");
constexpr int kSemSignalSem = isa::field_index(Opcode::SemSignal, "sem");
constexpr int kSemSignalCount = isa::field_index(Opcode::SemSignal, "count");
constexpr int kSemSignalAfter = isa::field_index(Opcode::SemSignal, "after");
constexpr int kMatmulAcc = isa::field_index(Opcode::Matmul, "acc");

}  // namespace

Tile::Tile(sc_module_name name, Chip& chip, int index)
    : sc_core::sc_module(name),
      chip_(chip),
      index_(index),
      prefix_(fmt::format("{}.tile{}", chip.prefix(), index)),
      sram_(chip.arch().chip.tile.sram, chip.clock(), chip.stats(), prefix_ + ".sram", chip.slots(), &chip.meter()),
      matmul_("matmul", *this),
      vector_("vector", *this),
      instructions_(chip.stats().add(prefix_ + ".instructions", "count", "instructions executed")),
      stall_hazard_(chip.stats().add(prefix_ + ".stall.hazard_ps", "ps",
                                     "sequencer time waiting for an earlier instruction's memory")),
      stall_unit_(chip.stats().add(prefix_ + ".stall.unit_busy_ps", "ps", "sequencer time waiting for a full unit queue")),
      stall_sem_(chip.stats().add(prefix_ + ".stall.semaphore_ps", "ps", "sequencer time waiting on sem.wait")),
      stall_barrier_(chip.stats().add(prefix_ + ".stall.barrier_ps", "ps", "sequencer time waiting at barriers")),
      halt_time_(chip.stats().add(prefix_ + ".halt_ps", "ps", "time at which the tile halted")) {
  if (Trace* tr = chip.trace()) {
    const char* names[] = {"dma", "matmul", "vector"};
    for (int u = 0; u < 3; ++u) tracks_[size_t(u)] = tr->track(fmt::format("tile{}.{}", index, names[u]), chip.index());
  }
  for (int64_t e = 0; e < chip.arch().chip.tile.dma.engines; ++e) {
    dma_.push_back(std::make_unique<DmaEngine>(fmt::format("dma{}", e).c_str(), *this, int(e)));
  }
  SC_METHOD(step);
  sensitive << wake_;
  dont_initialize();
}

const arch::Arch& Tile::arch() const { return chip_.arch(); }
Clock Tile::clock() const { return chip_.clock(); }
Stats& Tile::stats() { return chip_.stats(); }
Trace* Tile::trace() { return chip_.trace(); }
Memory* Tile::memory() { return chip_.memory() ? &chip_.memory()->sram[size_t(index_)] : nullptr; }
Activity& Tile::activity(const Op& op) { return chip_.attribution()[op.region].activity; }

void Tile::load(const isa::Stream* stream, Tick start) {
  stream_ = stream;
  if (stream_ == nullptr || stream_->code.empty()) {
    halted_ = true;
    return;
  }
  wake_.notify(ticks(start - now_ticks()));
}

Op* Tile::new_op() {
  Op* op;
  if (free_ops_.empty()) {
    op_pool_.emplace_back();
    op = &op_pool_.back();
  } else {
    op = free_ops_.back();
    free_ops_.pop_back();
  }
  *op = Op{};
  return op;
}

void Tile::free_op(Op* op) { free_ops_.push_back(op); }

void Tile::block(Block why) {
  if (blocked_ == Block::None) blocked_since_ = now_ticks();
  blocked_ = why;
}

void Tile::unblock(Tick now) {
  const Tick waited = now - blocked_since_;
  switch (blocked_) {
    case Block::Hazard: stall_hazard_ += double(waited); break;
    case Block::UnitFull: stall_unit_ += double(waited); break;
    case Block::Semaphore: stall_sem_ += double(waited); break;
    case Block::Barrier: stall_barrier_ += double(waited); break;
    default: break;
  }
  blocked_ = Block::None;
}

bool Tile::hazard(const Op& op) const {
  for (const Op* o : inflight_) {
    for (int i = 0; i < op.naccess; ++i) {
      const isa::Access& x = op.acc[size_t(i)];
      for (int j = 0; j < o->naccess; ++j) {
        const isa::Access& y = o->acc[size_t(j)];
        if (!(x.write || y.write) || !overlaps(x, y)) continue;
        // The arrays finish MATMULs in order, so chained accumulation into the same
        // accumulator needs no stall.
        if (op.unit == Unit::Matmul && o->unit == Unit::Matmul && x.operand == "acc" && y.operand == "acc") continue;
        return true;
      }
    }
  }
  return false;
}

bool Tile::issue_memory_op(const isa::Instr& in, Unit unit) {
  const Tick now = now_ticks();
  if (next_issue_ > now) {  // one issue per cycle
    block(Block::Issue);
    wake_.notify(ticks(next_issue_ - now));
    return false;
  }
  // An instruction that had to wait keeps what was decoded: its registers cannot change.
  Op* op = waiting_;
  if (op == nullptr) {
    op = new_op();
    op->unit = unit;
    op->in = &in;
    op->pc = pc_;
    for (size_t i = 0; i < in.def().fields.size(); ++i) op->v[i] = regs_[in.base[i]] + in.f[i];
    static thread_local std::vector<isa::Access> accesses;
    accesses.clear();
    isa::collect_accesses(in, regs_.data(), accesses);
    op->naccess = int(accesses.size());
    for (size_t i = 0; i < accesses.size(); ++i) {
      isa::Access a = accesses[i];
      if (a.space != isa::Space::Sram) a.tile = -1;             // HBM and shared: one address space per chip / cluster
      else if (a.tile == int64_t(isa::kTileSelf)) a.tile = index_;
      op->acc[i] = a;
    }
  }
  if (hazard(*op)) {
    waiting_ = op;
    block(Block::Hazard);
    return false;
  }
  DmaEngine* engine = nullptr;
  if (unit == Unit::Dma) {
    for (auto& e : dma_) {
      if (!e->full() && (engine == nullptr || e->load() < engine->load())) engine = e.get();
    }
  }
  const bool full = unit == Unit::Dma      ? engine == nullptr
                    : unit == Unit::Matmul ? matmul_.full()
                    : unit == Unit::Vector ? vector_.full()
                                           : false;  // the comm unit queues every message
  if (full) {
    waiting_ = op;
    block(Block::UnitFull);
    return false;
  }
  waiting_ = nullptr;
  if (blocked_ != Block::None) unblock(now);
  op->seq = next_seq_++;
  op->issued = now;
  op->region = region_;
  chip_.attribution()[region_].activity.instructions += 1;
  inflight_.push_back(op);
  next_issue_ = now + clock().cycles(1);
  instructions_ += 1;
  switch (unit) {
    case Unit::Dma: engine->push(op); break;
    case Unit::Matmul: matmul_.push(op); break;
    case Unit::Comm: chip_.comm().push(*this, op); break;
    default: vector_.push(op); break;
  }
  return true;
}

void Tile::step() {
  if (halted_) return;
  const Tick now = now_ticks();
  const std::vector<isa::Instr>& code = stream_->code;
  while (true) {
    if (pc_ >= code.size() || code[pc_].op == Opcode::Halt) {
      // Halting waits for everything in flight, including held signals.
      if (!inflight_.empty() || !pending_signals_.empty()) {
        block(Block::Halting);
        return;
      }
      if (blocked_ != Block::None) unblock(now);
      halted_ = true;
      halt_time_ = double(now);
      return;
    }
    const isa::Instr& in = code[pc_];
    switch (in.op) {
      case Opcode::Li:
        if (in[0] != 0) regs_[size_t(in[0])] = in[1];
        ++pc_;
        continue;
      case Opcode::Addi:
        if (in[0] != 0) regs_[size_t(in[0])] = regs_[size_t(in[1])] + in[2];
        ++pc_;
        continue;
      case Opcode::Add:
        if (in[0] != 0) regs_[size_t(in[0])] = regs_[size_t(in[1])] + regs_[size_t(in[2])];
        ++pc_;
        continue;
      case Opcode::Loop: {
        const int64_t count = regs_[in.base[0]] + in.f[0];
        if (count <= 0) {  // a count from data may be 0: skip the body
          pc_ = end_of_loop(pc_) + 1;
          continue;
        }
        loops_.push_back({pc_ + 1, count});
        ++pc_;
        continue;
      }
      case Opcode::Ld:
        if (!load_register(in)) return;
        ++pc_;
        continue;
      case Opcode::EndLoop:
        if (--loops_.back().remaining > 0) {
          pc_ = loops_.back().start;
        } else {
          loops_.pop_back();
          ++pc_;
        }
        continue;
      case Opcode::Mark: {
        const auto [r, fresh] = chip_.attribution().mark(index_, in[0], in[1] != 0, now);
        region_ = r;
        if (fresh) chip_.region_began(r);
        ++pc_;
        continue;
      }
      case Opcode::Nop:
        if (blocked_ == Block::Nop) {  // the wait is over
          blocked_ = Block::None;
          ++pc_;
          continue;
        }
        block(Block::Nop);
        wake_.notify(ticks(clock().cycles(double(in[0]))));
        return;
      case Opcode::SemWait: {
        int64_t& s = sems_[size_t(in[0])];
        if (s < in[1]) {
          block(Block::Semaphore);
          return;
        }
        if (blocked_ != Block::None) unblock(now);
        s -= in[1];
        instructions_ += 1;
        chip_.attribution()[region_].activity.instructions += 1;
        ++pc_;
        continue;
      }
      case Opcode::SemSignal: {
        const int64_t target = in[kSemSignalTile] == int64_t(isa::kTileSelf) ? index_ : in[kSemSignalTile];
        const auto after = static_cast<isa::After>(in[kSemSignalAfter]);
        instructions_ += 1;
        chip_.attribution()[region_].activity.instructions += 1;
        ++pc_;
        if (after == isa::After::None || inflight_.empty()) {
          send_signal(target, in[kSemSignalSem], in[kSemSignalCount]);
          continue;
        }
        const Unit u = after == isa::After::Dma      ? Unit::Dma
                       : after == isa::After::Matmul ? Unit::Matmul
                       : after == isa::After::Vector ? Unit::Vector
                                                     : Unit::None;
        pending_signals_.push_back({next_seq_ - 1, u, target, in[kSemSignalSem], in[kSemSignalCount]});
        deliver_ready_signals();
        continue;
      }
      case Opcode::Barrier:
        if (blocked_ == Block::Barrier) return;  // released by barrier_release()
        block(Block::Barrier);
        instructions_ += 1;
        chip_.attribution()[region_].activity.instructions += 1;
        chip_.barrier_arrive(int(in[0]), int(in[1]), in[2] != 0, *this);
        return;
      default: {
        const Unit u = unit_of(in);
        if (!issue_memory_op(in, u)) return;
        ++pc_;
        continue;
      }
    }
  }
}

size_t Tile::end_of_loop(size_t loop_pc) const {
  const std::vector<isa::Instr>& code = stream_->code;
  int depth = 0;
  for (size_t pc = loop_pc + 1; pc < code.size(); ++pc) {
    if (code[pc].op == Opcode::Loop) ++depth;
    if (code[pc].op == Opcode::EndLoop && depth-- == 0) return pc;
  }
  return code.size();  // the verifier rejects unmatched loops
}

bool Tile::load_register(const isa::Instr& in) {
  const Tick now = now_ticks();
  isa::Access a;
  a.space = isa::Space::Sram;
  a.tile = index_;
  a.begin = isa::resolve(in, 1, regs_.data());
  a.end = a.begin + 4;
  for (const Op* o : inflight_) {
    for (int j = 0; j < o->naccess; ++j) {
      if (o->acc[size_t(j)].write && overlaps(a, o->acc[size_t(j)])) {
        block(Block::Hazard);
        return false;
      }
    }
  }
  if (blocked_ != Block::None) unblock(now);
  uint8_t bytes[4];
  control_memory().read(uint64_t(a.begin), bytes);
  int32_t value;
  std::memcpy(&value, bytes, 4);
  if (in[0] != 0) regs_[size_t(in[0])] = std::clamp<int64_t>(value, 0, in[2]);
  instructions_ += 1;
  chip_.attribution()[region_].activity.instructions += 1;
  return true;
}

Memory& Tile::control_memory() { return memory() ? *memory() : control_; }

void Tile::route(const int64_t* v) {
  const uint64_t n = routes_++;
  if (memory()) {
    functional_route(*memory(), v);
    return;
  }
  constexpr Opcode R = Opcode::MoeRoute;
  route_counts(control_, v,
               chip_.routing_draw(n, v[isa::field_index(R, "rows")], v[isa::field_index(R, "cols")],
                                  v[isa::field_index(R, "k")]));
}

void Tile::complete(Op* op) {
  Attribution::Region& r = chip_.attribution()[op->region];
  r.end = std::max(r.end, now_ticks());
  inflight_.erase(std::find(inflight_.begin(), inflight_.end(), op));
  free_op(op);
  deliver_ready_signals();
  if (blocked_ == Block::Hazard || blocked_ == Block::UnitFull || blocked_ == Block::Halting) {
    wake_.notify(sc_core::SC_ZERO_TIME);
  }
}

void Tile::deliver_ready_signals() {
  for (size_t i = 0; i < pending_signals_.size();) {
    const PendingSignal& s = pending_signals_[i];
    const bool waiting = std::any_of(inflight_.begin(), inflight_.end(), [&](const Op* o) {
      return o->seq <= s.after_seq && (s.unit == Unit::None || o->unit == s.unit);
    });
    if (waiting) {
      ++i;
      continue;
    }
    send_signal(s.tile, s.sem, s.count);
    pending_signals_.erase(pending_signals_.begin() + long(i));
  }
}

void Tile::send_signal(int64_t tile, int64_t sem, int64_t count) {
  if (tile == index_) {
    signal(int(sem), count);
    return;
  }
  Tile& target = chip_.tile(tile);
  const Tick arrive = now_ticks() + chip_.noc().latency(chip_.noc().tile_node(index_), chip_.noc().tile_node(tile));
  chip_.scheduler().at(arrive, [&target, sem, count] { target.signal(int(sem), count); });
}

void Tile::signal(int sem, int64_t count) {
  sems_[size_t(sem)] += count;
  if (blocked_ == Block::Semaphore) wake_.notify(sc_core::SC_ZERO_TIME);
}

void Tile::barrier_release() {
  unblock(now_ticks());
  ++pc_;
  wake_.notify(sc_core::SC_ZERO_TIME);
}

std::string Tile::blocked_reason() const {
  const std::string at =
      stream_ && pc_ < stream_->code.size()
          ? fmt::format("instruction {} ({}{})", pc_, stream_->code[pc_].def().mnemonic,
                        pc_ < stream_->lines.size() ? fmt::format(", line {}", stream_->lines[pc_]) : "")
          : "the end of its stream";
  const isa::Instr* in = stream_ && pc_ < stream_->code.size() ? &stream_->code[pc_] : nullptr;
  switch (blocked_) {
    case Block::Semaphore:
      return fmt::format("{} waits for semaphore {} to reach {} (it is {})", at, (*in)[0], (*in)[1], sems_[size_t((*in)[0])]);
    case Block::Barrier: return fmt::format("{} waits at barrier {} for {} tiles", at, (*in)[0], (*in)[1]);
    case Block::Hazard: return fmt::format("{} waits for an earlier instruction's memory ({} in flight)", at, inflight_.size());
    case Block::UnitFull: return fmt::format("{} waits for a full unit queue", at);
    case Block::Halting: return fmt::format("halting, {} instructions still in flight", inflight_.size());
    default: return fmt::format("{} is not blocked", at);
  }
}

}  // namespace tessera::sim
