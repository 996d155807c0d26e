// The SystemC model of one chip: tiles on a NoC, each with an in-order sequencer, a
// scoreboard, DMA engines, systolic arrays and a vector unit; HBM pseudo-channels; cluster or
// chip-wide shared memory; semaphores and barriers.
//
// Nothing ticks: every unit is an SC_METHOD woken by an event when it has work, and computes
// how long an instruction takes from the architecture parameters and from reservations on the
// resources it shares (SRAM ports, NoC links, HBM channels, shared-memory ports). Shared
// resources behave like TLM-2.0 loosely-timed targets: they add the service time to the
// request's time and never wait.
#pragma once

#include <systemc>

#include <array>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <tuple>
#include <vector>

#include "arch/arch.hpp"
#include "sim/activity.hpp"
#include "isa/operands.hpp"
#include "isa/program.hpp"
#include "sim/energy.hpp"
#include "sim/fabric.hpp"
#include "sim/hbm.hpp"
#include "sim/memory.hpp"
#include "sim/noc.hpp"
#include "sim/sram.hpp"
#include "sim/stats.hpp"
#include "arch/systolic.hpp"
#include "sim/time.hpp"
#include "sim/trace.hpp"

namespace tessera::sim {

inline Tick now_ticks() { return static_cast<Tick>(sc_core::sc_time_stamp().value()); }
inline sc_core::sc_time ticks(Tick t) { return sc_core::sc_time::from_value(static_cast<uint64_t>(t)); }

// Storage of one chip in functional mode.
struct ChipMemory {
  Memory hbm;
  std::vector<Memory> sram;    // per tile
  std::vector<Memory> shared;  // per shared-memory instance
};

// The values of every stat when a region instance began (see SimOptions::snapshot_marks).
struct Snapshot {
  int64_t mark = -1, instance = 0;
  Tick time = 0;
  std::vector<double> values;  // in the order of Stats::all()
};

struct SimOptions {
  bool functional = false;
  // Stats are recorded when any of these regions begins an instance (and at the end): a
  // layer's first operator gives the stats at each layer boundary.
  std::vector<int64_t> snapshot_marks;
  uint64_t dma_chunk_bytes = 256 << 10;  // DMA transfers move in chunks of at most this size
  Tick time_limit = 0;                  // 0: none
  Tick power_window = 1'000'000;        // windows of the power profile (peak power): 1 us
  // Performance mode has no data to route on: moe.route draws each token's experts with
  // probability proportional to 1 / rank^routing_skew (0: uniform; the ranks are shuffled for
  // every moe.route), from a generator seeded with routing_seed.
  double routing_skew = 0.0;
  uint64_t routing_seed = 1;
  // Kernels are issued one by one by the host as they are reached (eager PyTorch), each taking
  // chip.launch.host; otherwise all at once (a CUDA graph). Only barriers with `kernel` count.
  bool eager_launch = false;
};

// Runs callbacks at future times (signal deliveries, DMA chunk stages).
class Scheduler : public sc_core::sc_module {
 public:
  SC_HAS_PROCESS(Scheduler);
  explicit Scheduler(sc_core::sc_module_name name);
  void at(Tick t, std::function<void()> fn);

 private:
  void run();
  struct Item {
    Tick t;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Item& o) const { return t != o.t ? t > o.t : seq > o.seq; }
  };
  std::priority_queue<Item, std::vector<Item>, std::greater<>> queue_;
  uint64_t seq_ = 0;
  sc_core::sc_event event_;
};

enum class Unit : uint8_t { Dma, Matmul, Vector, Comm, None };

// An instruction between issue and completion.
struct Op {
  uint64_t seq = 0;
  Unit unit = Unit::None;
  size_t pc = 0;
  const isa::Instr* in = nullptr;
  std::array<int64_t, isa::kMaxFields> v{};  // field values, registers applied
  std::array<isa::Access, 8> acc{};
  int naccess = 0;
  Tick issued = 0;
  int pending_chunks = 0;  // DMA
  int region = 0;          // the region instance it is charged to (Attribution)
};

class Tile;
class Chip;

// The systolic arrays of a tile: a pipeline that accepts a MATMUL once the previous one's
// occupancy has passed, and finishes each at its latency (in order).
class MatmulUnit : public sc_core::sc_module {
 public:
  SC_HAS_PROCESS(MatmulUnit);
  MatmulUnit(sc_core::sc_module_name name, Tile& tile);
  bool full() const { return queue_.size() >= 2; }
  void push(Op* op);

