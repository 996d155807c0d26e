#include "tools/api/run.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "arch/derived.hpp"
#include "compiler/builder.hpp"
#include "compiler/compile.hpp"
#include "compiler/emit.hpp"
#include "compiler/kernels/collective.hpp"
#include "compiler/target.hpp"
#include "isa/verify.hpp"
#include "sim/simulation.hpp"
#include "tools/api/api.hpp"
#include "tools/api/mapping.hpp"

namespace tessera::api {
namespace {

using compiler::OpKind;
using compiler::Role;

compiler::Graph gemm_graph(const RunSpec& s, isa::Dtype dt) {
  if (s.shape.size() != 3 || *std::min_element(s.shape.begin(), s.shape.end()) <= 0) {
    throw std::runtime_error("--op gemm needs --shape M,K,N with three positive sizes");
  }
  const int64_t m = s.shape[0], k = s.shape[1], n = s.shape[2];
  compiler::Graph g;
  g.name = s.describe();
  g.meta = {{"model", "gemm"}, {"shape", fmt::format("{}x{}x{}", m, k, n)}};
  const int x = g.value("x", {m, k}, dt, Role::Input);
  const int w = g.value("w", {n, k}, dt, Role::Weight);             // PyTorch layout: y = x w^T
  const int y = g.op(OpKind::Linear, "gemm", {x, w}, "y", {m, n});  // bf16 out, as a Linear layer's
  g.inputs = {x};
  g.outputs = {y};
  return g;
}

compiler::Workload workload_of(const RunSpec& s) {
  return make_workload(s.phase, s.batch, s.seq, s.context, 0, s.sequences);
}

compiler::Graph attention_graph(const RunSpec& s, const compiler::Workload& w) {
  if (s.shape.size() != 3 || *std::min_element(s.shape.begin(), s.shape.end()) <= 0 ||
      s.shape[0] % s.shape[1] != 0) {
    throw std::runtime_error(
        "--op attention needs --shape HEADS,KV_HEADS,HEAD_DIM (positive; HEADS a multiple of "
        "KV_HEADS)");
  }
  const int64_t heads = s.shape[0], kv_heads = s.shape[1], d = s.shape[2];
  const int64_t tokens = w.tokens(), capacity = w.capacity();
  const std::vector<compiler::SequenceStep> steps = w.steps();
  const int64_t batch = int64_t(steps.size());
  compiler::Graph g;
  g.name = s.describe();
  g.meta = {{"model", "attention"}, {"phase", s.phase}};
  const int q = g.value("q", {tokens, heads * d}, isa::Dtype::Bf16, Role::Input);
  const int k = g.value("k", {tokens, kv_heads * d}, isa::Dtype::Bf16, Role::Input);
  const int v = g.value("v", {tokens, kv_heads * d}, isa::Dtype::Bf16, Role::Input);
  const int kc =
      g.value("kv_cache.k", {batch, kv_heads, capacity, d}, isa::Dtype::Bf16, Role::KvCache);
  const int vc =
      g.value("kv_cache.v", {batch, kv_heads, capacity, d}, isa::Dtype::Bf16, Role::KvCache);
  std::map<std::string, compiler::AttrValue> attrs{{"batch", batch}, {"heads", heads},     {"kv_heads", kv_heads},
                                                   {"head_dim", d},  {"causal", int64_t(1)}, {"capacity", capacity}};
  if (std::adjacent_find(steps.begin(), steps.end(), std::not_equal_to<>()) == steps.end()) {
    attrs["seq"] = steps[0].tokens, attrs["past"] = steps[0].past;
  } else {  // a ragged step
    std::vector<int64_t> seq_lens, past_lens;
    for (const compiler::SequenceStep& step : steps) seq_lens.push_back(step.tokens), past_lens.push_back(step.past);
    attrs["seq_lens"] = seq_lens, attrs["past_lens"] = past_lens;
  }
  const int out = g.op(OpKind::Attention, "attention", {q, k, v, kc, vc}, "out", {tokens, heads * d}, attrs);
  g.v(out).role = Role::Output;
  g.inputs = {q, k, v};
  g.outputs = {out};
  return g;
}

uint64_t copy_bytes(const RunSpec& s) {
  if (s.shape.size() != 1 || s.shape[0] <= 0)
    throw std::runtime_error("--op copy needs --shape BYTES (positive)");
  return uint64_t(s.shape[0]);
}

// A device-to-device copy of `bytes`, as a bandwidth benchmark does: every tile copies an even
// share, HBM to HBM, in DMAs of at most 4 MiB, two in flight.
isa::Program copy_program(const arch::Arch& a, const RunSpec& s) {
  const uint64_t bytes = copy_bytes(s);
  compiler::ProgramBuilder pb(a);
  const uint64_t src = pb.hbm_region("src", isa::RegionKind::Io, bytes);
  const uint64_t dst = pb.hbm_region("dst", isa::RegionKind::Io, bytes);
  const int sem = pb.sem_alloc();
  constexpr uint64_t kPiece = 4 << 20;
  for (int t = 0; t < pb.tiles(); ++t) {
    const uint64_t b0 = bytes * uint64_t(t) / uint64_t(pb.tiles()),
                   b1 = bytes * uint64_t(t + 1) / uint64_t(pb.tiles());
    int64_t issued = 0;
    for (uint64_t at = b0; at < b1; at += kPiece, ++issued) {
      if (issued >= 2) pb.emit(t, compiler::sem_wait(sem));
      compiler::Block blk;
      blk.d0 = int64_t(std::min(kPiece, b1 - at));
      pb.emit(t,
              compiler::dma(compiler::hbm(int64_t(dst + at)), compiler::hbm(int64_t(src + at)), blk,
                            isa::Dtype::Int8, isa::Dtype::None, {sem, int64_t(isa::kTileSelf)}));
    }
    if (issued > 0) pb.emit(t, compiler::sem_wait(sem, std::min<int64_t>(issued, 2)));
  }
  return pb.take();
}

// The program with the layer loop cut to `n` iterations (on every chip).
// In place: a long prefill's program is hundreds of MB, and a copy doubled the peak memory.
void set_layers(isa::Program& p, const std::vector<std::vector<size_t>>& loops, int64_t n) {
  static constexpr int kCount = isa::field_index(isa::Opcode::Loop, "count");
  for (size_t c = 0; c < loops.size(); ++c) {
    for (size_t t = 0; t < loops[c].size(); ++t) {
      isa::Instr& in = p.stream(uint32_t(c), uint32_t(t)).code.at(loops[c][t]);
      if (in.op != isa::Opcode::Loop)
        throw std::logic_error("the layer loop is not where the compiler said");
      in.f[kCount] = n;
    }
  }
}

double hbm_capacity_used(const compiler::CompileResult& c) {
  return double(c.weight_bytes + c.kv_bytes + c.activation_bytes);
}

// Options every run checks.
void check_options(const RunOptions& options) {
  if (options.pricing != "owned" && options.pricing != "cloud") {
    throw std::runtime_error("pricing must be owned or cloud, got '" + options.pricing + "'");
  }
  if (options.launch != "graph" && options.launch != "eager") {
    throw std::runtime_error("launch must be graph or eager, got '" + options.launch + "'");
  }
  if (!(options.routing_skew >= 0.0 && std::isfinite(options.routing_skew))) {
    throw std::runtime_error(fmt::format("routing_skew must be a finite number >= 0 (0: uniform), got {}",
                                         options.routing_skew));
  }
}

compiler::CompileOptions compile_options(const RunSpec& spec, const RunOptions& options);

// The request's own mistakes, which every system would report alike (run() finds them too, one
// system at a time).
void check_request(const RunSpec& spec, const RunOptions& options) {
  check_options(options);
  compile_options(spec, options);
  const isa::Dtype dtype = parse_dtype("dtype", spec.dtype);
  parse_dtype("kv_dtype", spec.kv_dtype);
  if (!spec.model.empty()) {
    compiler::build_graph(compiler::load_model_config(spec.model),
                          workload_of(spec));
  } else if (spec.op == "gemm") {
    gemm_graph(spec, dtype);
  } else if (spec.op == "attention") {
    attention_graph(spec, workload_of(spec));
  } else if (spec.op == "copy") {
    copy_bytes(spec);
  }
}

}  // namespace

std::string RunSpec::describe() const {
  if (!model.empty()) {
    const std::string kernels = framework == "fused" ? "" : " (" + framework + ")";
    if (phase == "mixed") {  // "llama-3-8b mixed 2 prefill (700 tokens) + 30 decode"
      int64_t prefills = 0, prompt_tokens = 0;
      for (const compiler::SequenceStep& s : sequences) {
        if (s.tokens > 1) ++prefills, prompt_tokens += s.tokens;
      }
      return fmt::format("{} mixed {} prefill ({} tokens) + {} decode{}", model, prefills, prompt_tokens,
                         int64_t(sequences.size()) - prefills, kernels);
    }
    return phase == "prefill" ? fmt::format("{} prefill b{} seq{}{}", model, batch, seq, kernels)
                              : fmt::format("{} decode b{} ctx{}{}", model, batch, context, kernels);
  }
  if (op == "gemm" && shape.size() == 3)
    return fmt::format("gemm {}x{}x{}", shape[0], shape[1], shape[2]);
  if (op == "copy" && shape.size() == 1) return fmt::format("copy {} bytes", shape[0]);
  if (op == "attention" && shape.size() == 3) {
    return fmt::format(
        "attention {} b{} h{}/{} d{} {}", phase, batch, shape[0], shape[1], shape[2],
        phase == "prefill" ? fmt::format("seq{}", seq) : fmt::format("ctx{}", context));
  }
  return op;
}

namespace {

// One program simulated: an operator, a model step, or one microbatch of a pipeline stage; or
// (composed) a pipeline's step.
struct Simulated {
  Breakdown b;
  sim::Stats stats;
  sim::Slots slots;
  double peak_power_w = 0;  // with the chips' static power
  double hbm_used = 0;      // bytes per chip
  int64_t layers = 0, simulated = 0;
  std::vector<std::string> rounds_sampled;
};

compiler::CompileOptions compile_options(const RunSpec& spec, const RunOptions& options) {
  compiler::CompileOptions co;
  co.weight_dtype = parse_dtype("dtype", spec.dtype);
  co.kv_dtype = parse_dtype("kv_dtype", spec.kv_dtype);
  co.sample_rounds = options.sample_rounds;
  co.capacity_factor = spec.capacity_factor;
  if (spec.framework != "fused" && spec.framework != "pytorch")
    throw std::runtime_error("framework must be fused or pytorch, got '" + spec.framework + "'");
  co.framework = spec.framework == "pytorch" ? compiler::Framework::PyTorch : compiler::Framework::Fused;
  co.verify = false;  // the program simulated is verified in simulate(): the layers it runs
  return co;
}

// Simulates a compiled program (its layer loop sampled as the options say); writes the trace
// when asked.
Simulated simulate(const arch::Arch& a, compiler::CompileResult& compiled, const RunOptions& options, bool traced) {
  sim::SimOptions so;
  so.power_window = sim::seconds_to_ticks(options.power_window);
  so.routing_skew = options.routing_skew, so.routing_seed = options.routing_seed;
  so.eager_launch = options.launch == "eager";
  std::unique_ptr<sim::Trace> trace;
  if (traced && !options.trace.empty()) trace = std::make_unique<sim::Trace>();
  Simulated out;
  out.layers = compiled.layers_looped;
  const bool sampled = options.sample_layers >= 2 && out.layers > options.sample_layers;
  out.simulated = sampled ? options.sample_layers : out.layers;
  if (sampled) {
    const auto [first, after] = layer_bounds(compiled.marks);
    so.snapshot_marks = {first, after};
  }
  sim::Simulation simulation(a, sim::Mode::Performance, so);
  if (sampled) set_layers(compiled.program, compiled.layer_loops, out.simulated);
  isa::verify_or_throw(compiled.program, compiler::target_for(a));
  const sim::RunResult last = simulation.run(compiled.program, trace.get());
  out.b = attribute(last, compiled.marks, out.layers, out.simulated);
  out.stats = sampled ? extrapolate_stats(last, compiled.marks, out.layers, out.simulated) : last.stats;
  out.slots = last.slots;
  const sim::EnergyPrices prices = sim::EnergyPrices::from(a);
  out.peak_power_w = sim::peak_power(last.energy_windows, last.power_window, last.time,
                                     (prices.static_power + prices.active_power) * double(a.system.chips));
  out.hbm_used = hbm_capacity_used(compiled);
  for (const compiler::MarkedOp& m : compiled.marks) {
    if (m.instance_weights.empty()) continue;
    std::string line = fmt::format("{}: {} of {} rounds", m.name, m.rounds_emitted, m.rounds);
    if (m.instances_per_layer() > m.rounds_emitted)  // rounds of the kernels within them sampled too
      line += fmt::format(", {} parts simulated", m.instances_per_layer());
    out.rounds_sampled.push_back(line);
  }
  if (trace) {
    trace_operators(*trace, last, out.b, compiled.marks, arch::derive(a), out.layers, out.simulated);
    std::ofstream file(options.trace);
    if (!file) throw std::runtime_error(options.trace + ": cannot write");
    trace->write(file);
  }
  return out;
}

// A stat of one part of the system renamed for another part like it, `offset` chips on (and
// `domains` scale-up domains on: their switches are sw1, sw2, ...): "system.chip3.", and the
// nodes of "system.link.c0-c1." and "system.link.c3-sw2.", move along. A part simulated as a
// system of one domain calls that domain's switch "sw": `own_switch` renames it.
std::string offset_chips(const std::string& name, int64_t offset, int64_t domains, const std::string& own_switch) {
  auto node = [&](const std::string& n) {
    if (n == "sw" && !own_switch.empty()) return own_switch;
    const bool chip = n.size() > 1 && n[0] == 'c', domain_switch = n.size() > 2 && n.starts_with("sw");
    if (!chip && !domain_switch) return n;
    const size_t digits = chip ? 1 : 2;
    if (!std::all_of(n.begin() + long(digits), n.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); }))
      return n;
    return n.substr(0, digits) + std::to_string(std::stoll(n.substr(digits)) + (chip ? offset : domains));
  };
  if (name.starts_with("system.chip")) {
    const size_t dot = name.find('.', 7);
    return "system." + node("c" + name.substr(11, dot - 11)).replace(0, 1, "chip") + name.substr(dot);
  }
  if (name.starts_with("system.link.")) {
    const size_t dash = name.find('-', 12), dot = name.find('.', 12);
    if (dash == std::string::npos || dot == std::string::npos || dash > dot) return name;
    return "system.link." + node(name.substr(12, dash - 12)) + "-" + node(name.substr(dash + 1, dot - dash - 1)) +
           name.substr(dot);
  }
  return name;
}

