// Planning passes: partition (strategy per op), tile (chunk sizes), place (which tiles),
// schedule (synchronisation and prefetch).
#include <fmt/format.h>

#include "compiler/error.hpp"
#include "compiler/kernels/collective.hpp"
#include "compiler/passes.hpp"
#include "compiler/specs.hpp"

namespace tessera::compiler {
namespace {

// Token rows below which a Linear always streams its weights (decode batches: every weight
// read once, the first ones while the previous op finishes), and from which it always takes a
// GEMM (twice as many through a chip-wide shared memory, where x reaches the tiles cheaply).
constexpr int64_t kStreamTokens = 64, kGemmTokens = 256;

// In between, a Linear of `tokens` rows streams its weights [n, k] unless its input would cost
// more than they do. Through a chip-wide shared memory, the stream's estimated time (stream_ksplit)
// against the GEMM's (staged_cost), ties to the stream (it reads every weight once, the GEMM
// steps through panels in lock-step). Otherwise: streaming brings x from HBM to every
// shared-memory instance (where it is staged) and from there to every tile (its range of K when
// K is split), where the GEMM shares both operands over its grid. Per row of k: x to the tiles,
// tiles x tokens / ranges elements, against twice the n weight elements; x from HBM, instances x
// tokens, against a quarter of them.
bool stream_linear(int64_t tokens, int64_t n, int64_t k, Dtype x, Dtype w, const arch::Arch& a) {
  if (a.tiles() <= 1 || tokens < kStreamTokens) return true;
  const bool chip_shared = a.chip.shared_memory.scope == arch::SharedScope::Chip;
  if (tokens >= (chip_shared ? 2 * kGemmTokens : kGemmTokens)) return false;
  const uint64_t sram_budget = uint64_t(a.chip.tile.sram.capacity) * 15 / 16,
                 shared_budget = uint64_t(a.chip.shared_memory.capacity) * 15 / 16;
  const StreamSplit split = stream_ksplit(a, tokens, n, k, esize(w), sram_budget, shared_budget);
  if (chip_shared) {
    GemmSpec s;
    s.m = tokens, s.k = k, s.n = n, s.dtype = w, s.a_dtype = x, s.out = x, s.b_transposed = true;
    const GemmPlan p = plan_gemm(a, s, sram_budget, shared_budget);
    if (p.panel > 0) return split.seconds <= staged_cost(a, s, p);
  }
  const int64_t xb = tokens * esize(x), wb = n * esize(w);
  return xb * a.tiles() <= 2 * wb * split.ranges && xb * a.shared_memory_instances() * 4 <= wb;
}

bool has_work(Strategy s) {
  return s != Strategy::None;
}

uint64_t budget(const arch::Arch& a, const OpPlan& p) {
  const uint64_t sram = uint64_t(a.chip.tile.sram.capacity);
  return (p.half < 0 ? sram : sram / 2) * 15 / 16;
}

uint64_t shared_budget(const arch::Arch& a, const OpPlan& p) {
  const uint64_t shared = uint64_t(a.chip.shared_memory.capacity);
  return (p.half < 0 ? shared : shared / 2) * 15 / 16;
}

}  // namespace

std::string_view strategy_name(Strategy s) {
  switch (s) {
    case Strategy::None:
      return "none";
    case Strategy::Gemm:
      return "gemm";
    case Strategy::Stream:
      return "stream";
    case Strategy::Rows:
      return "rows";
    case Strategy::Heads:
      return "heads";
    case Strategy::Gather:
      return "gather";
    case Strategy::Experts:
      return "experts";
    case Strategy::Collective:
      return "collective";
  }
  return "?";
}

Lowering partition(Graph g, const arch::Arch& a, Framework framework) {
  Lowering l;
  l.graph = std::move(g);
  l.plans.resize(l.graph.ops.size());
  int prev = -1;
  int64_t rope_tables_built = -2;  // the layer whose RoPE tables were built last
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    Op& op = l.graph.ops[i];
    OpPlan& p = l.plans[i];
    switch (op.kind) {
      case OpKind::Embedding:
        p.strategy = Strategy::Gather;
        break;
      case OpKind::Linear: {
        const Value &x = l.graph.v(op.inputs[0]), &w = l.graph.v(op.inputs[1]);
        p.strategy = stream_linear(x.shape[0], w.shape[0], w.shape[1], x.dtype, w.dtype, a) ? Strategy::Stream
                                                                                              : Strategy::Gemm;
        break;
      }
      case OpKind::Add:
      case OpKind::Mul:
      case OpKind::RmsNorm:
      case OpKind::LayerNorm:
      case OpKind::Softmax:
      case OpKind::Silu:
      case OpKind::Gelu:
      case OpKind::Relu:
      case OpKind::SwiGlu:
      case OpKind::Rope:
        p.strategy = Strategy::Rows;
        break;
      case OpKind::Attention:
        p.strategy = Strategy::Heads;
        break;
      case OpKind::Concat:
        for (int in : op.inputs) {
          if (l.graph.v(in).role != Role::Weight) {
            throw CompileError(
                fmt::format("op {}: only weights can be concatenated (by placement)", op.name));
          }
        }
        p.strategy = Strategy::None;
        break;
      case OpKind::Split:
      case OpKind::Reshape:
        p.strategy = Strategy::None;
        break;
      case OpKind::MoeExperts: {
        const int64_t tokens = l.graph.v(op.inputs[0]).shape[0];
        p.strategy = Strategy::Experts;
        p.moe.gemm = tokens >= kGemmTokens && a.tiles() > 1;
        break;
      }
      case OpKind::AllReduce: {
        p.strategy = Strategy::Collective;
        const Value& x = l.graph.v(op.inputs[0]);
        const int64_t scratch = all_reduce_scratch(a, int64_t(op.ints("group").size()), x.elements());
        p.collective_scratch_bytes = isa::dtype_bytes(x.dtype, size_t(scratch));
        break;
      }
      case OpKind::MatMul:
        throw CompileError(fmt::format(
            "op {}: a MatMul of two activations is supported only inside attention", op.name));
      case OpKind::Transpose:
      case OpKind::Slice:
        throw CompileError(fmt::format("op {} ({}) is not supported by code generation", op.name,
                                       op_kind_name(op.kind)));
    }
    if (!has_work(p.strategy)) continue;
    if (framework == Framework::PyTorch) {
      const bool rebuilds = op.kind == OpKind::Rope && op.i("layer", -1) != rope_tables_built;
      if (rebuilds) rope_tables_built = op.i("layer", -1);
      p.eager = pytorch_kernels(l.graph, op, rebuilds);
      for (const Traffic& t : p.eager) p.eager_scratch_bytes = std::max({p.eager_scratch_bytes, t.read, t.write});
      if (!p.eager.empty()) op.notes["pytorch"] = fmt::format("{} kernels before the op's own", p.eager.size());
    }
    // A weight stream of a few tokens may start loading while the previous op of the same
    // layer finishes (each then has half the SRAM); with many tokens its own buffers need it all.
    // Not on a chip that runs kernels: a kernel begins only after the previous one has ended.
    if (p.strategy == Strategy::Stream && prev >= 0 && a.chip.launch.gap == 0 && framework == Framework::Fused && l.graph.v(op.inputs[0]).shape[0] < kStreamTokens &&
        l.graph.ops[size_t(prev)].i("layer", -1) == op.i("layer", -1)) {
      p.prefetch = true;
      OpPlan& before = l.plans[size_t(prev)];
      if (before.half < 0) before.half = 0;
      p.half = 1 - before.half;
    }
    op.notes["strategy"] =
        std::string(strategy_name(p.strategy)) + (p.prefetch ? ", prefetching" : "");
    prev = int(i);
  }
  return l;
}

