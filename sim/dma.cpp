// DMA engines. A transfer is cut into chunks of whole rows (or pieces of a long row), at most
// SimOptions::dma_chunk_bytes each. An engine holds up to queue_depth transfers, issues their
// chunks round robin at bytes_per_cycle, and keeps up to queue_depth chunks in flight. Each chunk:
//   1. reads its source: HBM pseudo-channels (requests reach the controllers after the NoC
//      latency), a tile's SRAM ports, or the shared memory;
//   2. crosses the NoC from where the data is to where it goes, reserving every link;
//   3. writes its destination: SRAM ports or shared memory at once; HBM channels when the data
//      arrives there (a scheduled stage, so the channels see requests in time order).
// Timing never looks at the data; in functional mode the bytes move when the chunk completes.
#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "sim/chip.hpp"
#include "sim/functional.hpp"

namespace tessera::sim {

using isa::Opcode;
using isa::Space;
using sc_core::sc_module_name;

namespace {
constexpr Opcode D = Opcode::Dma;
constexpr int kDst = isa::field_index(D, "dst"), kSrc = isa::field_index(D, "src");
constexpr int kDstSpace = isa::field_index(D, "dst_space"), kDstTile = isa::field_index(D, "dst_tile");
constexpr int kSrcSpace = isa::field_index(D, "src_space"), kSrcTile = isa::field_index(D, "src_tile");
constexpr int kD0 = isa::field_index(D, "d0"), kD1 = isa::field_index(D, "d1"), kD2 = isa::field_index(D, "d2");
constexpr int kD3 = isa::field_index(D, "d3"), kSs1 = isa::field_index(D, "ss1"), kDs1 = isa::field_index(D, "ds1");
constexpr int kSdt = isa::field_index(D, "sdt"), kTranspose = isa::field_index(D, "transpose");
constexpr int kSem = isa::field_index(D, "sem"), kSemTile = isa::field_index(D, "sem_tile");

// Where data sits or goes on the NoC, and how much of it.
// Bytes of a chunk at one NoC node: the first is available at `first`, the last at `ready`.
struct Part {
  int node;
  Tick first, ready;
  uint64_t bytes;
};

// Adds bytes at HBM port `port` (NoC node `node`) to `parts`, in the order ports first appear;
// index[port] is the port's part or -1, so that each of a chunk's granules finds its part
// without a search. Returns the part.
size_t add_hbm_part(std::vector<Part>& parts, std::vector<int>& index, int port, int node, Tick first, Tick ready,
                    uint64_t bytes) {
  int& i = index[size_t(port)];
  if (i < 0) {
    i = int(parts.size());
    parts.push_back({node, first, ready, bytes});
  } else {
    Part& p = parts[size_t(i)];
    p.first = std::min(p.first, first);
    p.ready = std::max(p.ready, ready);
    p.bytes += bytes;
  }
  return size_t(i);
}

Tick deliver(Noc& noc, const Part& p, int to, Activity& act) {
  return noc.transfer(p.first, p.ready, p.node, to, p.bytes, act);
}
}  // namespace

struct DmaEngine::Transfer {
  Op* op = nullptr;
  Space src_space = Space::Hbm, dst_space = Space::Sram;
  int64_t src_tile = -1, dst_tile = -1;  // owning tile of SRAM ends
  uint64_t src = 0, dst = 0;
  int64_t d0 = 1, d1 = 1, d2 = 1, d3 = 1;
  int64_t ss[3] = {}, ds[3] = {};
  isa::Dtype sdt = isa::Dtype::Bf16, ddt = isa::Dtype::Bf16;
  bool transpose = false;
  uint64_t src_row = 0, dst_row = 0, rows = 0;
  bool src_contiguous = false, dst_contiguous = false;
  uint64_t next_row = 0, next_offset = 0;
  int outstanding = 0;
  bool issued_all = false;
  Tick started = 0;