// Stats summed by name: each added source scaled by `k`, renamed by offset_chips.
class StatsSum {
 public:
  void add(const sim::Stats& from, double k, int64_t offset, int64_t domains, const std::string& own_switch = "") {
    for (const sim::Stat& s : from.all()) {
      const std::string name = offset_chips(s.name, offset, domains, own_switch);
      auto it = index_.find(name);
      if (it == index_.end()) it = index_.emplace(name, &sum_.add(name, s.unit, s.desc)).first;
      *it->second += k * s.value;
    }
  }
  sim::Stats take() { return std::move(sum_); }

 private:
  sim::Stats sum_;
  std::map<std::string, double*> index_;
};

// The hidden state of a microbatch crossing from chips [from, from + tp) to the chips tp on, all
// at once, on the links of `a`.
sim::RunResult simulate_transfer(const arch::Arch& a, int64_t from, int64_t tp, uint64_t bytes) {
  std::vector<compiler::ProgramBuilder> chips;
  for (int c = 0; c < int(a.system.chips); ++c) {
    compiler::ProgramBuilder& pb = chips.emplace_back(a, c);
    const uint64_t buf = pb.hbm_region("hidden", isa::RegionKind::Io, bytes);
    const int sem = pb.sem_alloc();
    if (c >= from && c < from + 2 * tp) {
      const bool sends = c < from + tp;
      const int64_t peer = sends ? c + tp : c - tp;
      pb.emit(0, sends ? compiler::send(compiler::hbm(int64_t(buf)), int64_t(bytes), peer, 1, sem)
                       : compiler::recv(compiler::hbm(int64_t(buf)), int64_t(bytes), peer, 1, sem));
      pb.emit(0, compiler::sem_wait(sem));
    }
  }
  const isa::Program p = compiler::take_system(chips);
  isa::verify_or_throw(p, compiler::target_for(a));
  return sim::Simulation(a, sim::Mode::Performance).run(p);
}