void tile(Lowering& l, const arch::Arch& a, const CompileOptions& o) {
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    Op& op = l.graph.ops[i];
    OpPlan& p = l.plans[i];
    const uint64_t b = budget(a, p);
    try {
      switch (p.strategy) {
        case Strategy::Gemm:
          p.gemm = plan_gemm(a, gemm_spec(l, op), b, shared_budget(a, p));
          op.notes["tiles"] = fmt::format("blocks {}x{}, k chunks of {}, {}x{} passes", p.gemm.bm,
                                          p.gemm.bn, p.gemm.bk, p.gemm.passes_m, p.gemm.passes_n);
          if (p.gemm.panel > 0)
            op.notes["tiles"] += fmt::format(", K panels of {} staged in shared memory{}", p.gemm.panel,
                                             p.gemm.a_resident ? " (A rows kept across passes)"
                                             : p.gemm.b_direct ? " (B straight from HBM)"
                                                               : "");
          break;
        case Strategy::Stream:
          p.stream = plan_stream(a, stream_spec(l, op), b, shared_budget(a, p));
          op.notes["tiles"] =
              fmt::format("{} columns a tile, weight chunks of {} x {}, {} buffers{}{}",
                          p.stream.per_tile, p.stream.chunk, p.stream.k_chunk, p.stream.buffers,
                          p.stream.x_slices ? ", x in slices" : "",
                          p.stream.group < stream_spec(l, op).t
                              ? fmt::format(", tokens in groups of {}", p.stream.group)
                              : "");
          if (p.stream.ksplit > 1)
            op.notes["tiles"] += fmt::format(", K split over {} tiles, reduced {} columns at a time",
                                             p.stream.ksplit, p.stream.reduce_cols);
          break;
        case Strategy::Rows:
          p.rows = plan_rows(a, rows_spec(l, op), b);
          p.rows.round_chunks = rows_round_chunks(p.rows);
          op.notes["tiles"] =
              fmt::format("{} rows a tile in chunks of {}", p.rows.per_tile, p.rows.chunk);
          if (p.rows.col_tiles > 1)
            op.notes["tiles"] += fmt::format(", columns over {} tiles", p.rows.col_tiles);
          if (p.rows.cb > 0)
            op.notes["tiles"] += fmt::format(", columns in blocks of {}{}", p.rows.cb,
                                             p.rows.two_pass ? " (two passes)" : "");
          if (p.rows.buffers == 2) op.notes["tiles"] += ", double-buffered";
          if (p.rows.round_chunks > 0)
            op.notes["tiles"] += fmt::format(", in rounds of {} chunks", p.rows.round_chunks);
          break;
        case Strategy::Experts: {
          const MoeSpec spec = moe_spec(l, op);
          p.moe = plan_moe(a, spec, b, shared_budget(a, p), p.moe.gemm);
          op.notes["tiles"] = moe_tiles_note(spec, p.moe);
          op.notes["flops"] = moe_flops_note(spec, p.moe);
          break;
        }
        case Strategy::Heads:
          p.attention = plan_attention(a, attention_spec(l, op), b, o.attention_key_block);
          op.notes["tiles"] = fmt::format("query blocks of {} tokens, keys in blocks of {}, {} units",
                                          p.attention.q_block, p.attention.key_block, p.attention.units);
          if (p.attention.splits > 1)
            op.notes["tiles"] += fmt::format(" (keys split in {} ranges, combined after a barrier)",
                                             p.attention.splits);
          break;
        default:
          break;
      }
    } catch (const CompileError& e) {
      throw CompileError(fmt::format("op {} ({}): {}", op.name, op_kind_name(op.kind), e.what()));
    }
  }
}