 private:
  void run();
  Tile& tile_;
  std::deque<Op*> queue_;
  std::deque<std::pair<Tick, Op*>> running_;  // completion time, op
  Tick accept_ = 0;
  sc_core::sc_event event_;
  double& busy_;
  double& ops_;
  double& sram_read_;
  double& sram_write_;
  std::array<double*, isa::kDtypeCount> macs_{};
  // Per input dtype the arrays take, MACs per PE per cycle (arch::array_pack); the arrays' shape.
  std::array<int64_t, isa::kDtypeCount> pack_{};
  arch::ArrayShape shape_{};
  int slot_;
};

// The vector unit: a pipeline over `lanes` elements per cycle, reading and writing SRAM
// through the shared ports.
class VectorUnit : public sc_core::sc_module {
 public:
  SC_HAS_PROCESS(VectorUnit);
  VectorUnit(sc_core::sc_module_name name, Tile& tile);
  bool full() const { return queue_.size() >= 2; }
  void push(Op* op);

 private:
  void run();
  Tile& tile_;
  std::deque<Op*> queue_;
  std::deque<std::pair<Tick, Op*>> running_;
  Tick accept_ = 0;
  sc_core::sc_event event_;
  double& busy_;
  double& ops_;
  double& elements_;
  int slot_;
};

// One DMA engine: holds up to queue_depth transfers, splits them into chunks issued round robin
// at bytes_per_cycle, with up to queue_depth chunks in flight.
class DmaEngine : public sc_core::sc_module {
 public:
  SC_HAS_PROCESS(DmaEngine);
  DmaEngine(sc_core::sc_module_name name, Tile& tile, int index);
  ~DmaEngine() override;
  size_t load() const { return queue_.size() + active_.size(); }
  bool full() const;
  void push(Op* op);

 private:
  struct Transfer;
  struct Chunk;
  void run();
  void issue_chunk(Transfer& t);
  void finish_chunk(Transfer* t, uint64_t row, uint64_t rows, uint64_t offset, uint64_t bytes);
  Tile& tile_;
  std::deque<Op*> queue_;
  std::deque<std::unique_ptr<Transfer>> active_;
  size_t cursor_ = 0;  // round-robin position among active transfers
  int outstanding_ = 0;
  Tick issue_free_ = 0;
  sc_core::sc_event event_;
  double& busy_;
  double& bytes_;
  double& transfers_;
  int slot_;
  std::vector<int> part_of_port_;  // scratch of issue_chunk: per HBM port, its part or -1
};

// The chip's end of the chip-to-chip links: executes the send and recv instructions of every
// tile. A send reads its data from the tile's SRAM, shared memory or HBM piece by piece and
// hands each piece to the fabric; it completes (and signals its semaphore) when the last has
// left. Messages are matched to recvs by sender and tag, in order; a piece that arrives before
// its recv waits in the unit (eager), and is written once the recv names its destination. A
// recv completes when its last piece is written.
class CommUnit : public sc_core::sc_module, public CommIf {
 public:
  CommUnit(sc_core::sc_module_name name, Chip& chip);
  sc_core::sc_port<FabricIf, 1, sc_core::SC_ZERO_OR_MORE_BOUND> fabric;  // unbound on a one-chip system
  sc_core::sc_export<CommIf> port;  // the fabric's way in: this unit

  void push(Tile& tile, Op* op);  // a send or recv issued by `tile`
  void arrive(Piece piece) override;
  // Messages still unmatched or incomplete, each naming both ends (empty when none).
  std::string pending_report() const;

 private:
  struct Recv {
    Tile* tile = nullptr;
    Op* op = nullptr;  // until it completes (then the tile reuses it)
    size_t pc = 0;
    uint64_t bytes = 0, written = 0;
    Tick done = 0;
  };
  struct Message {
    std::vector<Piece> waiting;  // arrived before the recv
    uint64_t bytes = 0, arrived = 0;
    int src_tile = -1;
    Recv recv;
  };
  // Writes a piece of a posted message; returns whether that completed it.
  bool write(Message& m, const Piece& p);
  void finish(Tile& tile, Op* op, Tick at, const char* what);