// The part of a system that a transfer between chips [first, first + 2 tp) needs, as a system of
// its own whose chip c is the system's chip `base` + c. On a switch or a full mesh that is just
// those chips (whole scale-up domains when there are several; a full mesh keeps its links per
// pair of chips), so that a transfer on a rack of 72 does not simulate 72 chips; on rings and
// tori the routes go through other chips: all of them.
struct TransferSystem {
  arch::Arch arch;
  int64_t base = 0;
};
TransferSystem transfer_system(const arch::Arch& a, int64_t first, int64_t tp) {
  TransferSystem t{a, 0};
  t.arch.system.parallelism = {};
  const arch::SystemParams& sys = a.system;
  if (sys.topology != arch::Topology::Switch && sys.topology != arch::Topology::FullyConnected) return t;
  const int64_t domain = sys.domain();
  if (domain == sys.chips) {
    t.base = first;
    t.arch.system.chips = 2 * tp;
    if (sys.topology == arch::Topology::FullyConnected) {
      t.arch.system.link.count = sys.link.count / (sys.chips - 1) * (2 * tp - 1);
    }
  } else {
    t.base = first - first % domain;
    t.arch.system.chips = (first % domain + 2 * tp + domain - 1) / domain * domain;
  }
  return t;
}

// A model step in a pipeline of mapping.pp stages of mapping.tp chips each: every distinct stage
// simulated for one microbatch on its chips, each boundary's transfer on the chips it needs
// (transfer_system), and the step composed (mapping.hpp). Rows: an operator's (and a layer's) time summed over the
// stages and microbatches that run it, divided by the stages (so that the rows, with the
// stages' mean wait, add up to the step).
Simulated simulate_pipeline(const arch::Arch& a, const RunSpec& spec, const RunOptions& options,
                            const Mapping& mapping, std::vector<double>& stage_seconds,
                            std::vector<double>& transfer_seconds, int64_t& microbatch_count) {
  const compiler::ModelConfig cfg = compiler::load_model_config(spec.model);
  const int64_t m = microbatches(spec.batch, mapping.pp);
  microbatch_count = m;
  const compiler::Workload w = make_workload(spec.phase, spec.batch / m, spec.seq, spec.context);
  arch::Arch group = a;  // a stage's chips
  group.system.chips = mapping.tp;
  group.system.parallelism.tp = group.system.parallelism.pp = 0;
  const compiler::CompileOptions co = compile_options(spec, options);
  const double k = double(m), stages = double(mapping.pp);

  Simulated out;
  std::map<std::tuple<bool, bool, int64_t>, Simulated> distinct;  // first, last, layers
  std::map<std::pair<std::string, std::string>, size_t> op_row;
  StatsSum stats;
  const arch::Derived d = arch::derive(a);
  for (int64_t s = 0; s < mapping.pp; ++s) {
    const compiler::PipelineStage ps{mapping.pp, s};
    const auto [first, end] = ps.layers(cfg.layers);
    const auto key = std::make_tuple(ps.first(), ps.last(), end - first);
    auto it = distinct.find(key);
    if (it == distinct.end()) {
      compiler::CompileResult compiled = compiler::compile_model(cfg, w, group, co, ps);
      const double used = double(compiled.weight_bytes + compiled.kv_bytes * uint64_t(m) + compiled.activation_bytes);
      if (used > d.hbm_capacity) {
        throw std::runtime_error(fmt::format(
            "pipeline stage {} of {} (layers {}-{}, {} microbatches) needs {:.1f} GB of HBM per chip, more than {}'s "
            "{:.1f} GB",
            s, mapping.pp, first, end - 1, m, used / 1e9, a.name, d.hbm_capacity / 1e9));
      }
      it = distinct.emplace(key, simulate(group, compiled, options, s == 0)).first;
      it->second.hbm_used = used;
    }
    const Simulated& st = it->second;
    stage_seconds.push_back(st.b.seconds);
    out.b.total.add(st.b.total, k);
    // A stage of several scale-up domains names their switches sw1, sw2, ... as the system does; a
    // stage within one domain of several calls its switch "sw", the system "sw<domain + 1>".
    const int64_t domain = a.system.domain(), in_domain = s * mapping.tp / domain;
    if (mapping.tp > domain) {
      stats.add(st.stats, k, s * mapping.tp, in_domain);
    } else {
      stats.add(st.stats, k, s * mapping.tp, 0, domain < a.system.chips ? fmt::format("sw{}", in_domain + 1) : "");
    }
    out.peak_power_w += st.peak_power_w;
    out.hbm_used = std::max(out.hbm_used, st.hbm_used);
    out.slots = st.slots;
    out.layers = cfg.layers;
    out.simulated += st.simulated;
    for (const std::string& r : st.rounds_sampled) {
      if (std::find(out.rounds_sampled.begin(), out.rounds_sampled.end(), r) == out.rounds_sampled.end())
        out.rounds_sampled.push_back(r);
    }
    for (const Share& op : st.b.ops) {
      auto [row, fresh] = op_row.try_emplace({op.name, op.kind}, out.b.ops.size());
      if (fresh) {
        out.b.ops.push_back(op);
        out.b.ops.back().seconds = 0, out.b.ops.back().active = 0, out.b.ops.back().layers = 0;
        out.b.ops.back().activity = {};
      }
      Share& x = out.b.ops[row->second];
      x.seconds += k * op.seconds / stages, x.active += k * op.active / stages, x.layers += op.layers;
      x.activity.add(op.activity, k);
    }
    for (size_t l = 0; l < st.b.layers.size(); ++l) {
      Share x = st.b.layers[l];
      x.name = fmt::format("layer {}", first + int64_t(l));
      x.seconds *= k / stages, x.active *= k / stages;
      x.activity = {};
      x.activity.add(st.b.layers[l].activity, k);
      out.b.layers.push_back(std::move(x));
    }
  }
  const uint64_t bytes = uint64_t(w.tokens() * cfg.hidden) * 2;  // bf16 hidden state
  Share wait{"pipeline_wait", "pipeline", 0, false, 0, 0, {}};
  // On a switch or a full mesh the boundaries whose chips sit alike in the scale-up domains are
  // alike (all of them in one domain): each kind is simulated once, and its stats moved to the
  // other boundaries' chips. On rings and tori the routes differ: every boundary is simulated.
  const int64_t domain = a.system.domain();
  const bool alike = a.system.topology == arch::Topology::Switch || a.system.topology == arch::Topology::FullyConnected;
  std::map<int64_t, sim::RunResult> transfers;  // by kind
  for (int64_t boundary = 0; boundary + 1 < mapping.pp; ++boundary) {
    const int64_t first = boundary * mapping.tp;
    const int64_t kind = !alike ? boundary : domain == a.system.chips ? 0 : first % domain;
    const TransferSystem part = transfer_system(a, first, mapping.tp);
    auto it = transfers.find(kind);
    if (it == transfers.end()) {
      it = transfers.emplace(kind, simulate_transfer(part.arch, first - part.base, mapping.tp, bytes)).first;
    }
    const sim::RunResult& t = it->second;
    transfer_seconds.push_back(t.seconds());
    wait.activity.add(t.activity, k);
    out.b.total.add(t.activity, k);
    if (domain < a.system.chips && part.arch.system.chips == domain) {  // one domain: its switch is "sw"
      stats.add(t.stats, k, part.base, 0, fmt::format("sw{}", part.base / domain + 1));
    } else {
      stats.add(t.stats, k, part.base, domain == a.system.chips ? 0 : part.base / domain);
    }
  }
  out.b.seconds = pipeline_seconds(stage_seconds, transfer_seconds, m, w.phase);
  double busy = 0;
  for (const Share& op : out.b.ops) busy += op.seconds;
  wait.seconds = wait.active = out.b.seconds - busy;
  out.b.ops.push_back(std::move(wait));
  out.stats = stats.take();
  return out;
}

}  // namespace

