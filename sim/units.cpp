// The systolic arrays and the vector unit: in-order pipelines. Each takes an instruction once
// the previous one no longer occupies its input side and finishes it after its latency.
#include <fmt/format.h>

#include <algorithm>

#include "sim/chip.hpp"
#include "sim/functional.hpp"

namespace tessera::sim {

using isa::Opcode;
using sc_core::sc_module_name;

namespace {

constexpr Opcode kMM = Opcode::Matmul;
constexpr int kM = isa::field_index(kMM, "m"), kK = isa::field_index(kMM, "k"), kN = isa::field_index(kMM, "n");
constexpr int kDtype = isa::field_index(kMM, "dtype"), kAccumulate = isa::field_index(kMM, "accumulate");
constexpr int kRows = isa::field_index(Opcode::VAdd, "rows"), kCols = isa::field_index(Opcode::VAdd, "cols");
constexpr int kLdd = isa::field_index(Opcode::VAdd, "ldd"), kDdt = isa::field_index(Opcode::VAdd, "ddt");
constexpr int kLds0 = isa::field_index(Opcode::VAdd, "lds0"), kS0dt = isa::field_index(Opcode::VAdd, "s0dt");
constexpr int kLds1 = isa::field_index(Opcode::VAdd, "lds1"), kS1dt = isa::field_index(Opcode::VAdd, "s1dt");
constexpr int kBcast = isa::field_index(Opcode::VAdd, "bcast");
constexpr int kRouteK = isa::field_index(Opcode::MoeRoute, "k");

// Runs every queued op whose time has come; returns when the unit next needs to wake.
template <class Start>
void advance(Tile& tile, std::deque<Op*>& queue, std::deque<std::pair<Tick, Op*>>& running, Tick& accept,
             sc_core::sc_event& event, Start&& start) {
  const Tick now = now_ticks();
  while (!running.empty() && running.front().first <= now) {
    Op* op = running.front().second;
    running.pop_front();
    tile.complete(op);
  }
  while (!queue.empty() && accept <= now) {
    Op* op = queue.front();
    queue.pop_front();
    auto [occupancy, latency] = start(op, now);
    accept = now + occupancy;
    // Results leave the pipeline in order.
    const Tick done = std::max(now + latency, running.empty() ? now : running.back().first);
    running.emplace_back(done, op);
  }
  Tick next = -1;
  if (!running.empty()) next = running.front().first;
  if (!queue.empty() && (next < 0 || accept < next)) next = accept;
  if (next >= 0) event.notify(ticks(std::max<Tick>(next - now, 0)));
}

}  // namespace

// ---- MatmulUnit ------------------------------------------------------------------------------

MatmulUnit::MatmulUnit(sc_module_name name, Tile& tile)
    : sc_core::sc_module(name),
      tile_(tile),
      busy_(tile.stats().add(tile.prefix() + ".sa.busy_ps", "ps", "time the arrays accept no new MATMUL (streaming)")),
      ops_(tile.stats().add(tile.prefix() + ".sa.ops", "count", "MATMUL instructions")),
      sram_read_(tile.stats().add(tile.prefix() + ".sa.sram_read_bytes", "bytes", "operand bytes the arrays read from SRAM")),
      sram_write_(tile.stats().add(tile.prefix() + ".sa.sram_write_bytes", "bytes", "accumulator bytes the arrays write to SRAM")),
      slot_(tile.chip().slots().add(Resource::Arrays)) {
  const arch::SystolicParams& sa = tile.arch().chip.tile.systolic;
  shape_ = {sa.rows, sa.cols, sa.count, sa.dataflow};
  for (int d = 1; d < isa::kDtypeCount; ++d) {
    const auto dt = static_cast<isa::Dtype>(d);
    const std::string_view cls = isa::array_dtype_class(dt);
    if (cls.empty() || !sa.macs_per_cycle.has(cls)) continue;
    pack_[size_t(d)] = arch::array_pack(sa, cls);
    macs_[size_t(d)] = &tile.stats().add(fmt::format("{}.sa.macs_{}", tile.prefix(), isa::dtype_name(dt)), "count",
                                         fmt::format("multiply-accumulates on {} inputs", isa::dtype_name(dt)));
  }
  SC_METHOD(run);
  sensitive << event_;
  dont_initialize();
}

void MatmulUnit::push(Op* op) {
  queue_.push_back(op);
  event_.notify(sc_core::SC_ZERO_TIME);
}

void MatmulUnit::run() {
  advance(tile_, queue_, running_, accept_, event_, [&](Op* op, Tick now) {
    const isa::Dtype dt = static_cast<isa::Dtype>(op->v[kDtype]);
    const int64_t m = op->v[kM], k = op->v[kK], n = op->v[kN];
    const int64_t pack = pack_[size_t(dt)];
    const arch::MatmulTiming t = arch::matmul_timing(shape_, pack, m, k, n);
    const Tick occupancy = tile_.clock().cycles(double(t.occupancy));
    const Tick latency = tile_.clock().cycles(double(t.latency));
    busy_ += double(occupancy);
    ops_ += 1;
    const double macs = double(m) * double(k) * double(n);
    *macs_[size_t(dt)] += macs;
    Activity& act = tile_.activity(*op);
    act.busy[size_t(slot_)] += double(occupancy);
    act.macs[size_t(dt)] += macs;
    if (Memory* mem = tile_.memory()) functional_matmul(*mem, *op->in, op->v.data());
    // Operand traffic on the arrays' own SRAM paths (energy): ws re-streams A for every
    // n-tile and the partial sums of every k-tile; os re-reads A per column block, B per row block.
    const double e = double(isa::dtype_bytes(dt, size_t(k))) / double(k);
    const double kt = std::ceil(double(k) / double(shape_.rows * pack)), nt = std::ceil(double(n) / double(shape_.cols));
    const double mb = std::ceil(double(m) / double(shape_.rows));
    const bool ws = shape_.dataflow == arch::Dataflow::WeightStationary;
    const bool accumulate = op->v[kAccumulate] != 0;
    const double read = double(m * k) * e * nt + double(k * n) * e * (ws ? 1.0 : mb) +
                        double(m * n) * 4.0 * ((ws ? kt - 1.0 : 0.0) + (accumulate ? 1.0 : 0.0));
    const double written = double(m * n) * 4.0 * (ws ? kt : 1.0);
    sram_read_ += read;
    sram_write_ += written;
    act.sram_read += read;
    act.sram_write += written;
    PowerMeter& meter = tile_.chip().meter();
    const EnergyPrices& price = meter.prices();
    meter.add(now, now + latency, macs * price.mac[size_t(dt)] + read * price.sram_read + written * price.sram_write);
    if (Trace* tr = tile_.trace()) tr->slice(tile_.trace_track(Unit::Matmul), "matmul", now, now + latency);
    return std::pair{occupancy, latency};
  });
}

// ---- VectorUnit ------------------------------------------------------------------------------

VectorUnit::VectorUnit(sc_module_name name, Tile& tile)
    : sc_core::sc_module(name),
      tile_(tile),
      busy_(tile.stats().add(tile.prefix() + ".vector.busy_ps", "ps", "time the vector unit accepts no new instruction")),
      ops_(tile.stats().add(tile.prefix() + ".vector.ops", "count", "vector instructions")),
      elements_(tile.stats().add(tile.prefix() + ".vector.elements", "count", "element operations (vector energy)")),
      slot_(tile.chip().slots().add(Resource::Vector)) {
  SC_METHOD(run);
  sensitive << event_;
  dont_initialize();
}

void VectorUnit::push(Op* op) {
  queue_.push_back(op);
  event_.notify(sc_core::SC_ZERO_TIME);
}

void VectorUnit::run() {
  const arch::VectorParams& vp = tile_.arch().chip.tile.vector;
  advance(tile_, queue_, running_, accept_, event_, [&](Op* op, Tick now) {
    const isa::Instr& in = *op->in;
    Activity& act = tile_.activity(*op);
    const int64_t rows = op->v[kRows], cols = op->v[kCols];
    const bool plain_copy = in.op == Opcode::VCast && in.dtype(kDdt) == in.dtype(kS0dt);
    const arch::VectorOpTiming& t = vp.op(plain_copy ? "copy" : in.def().vector_timing);
    // moe.route: a softmax (max, exp, sum) and k selection passes over the logits.
    const double passes = in.op == Opcode::MoeRoute ? double(3 + op->v[kRouteK]) : 1.0;
    const double elements = double(rows) * double(cols) * passes;
    const double compute = std::ceil(elements / (double(vp.lanes) * t.throughput));
    // Operands stream through the SRAM ports while the lanes compute.
    const bool reduce = in.op == Opcode::VRsum || in.op == Opcode::VRmax;
    const isa::Dtype ddt = in.dtype(kDdt);
    Tick sram_end = tile_.sram().access(now, uint64_t(rows), isa::dtype_bytes(ddt, size_t(reduce ? 1 : cols)),
                                        uint64_t(op->v[kLdd]), true, act);
    if (in.op != Opcode::VFill) {
      const isa::Dtype s0 = in.dtype(kS0dt);
      sram_end = std::max(sram_end, tile_.sram().access(now, uint64_t(rows), isa::dtype_bytes(s0, size_t(cols)),
                                                        uint64_t(op->v[kLds0]), false, act));
      if (in.def().fields.size() > size_t(kBcast) && in.def().fields[size_t(kBcast)].name == "bcast" &&
          static_cast<isa::Bcast>(op->v[kBcast]) != isa::Bcast::Scalar) {
        const auto bc = static_cast<isa::Bcast>(op->v[kBcast]);
        const int64_t r1 = bc == isa::Bcast::Row ? 1 : rows, c1 = bc == isa::Bcast::Col ? 1 : cols;
        sram_end = std::max(sram_end, tile_.sram().access(now, uint64_t(r1), isa::dtype_bytes(in.dtype(kS1dt), size_t(c1)),
                                                          uint64_t(op->v[kLds1]), false, act));
      }
    }
    const Tick occupancy = std::max(tile_.clock().cycles(compute), sram_end - now);
    const Tick latency = occupancy + tile_.clock().cycles(double(t.latency));
    busy_ += double(occupancy);
    ops_ += 1;
    elements_ += elements;
    act.busy[size_t(slot_)] += double(occupancy);
    act.vector_elements += elements;
    tile_.chip().meter().add(now, now + latency, elements * tile_.chip().meter().prices().vector);
    if (in.op == Opcode::MoeRoute) {
      tile_.route(op->v.data());
    } else if (Memory* mem = tile_.memory()) {
      functional_vector(*mem, in, op->v.data());
    }
    if (Trace* tr = tile_.trace()) tr->slice(tile_.trace_track(Unit::Vector), in.def().mnemonic, now, now + latency);
    return std::pair{occupancy, latency};
  });
}

}  // namespace tessera::sim
