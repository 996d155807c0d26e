// The chip's comm unit: send and recv (see CommUnit in chip.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "sim/chip.hpp"

namespace tessera::sim {

using isa::Opcode;
using isa::Space;

namespace {

constexpr int kSendSrc = isa::field_index(Opcode::Send, "src"), kSendSpace = isa::field_index(Opcode::Send, "src_space");
constexpr int kSendBytes = isa::field_index(Opcode::Send, "bytes"), kSendPeer = isa::field_index(Opcode::Send, "peer");
constexpr int kSendTag = isa::field_index(Opcode::Send, "tag"), kSendSem = isa::field_index(Opcode::Send, "sem");
constexpr int kRecvDst = isa::field_index(Opcode::Recv, "dst"), kRecvSpace = isa::field_index(Opcode::Recv, "dst_space");
constexpr int kRecvBytes = isa::field_index(Opcode::Recv, "bytes"), kRecvPeer = isa::field_index(Opcode::Recv, "peer");
constexpr int kRecvTag = isa::field_index(Opcode::Recv, "tag"), kRecvSem = isa::field_index(Opcode::Recv, "sem");
static_assert(kSendSem == kRecvSem && kSendBytes == kRecvBytes && kSendPeer == kRecvPeer && kSendTag == kRecvTag);

}  // namespace

Tick Chip::local_access(Space space, int64_t tile, uint64_t addr, uint64_t bytes, bool write, Tick t, Activity& act) {
  switch (space) {
    case Space::Hbm: {
      Tick done = t;
      hbm_.split(addr, bytes, [&](int64_t pc, uint64_t local, uint64_t k) {
        const Tick end = hbm_.channel(pc).access(t, local, k, write);
        meter_.add(end - hbm_.geometry().data_time(k), end, double(k) * meter_.prices().hbm);
        done = std::max(done, end);
      });
      (write ? act.hbm_write : act.hbm_read) += double(bytes);
      return done;
    }
    case Space::Shared: return shared_access(shared_instance(tile), t, bytes, write, act);
    default: return this->tile(tile).sram().access(t, 1, bytes, bytes, write, act);
  }
}

Memory& Chip::storage(Space space, int64_t tile) {
  if (space == Space::Hbm) return memory_->hbm;
  if (space == Space::Shared) return memory_->shared[size_t(shared_instance(tile))];
  return memory_->sram[size_t(tile)];
}

CommUnit::CommUnit(sc_core::sc_module_name name, Chip& chip)
    : sc_core::sc_module(name),
      fabric("fabric"),
      port("port"),
      chip_(chip),
      sent_bytes_(chip.stats().add(chip.prefix() + ".comm.sent_bytes", "bytes", "bytes sent to other chips")),
      received_bytes_(chip.stats().add(chip.prefix() + ".comm.received_bytes", "bytes", "bytes received from other chips")) {
  port(*this);
}

void CommUnit::push(Tile& tile, Op* op) {
  const auto& v = op->v;
  const int peer = int(v[kSendPeer]);
  const int64_t tag = v[kSendTag];
  const uint64_t bytes = uint64_t(v[kSendBytes]);
  const int64_t chips = chip_.arch().system.chips;
  if (peer == chip_.index() || peer >= chips) {
    throw std::runtime_error(fmt::format("chip {} tile {}: instruction {} ({}): peer {} is {}", chip_.index(), tile.index(),
                                         op->pc, op->in->def().mnemonic, peer,
                                         peer == chip_.index() ? "this chip" : fmt::format("beyond the system's {} chips", chips)));
  }
  const Tick now = now_ticks();
  Activity& act = tile.activity(*op);
  if (op->in->op == Opcode::Recv) {
    const auto key = std::make_tuple(peer, tag, posted_[{peer, tag}]++);
    Message& m = messages_[key];
    m.recv = {&tile, op, op->pc, bytes, 0, now};
    std::vector<Piece> waiting = std::move(m.waiting);
    for (const Piece& p : waiting) {
      if (write(m, p)) messages_.erase(key);
    }
    return;
  }
  // A send: piece by piece from local memory onto the links.
  const Space space = static_cast<Space>(v[kSendSpace]);
  const uint64_t message = sent_[{peer, tag}]++, chunk = chip_.options().dma_chunk_bytes;
  Tick left = now;
  for (uint64_t offset = 0; offset < bytes || offset == 0; offset += chunk) {
    Piece p{chip_.index(), tile.index(), peer, tag, message, bytes, offset, std::min(chunk, bytes - offset), {}};
    const uint64_t addr = uint64_t(v[kSendSrc]) + offset;
    const Tick ready = chip_.local_access(space, tile.index(), addr, p.size, false, now, act);
    if (chip_.memory()) p.data = chip_.storage(space, tile.index()).read(addr, p.size);
    left = std::max(left, fabric->transmit(std::move(p), ready, act, chip_.meter()));
    if (bytes == 0) break;
  }
  sent_bytes_ += double(bytes);
  finish(tile, op, left, "send");
}

void CommUnit::arrive(Piece piece) {
  const auto key = std::make_tuple(piece.src, piece.tag, piece.message);
  Message& m = messages_[key];
  if (m.recv.op == nullptr) {
    m.waiting.push_back(std::move(piece));
    return;
  }
  if (write(m, piece)) messages_.erase(key);
}

bool CommUnit::write(Message& m, const Piece& p) {
  Recv& r = m.recv;
  const auto& v = r.op->v;
  if (p.bytes != r.bytes) {
    throw std::runtime_error(fmt::format(
        "chip {} tile {}: instruction {} (recv) takes {} bytes from chip {} with tag {}, but chip {} tile {} sent {}",
        chip_.index(), r.tile->index(), r.pc, r.bytes, p.src, p.tag, p.src, p.src_tile, p.bytes));
  }
  m.bytes = p.bytes, m.src_tile = p.src_tile;
  m.arrived += p.size;
  const Space space = static_cast<Space>(v[kRecvSpace]);
  const uint64_t addr = uint64_t(v[kRecvDst]) + p.offset;
  const Tick now = now_ticks();
  r.done = std::max(r.done, chip_.local_access(space, r.tile->index(), addr, p.size, true, now, r.tile->activity(*r.op)));
  if (chip_.memory()) chip_.storage(space, r.tile->index()).write(addr, p.data);
  received_bytes_ += double(p.size);
  r.written += p.size;
  if (r.written < r.bytes) return false;
  finish(*r.tile, r.op, r.done, "recv");
  return true;
}

void CommUnit::finish(Tile& tile, Op* op, Tick at, const char* what) {
  const int64_t sem = op->v[kSendSem];
  const Tick issued = op->issued;
  chip_.scheduler().at(at, [&tile, op, sem, issued, what] {
    if (Trace* tr = tile.trace()) tr->slice(tile.trace_track(Unit::Dma), what, issued, now_ticks());
    if (sem != int64_t(isa::kSemNone)) tile.signal(int(sem), 1);
    tile.complete(op);
  });
}

std::string CommUnit::pending_report() const {
  std::string s;
  for (const auto& [key, m] : messages_) {
    const auto& [src, tag, number] = key;
    if (m.recv.op == nullptr) {
      const Piece& p = m.waiting.front();
      s += fmt::format("  chip {} tile {} sent {} bytes to chip {} with tag {} (message {}), which chip {} never received\n",
                       src, p.src_tile, p.bytes, chip_.index(), tag, number, chip_.index());
    } else {  // messages leave the map when complete
      s += fmt::format("  chip {} tile {}: instruction {} (recv) waits for {} bytes from chip {} with tag {} (message {}): {}\n",
                       chip_.index(), m.recv.tile->index(), m.recv.pc, m.recv.bytes, src, tag, number,
                       m.arrived > 0 ? fmt::format("{} of them arrived from tile {}", m.arrived, m.src_tile)
                                     : fmt::format("chip {} sent no such message", src));
    }
  }
  return s;
}

}  // namespace tessera::sim