  uint64_t row_address(bool source, uint64_t r) const {
    const int64_t i1 = int64_t(r) % d1, i2 = (int64_t(r) / d1) % d2, i3 = int64_t(r) / (d1 * d2);
    const int64_t* s = source ? ss : ds;
    if (!source && transpose) return dst + uint64_t(i2 * s[1] + i3 * s[2]) + uint64_t(i1) * (dst_row / uint64_t(d0));
    return (source ? src : dst) + uint64_t(i1 * s[0] + i2 * s[1] + i3 * s[2]);
  }
  // Calls fn(row_address(source, r)) for r in [row, row + n) (not a transposed destination),
  // stepping the indices: a chunk of narrow rows would otherwise divide three times a row.
  template <class F>
  void for_rows(bool source, uint64_t row, uint64_t n, F&& fn) const {
    int64_t i1 = int64_t(row) % d1, i2 = (int64_t(row) / d1) % d2, i3 = int64_t(row) / (d1 * d2);
    const int64_t* s = source ? ss : ds;
    const uint64_t base = source ? src : dst;
    for (uint64_t k = 0; k < n; ++k) {
      fn(base + uint64_t(i1 * s[0] + i2 * s[1] + i3 * s[2]));
      if (++i1 == d1) {
        i1 = 0;
        if (++i2 == d2) i2 = 0, ++i3;
      }
    }
  }
};

DmaEngine::DmaEngine(sc_module_name name, Tile& tile, int index)
    : sc_core::sc_module(name),
      tile_(tile),
      busy_(tile.stats().add(fmt::format("{}.dma{}.busy_ps", tile.prefix(), index), "ps", "time the engine spent issuing")),
      bytes_(tile.stats().add(fmt::format("{}.dma{}.bytes", tile.prefix(), index), "bytes", "bytes moved")),
      transfers_(tile.stats().add(fmt::format("{}.dma{}.transfers", tile.prefix(), index), "count", "DMA instructions")),
      slot_(tile.chip().slots().add(Resource::Dma)),
      part_of_port_(size_t(tile.chip().noc().hbm_ports()), -1) {
  SC_METHOD(run);
  sensitive << event_;
  dont_initialize();
}

DmaEngine::~DmaEngine() = default;

bool DmaEngine::full() const { return int64_t(load()) >= tile_.arch().chip.tile.dma.queue_depth; }

void DmaEngine::push(Op* op) {
  queue_.push_back(op);
  event_.notify(sc_core::SC_ZERO_TIME);
}

void DmaEngine::run() {
  const Tick now = now_ticks();
  const int64_t depth = tile_.arch().chip.tile.dma.queue_depth;
  // Every queued transfer is active; chunks are issued round robin among those with chunks
  // left, so a small transfer queued behind a large one is not starved.
  while (!queue_.empty()) {
    Op* op = queue_.front();
    queue_.pop_front();
    auto t = std::make_unique<Transfer>();
    const auto& v = op->v;
    t->op = op;
    t->src_space = static_cast<Space>(v[kSrcSpace]);
    t->dst_space = static_cast<Space>(v[kDstSpace]);
    t->src_tile = v[kSrcTile] == int64_t(isa::kTileSelf) ? tile_.index() : v[kSrcTile];
    t->dst_tile = v[kDstTile] == int64_t(isa::kTileSelf) ? tile_.index() : v[kDstTile];
    t->src = uint64_t(v[kSrc]);
    t->dst = uint64_t(v[kDst]);
    t->d0 = v[kD0], t->d1 = v[kD1], t->d2 = v[kD2], t->d3 = v[kD3];
    for (int i = 0; i < 3; ++i) t->ss[i] = v[size_t(kSs1 + i)], t->ds[i] = v[size_t(kDs1 + i)];
    t->sdt = static_cast<isa::Dtype>(v[kSdt]);
    t->ddt = isa::dma_dst_dtype(*op->in);
    t->transpose = v[kTranspose] != 0;
    t->src_row = isa::dtype_bytes(t->sdt, size_t(t->d0));
    t->dst_row = isa::dtype_bytes(t->ddt, size_t(t->d0));
    t->rows = uint64_t(t->d1 * t->d2 * t->d3);
    auto contiguous = [&](const int64_t* s, uint64_t row) {
      return (t->d1 == 1 || uint64_t(s[0]) == row) && (t->d2 == 1 || uint64_t(s[1]) == uint64_t(t->d1) * row) &&
             (t->d3 == 1 || uint64_t(s[2]) == uint64_t(t->d1 * t->d2) * row);
    };
    t->src_contiguous = contiguous(t->ss, t->src_row);
    t->dst_contiguous = !t->transpose && contiguous(t->ds, t->dst_row);
    t->started = now;
    transfers_ += 1;
    active_.push_back(std::move(t));
  }
  while (outstanding_ < depth) {
    Transfer* next = nullptr;
    for (size_t k = 0; k < active_.size() && next == nullptr; ++k) {
      Transfer* t = active_[(cursor_ + k) % active_.size()].get();
      if (!t->issued_all) next = t, cursor_ = (cursor_ + k + 1) % active_.size();
    }
    if (next == nullptr) break;
    if (issue_free_ > now) {
      event_.notify(ticks(issue_free_ - now));
      return;
    }
    issue_chunk(*next);
  }
}

void DmaEngine::issue_chunk(Transfer& t) {
  Chip& chip = tile_.chip();
  Noc& noc = chip.noc();
  const Tick t0 = now_ticks();
  chip.tidy(t0);
  // A piece of a long row holds whole bytes of both dtypes (e.g. 4 fp6 elements in 3 bytes).
  const uint64_t sbits = uint64_t(isa::dtype_bits(t.sdt)), dbits = uint64_t(isa::dtype_bits(t.ddt));
  const uint64_t pack = std::lcm(8 / std::gcd(sbits, uint64_t(8)), 8 / std::gcd(dbits, uint64_t(8))) * sbits / 8;
  const uint64_t chunk = std::max(chip.options().dma_chunk_bytes, pack);
  const uint64_t piece = chunk - chunk % pack;

  uint64_t row = t.next_row, rows = 1, offset = 0, bytes;
  if (t.src_row <= piece) {
    rows = std::min<uint64_t>(t.rows - t.next_row, std::max<uint64_t>(1, chunk / t.src_row));
    bytes = rows * t.src_row;
    t.next_row += rows;
  } else {
    offset = t.next_offset;
    // Pieces of an HBM source end on piece boundaries, as a DMA aligns its bursts: every
    // channel then sees whole rows rather than two halves.
    const uint64_t a = t.row_address(true, row) + offset;
    const uint64_t to_boundary = t.src_space == Space::Hbm && a % pack == 0 ? piece - a % piece : piece;
    bytes = std::min(to_boundary, t.src_row - offset);
    t.next_offset += bytes;
    if (t.next_offset == t.src_row) t.next_row++, t.next_offset = 0;
  }
  t.issued_all = t.next_row == t.rows;
  const uint64_t dst_bytes = bytes * uint64_t(isa::dtype_bits(t.ddt)) / uint64_t(isa::dtype_bits(t.sdt));
  const int here = noc.tile_node(tile_.index());
  // Attribution regions live in a deque: the reference stays valid for the scheduled write.
  Activity& act = tile_.activity(*t.op);

  // Calls fn(address, bytes) for each contiguous run of one end of this chunk.
  auto runs = [&](bool source, auto&& fn) {
    const bool contiguous = source ? t.src_contiguous : t.dst_contiguous;
    const uint64_t row_bytes = source ? t.src_row : t.dst_row;
    const uint64_t part = source ? bytes : dst_bytes;
    if (rows == 1 || contiguous) {
      fn(t.row_address(source, row) + (source ? offset : offset * t.dst_row / t.src_row), part);
    } else if (!source && t.transpose) {
      // Element i0 of every row lands in destination row i0: d0 runs of `rows` elements.
      const uint64_t e = t.dst_row / uint64_t(t.d0);
      for (int64_t i0 = 0; i0 < t.d0; ++i0) fn(t.row_address(false, row) + uint64_t(i0 * t.ds[0]), rows * e);
    } else {
      t.for_rows(source, row, rows, [&](uint64_t address) { fn(address, row_bytes); });
    }
  };
  auto stride_of = [&](bool source) -> uint64_t {
    if (source ? t.src_contiguous : t.dst_contiguous) return 0;
    return uint64_t((source ? t.ss : t.ds)[0]);
  };

  // 1. Read the source.
  std::vector<Part> sources;
  switch (t.src_space) {
    case Space::Hbm: {
      Hbm& hbm = chip.hbm();
      PowerMeter& meter = chip.meter();
      Trace* tr = chip.trace();
      auto from_hbm = [&](uint64_t addr, uint64_t n) {
        hbm.split(addr, n, [&](int64_t pc, uint64_t local, uint64_t k) {
          const int node = noc.hbm_node(pc);
          const Tick done = hbm.channel(pc).access(t0 + noc.latency(here, node), local, k, false);
          const Tick start = done - hbm.geometry().data_time(k);
          if (tr) tr->busy(chip.hbm_track(pc), start, done);
          meter.add(start, done, double(k) * meter.prices().hbm);
          add_hbm_part(sources, part_of_port_, noc.hbm_port(pc), node, start, done, k);
        });
      };
      HbmCache& cache = chip.hbm_cache();
      uint64_t cached = 0;  // bytes the cache serves
      runs(true, [&](uint64_t addr, uint64_t n) {
        if (!cache.enabled()) return from_hbm(addr, n);
        uint64_t miss = 0, miss_bytes = 0;  // a run of misses goes to HBM as one access
        cache.walk(addr, n, [&](uint64_t a, uint64_t k, bool held) {
          if (held) {
            if (miss_bytes > 0) from_hbm(miss, miss_bytes), miss_bytes = 0;
            cached += k;
          } else {
            if (miss_bytes == 0) miss = a;
            miss_bytes += k;
          }
        });
        if (miss_bytes > 0) from_hbm(miss, miss_bytes);
      });
      std::fill(part_of_port_.begin(), part_of_port_.end(), -1);
      act.hbm_read += double(bytes - cached);
      if (cached > 0) {
        const int node = noc.shared_node(0);
        const Tick done = chip.shared_access(0, t0 + noc.latency(here, node), cached, false, act);
        sources.push_back({node, done - chip.shared_duration(cached), done, cached});
      }
      break;
    }
    case Space::Sram: {
      Tile& owner = chip.tile(t.src_tile);
      const uint64_t srows = rows == 1 ? 1 : rows, sbytes = rows == 1 ? bytes : t.src_row;
      const Tick done =
          owner.sram().access(t0 + noc.latency(here, noc.tile_node(t.src_tile)), srows, sbytes, stride_of(true), false, act);
      sources.push_back(
          {noc.tile_node(t.src_tile), done - owner.sram().duration(srows, sbytes, stride_of(true)), done, bytes});
      break;
    }
    case Space::Shared: {
      const int64_t inst = chip.shared_instance(tile_.index());
      const int node = noc.shared_node(inst);
      const Tick done = chip.shared_access(inst, t0 + noc.latency(here, node), bytes, false, act);
      sources.push_back({node, done - chip.shared_duration(bytes), done, bytes});
      break;
    }
    case Space::None: break;
  }
  // Conversion changes the byte count on the way.
  for (Part& s : sources) s.bytes = s.bytes * dst_bytes / std::max<uint64_t>(bytes, 1);

  Transfer* tp = &t;
  auto finish = [this, tp, row, rows, offset, bytes] { finish_chunk(tp, row, rows, offset, bytes); };
  ++t.outstanding;
  ++outstanding_;
  const Tick issue = tile_.clock().cycles(double(bytes) / tile_.arch().chip.tile.dma.bytes_per_cycle);
  issue_free_ = std::max(issue_free_, t0) + issue;
  busy_ += double(issue);
  act.busy[size_t(slot_)] += double(issue);
  bytes_ += double(bytes);

  // 2 and 3. Cross the NoC and write the destination.
  if (t.dst_space == Space::Hbm) {
    struct Write {
      int64_t pc;
      uint64_t local, n;
      size_t dest;  // the part of dests it arrives with
    };
    std::vector<Write> writes;
    std::vector<Part> dests;
    runs(false, [&](uint64_t addr, uint64_t n) {
      if (chip.hbm_cache().enabled()) chip.hbm_cache().walk(addr, n, [](uint64_t, uint64_t, bool) {});
      chip.hbm().split(addr, n, [&](int64_t pc, uint64_t local, uint64_t k) {
        writes.push_back({pc, local, k, add_hbm_part(dests, part_of_port_, noc.hbm_port(pc), noc.hbm_node(pc), 0, 0, k)});
      });
    });
    std::fill(part_of_port_.begin(), part_of_port_.end(), -1);
    // Data from many places (HBM to HBM) gathers at this tile's engine first.
    Part from = sources.size() == 1 ? sources[0] : Part{here, t0, t0, dst_bytes};
    if (sources.size() > 1) {
      for (const Part& s : sources) from.ready = std::max(from.ready, deliver(noc, s, here, act));
      from.first = from.ready;
    }
    Tick first = -1;
    for (Part& d : dests) {
      d.ready = deliver(noc, {from.node, from.first, from.ready, d.bytes}, d.node, act);
      first = first < 0 ? d.ready : std::min(first, d.ready);
    }
    chip.scheduler().at(first, [this, writes = std::move(writes), dests = std::move(dests), finish, &act] {
      Chip& c = tile_.chip();
      Tick done = now_ticks();
      for (const Write& w : writes) {
        const Tick end = c.hbm().channel(w.pc).access(dests[w.dest].ready, w.local, w.n, true);
        act.hbm_write += double(w.n);
        const Tick start = end - c.hbm().geometry().data_time(w.n);
        if (Trace* tr = c.trace()) tr->busy(c.hbm_track(w.pc), start, end);
        c.meter().add(start, end, double(w.n) * c.meter().prices().hbm);
        done = std::max(done, end);
      }
      c.scheduler().at(done, finish);
    });
    return;
  }

  int to = here;
  int64_t shared = -1;
  if (t.dst_space == Space::Sram) to = noc.tile_node(t.dst_tile);
  if (t.dst_space == Space::Shared) shared = chip.shared_instance(tile_.index()), to = noc.shared_node(shared);
  Tick first = -1, last = t0;
  for (const Part& s : sources) {
    const Tick arrive = s.first + noc.latency(s.node, to);
    first = first < 0 ? arrive : std::min(first, arrive);
    last = std::max(last, deliver(noc, s, to, act));
  }
  if (first < 0) first = t0;
  Tick done = last;
  if (t.dst_space == Space::Sram) {
    const uint64_t drows = t.transpose ? uint64_t(t.d0) : rows;
    const uint64_t dbytes = t.transpose ? rows * (t.dst_row / uint64_t(t.d0)) : (rows == 1 ? dst_bytes : t.dst_row);
    // The write starts with the first bytes; the last ones take one more port cycle.
    done = std::max({done + tile_.clock().cycles(1.0), chip.tile(t.dst_tile).sram().access(first, drows, dbytes, stride_of(false), true, act)});
  } else if (shared >= 0) {
    done = std::max(done, chip.shared_access(shared, first, dst_bytes, true, act));
  }
  chip.scheduler().at(done, finish);
}

void DmaEngine::finish_chunk(Transfer* t, uint64_t row, uint64_t rows, uint64_t offset, uint64_t bytes) {
  Chip& chip = tile_.chip();
  if (chip.memory()) {
    // Only SRAM addresses name another tile: shared memory is the issuing tile's instance.
    auto storage = [&](Space s, int64_t tile) -> Memory& { return chip.storage(s, s == Space::Sram ? tile : tile_.index()); };
    functional_dma(storage(t->src_space, t->src_tile), storage(t->dst_space, t->dst_tile), *tile_.memory(),
                   *t->op->in, t->op->v.data(), row, rows, offset, rows == 1 ? bytes : 0);
  }
  --t->outstanding;
  --outstanding_;
  if (t->issued_all && t->outstanding == 0) {
    Op* op = t->op;
    if (Trace* tr = tile_.trace()) tr->slice(tile_.trace_track(Unit::Dma), "dma", t->started, now_ticks());
    if (op->v[kSem] != int64_t(isa::kSemNone)) {
      const int64_t target = op->v[kSemTile] == int64_t(isa::kTileSelf) ? tile_.index() : op->v[kSemTile];
      tile_.send_signal(target, op->v[kSem], 1);
    }
    active_.erase(std::find_if(active_.begin(), active_.end(), [&](const auto& p) { return p.get() == t; }));
    tile_.complete(op);
  }
  event_.notify(sc_core::SC_ZERO_TIME);
}

}  // namespace tessera::sim