  Chip& chip_;
  std::map<std::pair<int, int64_t>, uint64_t> sent_;    // (dst, tag) -> messages sent
  std::map<std::pair<int, int64_t>, uint64_t> posted_;  // (src, tag) -> recvs posted
  std::map<std::tuple<int, int64_t, uint64_t>, Message> messages_;  // (src, tag, message)
  double& sent_bytes_;
  double& received_bytes_;
};

class Tile : public sc_core::sc_module {
 public:
  SC_HAS_PROCESS(Tile);
  Tile(sc_core::sc_module_name name, Chip& chip, int index);
  // Starts the tile's stream at `start`.
  void load(const isa::Stream* stream, Tick start);

  // Called by units when an op completes; frees its scoreboard entry.
  void complete(Op* op);
  // A semaphore signal arriving (possibly from another tile).
  void signal(int sem, int64_t count);
  void barrier_release();

  bool halted() const { return halted_; }
  std::string blocked_reason() const;  // for the deadlock report
  int index() const { return index_; }
  Chip& chip() { return chip_; }
  const arch::Arch& arch() const;
  Clock clock() const;
  SramPorts& sram() { return sram_; }
  Memory* memory();  // functional storage of this tile's SRAM (nullptr in performance mode)
  // What moe.route writes and ld reads: the SRAM in functional mode; in performance mode a
  // store of its own, since those values steer control flow.
  Memory& control_memory();
  // moe.route: from the data in functional mode, drawn from the routing distribution otherwise.
  void route(const int64_t* v);
  Stats& stats();
  const std::string& prefix() const { return prefix_; }
  Trace* trace();
  int trace_track(Unit u) const { return tracks_[size_t(u)]; }
  // The activity of the region instance an op is charged to.
  Activity& activity(const Op& op);

 private:
  enum class Block { None, Issue, Hazard, UnitFull, Semaphore, Barrier, Halting, Nop };
  void step();
  bool issue_memory_op(const isa::Instr& in, Unit unit);
  bool hazard(const Op& op) const;
  bool load_register(const isa::Instr& in);  // ld; false while an earlier write is in flight
  size_t end_of_loop(size_t loop_pc) const;
  void block(Block why);
  void unblock(Tick now);
  void deliver_ready_signals();
  void send_signal(int64_t tile, int64_t sem, int64_t count);
  Op* new_op();
  void free_op(Op* op);

  Chip& chip_;
  int index_;
  std::string prefix_;
  const isa::Stream* stream_ = nullptr;
  size_t pc_ = 0;
  std::array<int64_t, isa::kNumRegs> regs_{};
  struct Loop {
    size_t start;
    int64_t remaining;
  };
  std::vector<Loop> loops_;
  Memory control_;         // performance mode: moe.route's counts (ld reads them)
  uint64_t routes_ = 0;    // moe.route instructions executed (seeds the n-th one's draw)
  std::array<int64_t, isa::kNumSems> sems_{};
  bool halted_ = false;
  int region_ = 0;  // the region instance its instructions are charged to
  Block blocked_ = Block::None;
  Tick blocked_since_ = 0;
  Tick next_issue_ = 0;
  uint64_t next_seq_ = 1;
  std::vector<Op*> inflight_;
  Op* waiting_ = nullptr;  // the instruction at pc_, decoded, held by a hazard or a full unit
  std::deque<Op> op_pool_;
  std::vector<Op*> free_ops_;
  // Signals held until earlier instructions of a unit complete (sem.signal after=...).
  struct PendingSignal {
    uint64_t after_seq;
    Unit unit;  // Unit::None: any unit
    int64_t tile, sem, count;
  };
  std::vector<PendingSignal> pending_signals_;
  sc_core::sc_event wake_;
  std::array<int, 3> tracks_{};  // trace tracks of the DMA engines, arrays and vector unit

  SramPorts sram_;
  MatmulUnit matmul_;
  VectorUnit vector_;
  std::vector<std::unique_ptr<DmaEngine>> dma_;

  double& instructions_;
  double& stall_hazard_;
  double& stall_unit_;
  double& stall_sem_;
  double& stall_barrier_;
  double& halt_time_;
  friend class MatmulUnit;
  friend class VectorUnit;
  friend class DmaEngine;
};

class Chip : public sc_core::sc_module {
 public:
  Chip(sc_core::sc_module_name name, const arch::Arch& a, int index, const SimOptions& opt, Stats& stats,
       ChipMemory* memory, Trace* trace);
  void load(const isa::Program& p);
  // Under eager launch, when the host has issued kernel n (0 first) of the program; else 0.
  Tick issued(int64_t kernel) const;