Report run(const arch::Arch& a, const RunSpec& spec, const RunOptions& options) {
  const auto host_start = std::chrono::steady_clock::now();
  check_options(options);
  if (spec.model.empty() && a.system.chips > 1) {
    throw std::runtime_error(fmt::format("{} has {} chips: an operator runs on one (a model is split across them)",
                                         a.name, a.system.chips));
  }
  Report r;
  if (!spec.model.empty() && a.system.chips > 1) {
    const compiler::ModelConfig cfg = compiler::load_model_config(spec.model);
    const compiler::Workload w = workload_of(spec);
    const std::vector<Candidate> candidates =
        candidate_mappings(a, cfg, w, double(isa::dtype_bytes(parse_dtype("dtype", spec.dtype), 1)));
    const arch::ParallelismParams& given = a.system.parallelism;
    if (candidates.size() > 1 || given.tp == 0 || given.pp == 0 || (cfg.experts > 0 && given.ep == 0)) {
      // A search: each candidate simulated, the fastest kept (a candidate that fails is noted).
      std::optional<Report> best;
      std::vector<Report::Tried> tried;
      for (const Candidate& c : candidates) {
        arch::Arch fixed = a;
        fixed.system.parallelism.tp = c.mapping.tp, fixed.system.parallelism.pp = c.mapping.pp;
        fixed.system.parallelism.ep = c.mapping.ep;
        Report::Tried t{c.mapping.tp, c.mapping.pp, c.mapping.ep, c.estimate, 0, ""};
        try {
          Report one = run(fixed, spec, options);
          t.seconds = one.seconds;
          if (!best || one.seconds < best->seconds) best = std::move(one);
        } catch (const std::exception& e) {
          if (candidates.size() == 1) throw;
          t.error = e.what();
        }
        tried.push_back(std::move(t));
      }
      if (!best) {
        std::string why;
        for (const Report::Tried& t : tried) {
          why += fmt::format("{}tp {} x pp {}{}: {}", why.empty() ? "" : "; ", t.tp, t.pp,
                             t.ep > 1 ? fmt::format(", ep {}", t.ep) : "", t.error);
        }
        throw std::runtime_error(fmt::format("no mapping of {} onto {} runs: {}", spec.model, a.name, why));
      }
      best->mapping_search = std::move(tried);
      best->host_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - host_start).count();
      return std::move(*best);
    }
  }
  const int64_t stages = a.system.pipeline_stages();  // the search above fixed both when it was open
  const Mapping mapping{a.system.chips / stages, stages, std::max<int64_t>(1, a.system.parallelism.ep)};
  Simulated run;
  double tokens = 0;
  if (mapping.pp > 1) {
    if (spec.phase == "mixed") {
      throw std::runtime_error(fmt::format("a mixed step runs on a tensor-parallel replica, not a {}-stage pipeline",
                                           mapping.pp));
    }
    run = simulate_pipeline(a, spec, options, mapping, r.stage_seconds, r.transfer_seconds, r.microbatches);
    tokens = double(spec.batch * (spec.phase == "prefill" ? spec.seq : 1));
  } else {
    const compiler::CompileOptions co = compile_options(spec, options);
    compiler::CompileResult compiled;
    if (!spec.model.empty()) {
      const compiler::Workload w = workload_of(spec);
      compiled = compiler::compile_model(compiler::load_model_config(spec.model), w, a, co);
      tokens = double(w.tokens());
    } else if (spec.op == "gemm") {
      compiled = compiler::compile(gemm_graph(spec, co.weight_dtype), a, co);
    } else if (spec.op == "attention") {
      compiled = compiler::compile(
          attention_graph(spec, workload_of(spec)), a, co);
    } else if (spec.op == "copy") {
      compiled.program = copy_program(a, spec);
    } else {
      throw std::runtime_error(
          spec.op.empty() ? "nothing to run: give a model or an operator (gemm, attention, copy)"
                          : "unknown operator '" + spec.op + "' (gemm, attention, copy)");
    }
    run = simulate(a, compiled, options, true);
  }
  r.tp = mapping.tp, r.pp = mapping.pp, r.ep = mapping.ep;
  const Breakdown& b = run.b;
  r.stats = std::move(run.stats);
  r.seconds = b.seconds;
  // The power limit (power.limit, default the TDP): an operator whose average power would
  // exceed the chips' limit runs at a lower clock c = (limit - static) / its dynamic power, its
  // events' and the active power's (at a fixed voltage dynamic power follows the clock: the
  // same work's energy over a longer time) and takes its time / c. Per operator, a first-order
  // rule: a GPU's power controller acts within a few hundred microseconds, about an operator's
  // length in the steps that reach the limit, so a step's GEMMs slow down while its element-wise
  // kernels and launch gaps do not.
  // It holds the limit on the power averaged over power.limit_window, though: a run that starts
  // from idle keeps its clock until that average reaches the limit, for
  // tau = window x (limit - static) / (run's dynamic power), and only the rest of the run is
  // throttled (its operators' stretch scaled by 1 - tau / time): a GEMM called alone, shorter
  // than the window, runs at full clock above the limit; back to back, it would not.
  const sim::EnergyPrices prices = sim::EnergyPrices::from(a);
  const double limit = a.power.power_limit() * double(a.system.chips),
               idle = prices.static_power * double(a.system.chips);
  const arch::Derived d = arch::derive(a);
  // Activity is summed over the chips, the peaks are a chip's: utilisation is the chips' mean.
  const double chips = double(a.system.chips);
  // An operator's or a layer's row: its events' and the active power's energy over its time.
  auto row = [&](const Share& s) {
    Report::Row out{s, 2 * s.activity.total_macs(), s.activity.hbm_read + s.activity.hbm_write,
                    sim::price(prices, s.activity, s.seconds, a.system.chips),
                    utilization(s.activity, s.active * chips, d, run.slots), ""};
    out.bound = bound_of(out.utilization);
    out.energy.joules.erase("static");
    return out;
  };
  for (const Share& s : b.ops) r.ops.push_back(row(s));
  // The lowered clock does the same work (events and active power) over a longer time: only
  // the static power runs on through the throttled time (added below).
  r.energy = sim::price(prices, b.total, b.seconds, a.system.chips);

  double clock = 1.0;  // the lowest of the operators'
  for (const Report::Row& x : r.ops) {
    const double t = x.share.seconds, dynamic = x.energy.dynamic();
    if (t <= 0 || dynamic / t + idle <= limit) continue;
    const double c = (limit - idle) / (dynamic / t);
    r.throttled_seconds += t / c - t;
    clock = std::min(clock, c);
  }
  double full_clock = 0;  // tau: the run's start, before the window's average reaches the limit
  if (r.throttled_seconds > 0 && a.power.limit_window > 0) {
    full_clock = std::min(b.seconds, a.power.limit_window * (limit - idle) / (r.energy.dynamic() / b.seconds));
    r.throttled_seconds *= 1 - full_clock / b.seconds;
    clock = 1.0;  // its first windows run at full clock: the peak is theirs
  }
  r.seconds += r.throttled_seconds;
  r.energy.joules["static"] += idle * r.throttled_seconds;
  r.instructions = b.total.instructions;
  r.layers_simulated = run.simulated;
  r.rounds_sampled = run.rounds_sampled;

  if (r.throttled_seconds > 0) {
    r.ops.push_back({{"power_throttle", "power", 0, false, r.throttled_seconds, r.throttled_seconds, {}}, 0, 0, {},
                     {}, "power"});
  }
  for (const Share& s : b.layers) r.layer_rows.push_back(row(s));

  r.system = a.name;
  r.workload = spec.describe();
  r.pricing = options.pricing;
  r.chips = a.system.chips;
  r.layers = run.layers;
  r.tokens = tokens;
  r.tokens_per_s = tokens / r.seconds;
  r.flops = 2 * b.total.total_macs();
  r.hbm_bytes = b.total.hbm_read + b.total.hbm_write;
  r.utilization = utilization(b.total, r.seconds * chips, d, run.slots);
  r.utilization["capacity"] = run.hbm_used / d.hbm_capacity;
  r.bound = r.throttled_seconds > 0 ? "power" : bound_of(r.utilization);

  r.avg_power_w = r.energy.total() / r.seconds;
  r.peak_power_w = (run.peak_power_w - idle) * clock + idle;  // every window at the lowered clock
  r.tdp_w = a.power.tdp * double(r.chips);
  if (tokens > 0) r.joules_per_token = r.energy.total() / tokens;
  if (r.avg_power_w > r.tdp_w * (1 + 1e-9) && full_clock > 0) {
    r.warnings.push_back(fmt::format(
        "average power {:.0f} W exceeds the TDP of {:.0f} W: starting from idle, the first {:.3g} ms of the run "
        "keep the full clock until the power averaged over power.limit_window ({:g} ms) reaches the limit; "
        "run back to back, it would be held to the limit",
        r.avg_power_w, r.tdp_w, full_clock * 1e3, a.power.limit_window * 1e3));
  } else if (r.avg_power_w > r.tdp_w * (1 + 1e-9)) {  // (a step held at a limit of the TDP draws it exactly)
    r.warnings.push_back(
        fmt::format("average power {:.0f} W exceeds the TDP of {:.0f} W", r.avg_power_w, r.tdp_w));
  } else if (r.peak_power_w > r.tdp_w) {
    r.warnings.push_back(
        fmt::format("peak power over {:g} us windows, {:.0f} W, exceeds the TDP of {:.0f} W",
                    options.power_window * 1e6, r.peak_power_w, r.tdp_w));
  }

  r.capex_usd = d.capex_per_chip * double(r.chips);
  if (options.pricing == "cloud") {
    if (!a.cost.cloud_price)
      throw std::runtime_error(a.name + " has no cost.cloud_price for cloud pricing");
    r.usd_per_hour = *a.cost.cloud_price * double(r.chips);
  } else {
    r.capex_usd_per_hour = r.capex_usd / (a.cost.amortization_years * arch::kHoursPerYear);
    r.energy_usd_per_hour = r.avg_power_w * a.cost.pue * 3600.0 * a.cost.electricity_price;
    r.usd_per_hour = r.capex_usd_per_hour + r.energy_usd_per_hour;
  }
  if (tokens > 0) {
    r.usd_per_million_tokens = r.usd_per_hour / (r.tokens_per_s * 3600.0) * 1e6;
    r.tokens_per_s_per_capex_usd = r.tokens_per_s / r.capex_usd;
  }
  r.host_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - host_start).count();
  return r;
}

