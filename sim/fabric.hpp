// What chips and the chip-to-chip fabric say to each other, as SystemC interfaces: each chip's
// comm unit holds a port to the fabric (FabricIf) and exports CommIf, which the fabric's port
// to every chip binds (sim/system.hpp), so no chip reaches into another.
#pragma once

#include <systemc>

#include <cstdint>
#include <vector>

#include "sim/activity.hpp"
#include "sim/energy.hpp"
#include "sim/time.hpp"

namespace tessera::sim {

// One piece of a message (at most SimOptions::dma_chunk_bytes): the unit the links carry.
struct Piece {
  int src = 0, src_tile = 0, dst = 0;  // chips, and the sending tile
  int64_t tag = 0;
  uint64_t message = 0;          // the sender's count of earlier messages to dst with this tag
  uint64_t bytes = 0;            // of the whole message
  uint64_t offset = 0, size = 0; // of this piece in it
  std::vector<uint8_t> data;     // functional mode: the bytes
};

// A chip, as the fabric sees it.
class CommIf : public virtual sc_core::sc_interface {
 public:
  // `piece` has arrived at this chip (now).
  virtual void arrive(Piece piece) = 0;
};

// The fabric, as a chip sees it.
class FabricIf : public virtual sc_core::sc_interface {
 public:
  // Puts `piece`, ready at its sender at `ready`, on the links of its route (each reserved in
  // turn, cut-through: a hop starts once the previous one's latency has passed); charges the
  // bits each link carries to the sender's `act` and their energy, while they cross, to its
  // `meter`. Returns when the piece has left the sender's first link; the destination's
  // arrive() runs when it has crossed the last.
  virtual Tick transmit(Piece piece, Tick ready, Activity& act, PowerMeter& meter) = 0;
};

}  // namespace tessera::sim