  const arch::Arch& arch() const { return arch_; }
  const SimOptions& options() const { return opt_; }
  // Performance mode: the experts of a tile's n-th moe.route (sim::draw_routing), drawn once for
  // all the chip's tiles, which route alike.
  const std::vector<int32_t>& routing_draw(uint64_t n, int64_t rows, int64_t experts, int64_t k);
  Stats& stats() { return stats_; }
  Scheduler& scheduler() { return scheduler_; }
  Noc& noc() { return noc_; }
  Hbm& hbm() { return hbm_; }
  HbmCache& hbm_cache() { return hbm_cache_; }
  ChipMemory* memory() { return memory_; }
  Trace* trace() { return trace_; }
  Tile& tile(int64_t i) { return *tiles_[size_t(i)]; }
  int64_t tiles() const { return int64_t(tiles_.size()); }
  int index() const { return index_; }
  Clock clock() const { return clock_; }
  const std::string& prefix() const { return prefix_; }
  int64_t shared_instance(int64_t tile) const;
  int hbm_track(int64_t pc) const { return hbm_tracks_[size_t(pc)]; }
  Tick shared_access(int64_t instance, Tick t, uint64_t bytes, bool write, Activity& act);
  // A contiguous access by the comm unit to `space` (an SRAM: tile `tile`'s) from `t`; returns
  // when it ends. HBM accesses go straight to the channels (the unit sits by the controllers).
  Tick local_access(isa::Space space, int64_t tile, uint64_t addr, uint64_t bytes, bool write, Tick t, Activity& act);
  CommUnit& comm() { return comm_; }
  // Functional mode: the bytes of `space` as tile `tile` sees them (its SRAM, its shared-memory
  // instance, the HBM).
  Memory& storage(isa::Space space, int64_t tile);
  Slots& slots() { return slots_; }
  Attribution& attribution() { return *attribution_; }
  // A tile began region instance `r` before any other: records a snapshot if asked for.
  void region_began(int r);
  const std::vector<Snapshot>& snapshots() const { return snapshots_; }
  PowerMeter& meter() { return meter_; }
  Tick shared_duration(uint64_t bytes) const {
    return seconds_to_ticks(double(bytes) / arch_.chip.shared_memory.bandwidth);
  }

  // `kernel`: the barrier ends a kernel (chip.launch: the gap, and under eager launch the host).
  void barrier_arrive(int id, int count, bool kernel, Tile& tile);
  bool all_halted() const;
  std::string deadlock_report() const;
  // Drops reservations that ended before now from every timeline, at most once per simulated
  // microsecond, so they stay short however long the run.
  void tidy(Tick now);

  // Sets the HBM stats from the channels' counters.
  void collect_hbm_stats();

 private:
  const arch::Arch& arch_;
  int index_;
  std::string prefix_;
  const SimOptions& opt_;
  std::vector<std::vector<int32_t>> routing_draws_;  // by call
  Stats& stats_;
  ChipMemory* memory_;
  Trace* trace_;
  Clock clock_;
  PowerMeter meter_;
  Scheduler scheduler_;
  Slots slots_;
  Noc noc_;
  Hbm hbm_;
  HbmCache hbm_cache_;
  std::vector<std::unique_ptr<Timeline>> shared_ports_;
  std::vector<double*> shared_bytes_;
  std::vector<int> shared_slots_;
  // HBM totals (set from the channels by collect_hbm_stats).
  double& hbm_read_;
  double& hbm_write_;
  double& hbm_hits_;
  double& hbm_misses_;
  double& hbm_conflicts_;
  double& hbm_refreshes_;
  double& hbm_busy_;
  struct Barrier {
    int count = 0;
    std::vector<Tile*> waiting;
    Tick first_arrival = 0;
  };
  std::array<Barrier, isa::kNumBarriers> barriers_;
  int64_t kernels_ended_ = 0;
  CommUnit comm_;
  std::vector<std::unique_ptr<Tile>> tiles_;
  std::vector<int> hbm_tracks_;
  int barrier_track_ = -1;  // a slice from each barrier's first arrival to its release
  Tick tidied_ = 0;
  std::unique_ptr<Attribution> attribution_;
  std::vector<Snapshot> snapshots_;
};

}  // namespace tessera::sim