nlohmann::json Report::to_json(bool with_stats) const {
  nlohmann::json j;
  j["system"] = system;
  j["workload"] = workload;
  if (!error.empty()) {
    j["error"] = error;
    return j;
  }
  j["chips"] = chips;
  j["parallelism"] = {{"tp", tp}, {"pp", pp}, {"ep", ep}};
  if (pp > 1) {
    j["parallelism"]["microbatches"] = microbatches;
    j["parallelism"]["stage_seconds"] = stage_seconds;
    j["parallelism"]["transfer_seconds"] = transfer_seconds;
  }
  if (!mapping_search.empty()) {
    nlohmann::json tried = nlohmann::json::array();
    for (const Tried& t : mapping_search) {
      nlohmann::json o = {{"tp", t.tp}, {"pp", t.pp}, {"ep", t.ep}, {"estimate_seconds", t.estimate}};
      if (t.error.empty()) o["seconds"] = t.seconds;
      else o["error"] = t.error;
      tried.push_back(std::move(o));
    }
    j["mapping_search"] = std::move(tried);
  }
  j["seconds"] = seconds;
  if (tokens > 0) {
    j["tokens"] = tokens;
    j["tokens_per_s"] = tokens_per_s;
    j["joules_per_token"] = joules_per_token;
    j["tokens_per_joule"] = 1.0 / joules_per_token;
    j["usd_per_million_tokens"] = usd_per_million_tokens;
    j["tokens_per_s_per_capex_usd"] = tokens_per_s_per_capex_usd;
  }
  j["flops"] = flops;
  j["flops_per_s"] = flops / seconds;
  j["hbm_bytes"] = hbm_bytes;
  j["hbm_bytes_per_s"] = hbm_bytes / seconds;
  j["instructions"] = instructions;
  j["layers"] = layers;
  j["layers_simulated"] = layers_simulated;
  if (!rounds_sampled.empty()) j["rounds_sampled"] = rounds_sampled;
  j["energy_j"] = energy.total();
  j["energy_breakdown_j"] = energy.joules;
  j["avg_power_w"] = avg_power_w;
  j["peak_power_w"] = peak_power_w;
  j["tdp_w"] = tdp_w;
  j["pricing"] = pricing;
  j["capex_usd"] = capex_usd;
  j["usd_per_hour"] = usd_per_hour;
  if (pricing == "owned") {
    j["capex_usd_per_hour"] = capex_usd_per_hour;
    j["energy_usd_per_hour"] = energy_usd_per_hour;
  }
  j["utilization"] = utilization;
  j["bound"] = bound;
  auto rows = [](const std::vector<Row>& in) {
    nlohmann::json out = nlohmann::json::array();
    for (const Row& x : in) {
      nlohmann::json o = {{"name", x.share.name}, {"kind", x.share.kind},
                          {"seconds", x.share.seconds}, {"active_seconds", x.share.active},
                          {"flops", x.flops},
                          {"hbm_bytes", x.hbm_bytes}, {"instructions", x.share.activity.instructions},
                          {"energy_j", x.energy.total()}, {"energy_breakdown_j", x.energy.joules},
                          {"utilization", x.utilization},
                          {"bound", x.bound}};
      if (x.share.kind != "layer") o["layers"] = x.share.layers;
      if (x.share.kind == "layer") o["extrapolated"] = x.share.extrapolated;
      out.push_back(std::move(o));
    }
    return out;
  };
  j["breakdown"] = {{"ops", rows(ops)}, {"layers", rows(layer_rows)}};
  j["warnings"] = warnings;
  j["host_seconds"] = host_seconds;
  j["throttled_seconds"] = throttled_seconds;
  if (with_stats) j["stats"] = stats.to_json();
  return j;
}