void place(Lowering& l, const arch::Arch& a) {
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    Op& op = l.graph.ops[i];
    const OpPlan& p = l.plans[i];
    switch (p.strategy) {
      case Strategy::Gemm:
        op.notes["place"] = fmt::format(
            "grid {}x{}: block (i, j) on tile i*{} + j{}", p.gemm.gr, p.gemm.gc, p.gemm.gc,
            a.chip.noc.topology == arch::NocTopology::Mesh && p.gemm.gc == a.chip.mesh.cols
                ? " (grid rows are mesh rows)"
                : "");
        break;
      case Strategy::Stream:
        op.notes["place"] = fmt::format("tiles 0..{}", p.stream.tiles - 1);
        break;
      case Strategy::Rows:
        op.notes["place"] = fmt::format("tiles 0..{}", p.rows.tiles - 1);
        break;
      case Strategy::Heads:
        op.notes["place"] =
            fmt::format("units (causal query blocks paired early with late) round-robin on tiles 0..{}",
                        p.attention.tiles - 1);
        break;
      case Strategy::Experts:
        op.notes["place"] =
            p.moe.gemm
                ? fmt::format("GEMM grids {}x{} and {}x{}; activation rows on tiles 0..{}",
                              p.moe.gate_up.gr, p.moe.gate_up.gc, p.moe.down.gr, p.moe.down.gc,
                              p.moe.act.tiles - 1)
                : fmt::format(
                      "intermediate columns on tiles 0..{}; output columns on tiles 0..{}",
                      p.moe.tiles - 1,
                      (l.graph.v(op.outputs[0]).shape[1] + p.moe.out_cols - 1) / p.moe.out_cols -
                          1);
        break;
      case Strategy::Gather:
        op.notes["place"] =
            fmt::format("rows dealt to {} tiles",
                        std::min<int64_t>(a.tiles(), l.graph.v(op.outputs[0]).shape[0]));
        break;
      default:
        break;
    }
  }
}

void schedule(Lowering& l) {
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    if (!has_work(l.plans[i].strategy)) continue;
    Op& op = l.graph.ops[i];
    const OpPlan& p = l.plans[i];
    if (p.strategy == Strategy::Experts) {
      op.notes["sync"] =
          p.moe.gemm       ? "barriers between the steps of every expert; barrier after"
          : p.moe.two_pass ? "barrier between the two passes; barrier after"
                           : fmt::format("barrier before the reduction{}; barrier after",
                                         p.moe.blocks > 1 ? " and after it, per token block" : "");
      continue;
    }
    op.notes["sync"] = p.prefetch ? "weights requested before the previous barrier; barrier after"
                                  : "barrier after";
  }
}

}  // namespace tessera::compiler