Comparison compare(const std::vector<arch::Arch>& systems, const std::vector<RunSpec>& workloads,
                   const RunOptions& options) {
  if (systems.empty()) throw std::runtime_error("compare: no systems given");
  if (workloads.empty()) throw std::runtime_error("compare: no workloads given");
  for (const RunSpec& w : workloads) check_request(w, options);
  Comparison c;
  c.workloads = workloads;
  RunOptions o = options;
  for (const RunSpec& w : workloads) {
    c.reports.emplace_back();
    for (const arch::Arch& a : systems) {
      try {
        c.reports.back().push_back(run(a, w, o));
        o.trace.clear();
      } catch (const std::exception& e) {
        Report failed;
        failed.system = a.name, failed.workload = w.describe(), failed.error = e.what();
        c.reports.back().push_back(std::move(failed));
      }
    }
  }
  return c;
}

int64_t replicas_for(const Report& first, const Report& r) {
  return r.capex_usd > 0 ? int64_t(first.capex_usd / r.capex_usd * (1 + 1e-9)) : 0;
}

bool Comparison::failed() const {
  for (const std::vector<Report>& rs : reports) {
    for (const Report& r : rs) {
      if (!r.error.empty()) return true;
    }
  }
  return false;
}

const std::vector<Metric>& compared_metrics() {
  static const std::vector<Metric> m{{"seconds", false},
                                     {"tokens_per_s", true},
                                     {"avg_power_w", false},
                                     {"tokens_per_joule", true},
                                     {"usd_per_million_tokens", false},
                                     {"tokens_per_s_per_capex_usd", true}};
  return m;
}

nlohmann::json Comparison::to_json(bool with_stats) const {
  nlohmann::json out = nlohmann::json::array();
  for (size_t w = 0; w < workloads.size(); ++w) {
    nlohmann::json systems = nlohmann::json::array();
    const nlohmann::json first = reports[w].front().to_json(false);
    for (const Report& r : reports[w]) {
      nlohmann::json j = r.to_json(with_stats);
      for (const Metric& m : compared_metrics()) {  // a failed run's report has no figures
        if (j.contains(m.key) && first.contains(m.key)) {
          j["vs_first"][m.key] = j[m.key].get<double>() / first[m.key].get<double>();
        }
      }
      if (r.error.empty() && reports[w].front().error.empty() && r.tokens > 0) {
        const int64_t n = replicas_for(reports[w].front(), r);
        j["at_first_capex"] = {{"replicas", n}, {"tokens_per_s", double(n) * r.tokens_per_s}};
      }
      systems.push_back(std::move(j));
    }
    out.push_back({{"workload", workloads[w].describe()}, {"systems", std::move(systems)}});
  }
  return out;
}

std::vector<std::string> default_systems() {
  return {"maia100-class", "h100-sxm", "h200-sxm"};
}

std::vector<RunSpec> default_workloads() {
  RunSpec decode;
  decode.model = "llama-3-8b", decode.phase = "decode", decode.batch = 32, decode.context = 1024;
  RunSpec prefill;
  prefill.model = "llama-3-8b", prefill.phase = "prefill", prefill.batch = 1, prefill.seq = 2048;
  return {decode, prefill};
}

}  // namespace tessera::api
