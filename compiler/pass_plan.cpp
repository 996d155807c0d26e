// Planning passes: partition (strategy per op), tile (chunk sizes), place (which tiles),
// schedule (synchronisation and prefetch).
#include <fmt/format.h>

#include "compiler/error.hpp"
#include "compiler/passes.hpp"
#include "compiler/specs.hpp"

namespace tessera::compiler {
namespace {

// Token rows at which a Linear switches from streaming weights to the multicast GEMM.
constexpr int64_t kGemmTokens = 256;

bool has_work(Strategy s) { return s != Strategy::None; }

uint64_t budget(const arch::Arch& a, const OpPlan& p) {
  const uint64_t sram = uint64_t(a.chip.tile.sram.capacity);
  return (p.half < 0 ? sram : sram / 2) * 15 / 16;
}

}  // namespace

std::string_view strategy_name(Strategy s) {
  switch (s) {
    case Strategy::None: return "none";
    case Strategy::Gemm: return "gemm";
    case Strategy::Stream: return "stream";
    case Strategy::Rows: return "rows";
    case Strategy::Heads: return "heads";
    case Strategy::Gather: return "gather";
    case Strategy::Experts: return "experts";
  }
  return "?";
}

Lowering partition(Graph g, const arch::Arch& a) {
  Lowering l;
  l.graph = std::move(g);
  l.plans.resize(l.graph.ops.size());
  int prev = -1;
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    Op& op = l.graph.ops[i];
    OpPlan& p = l.plans[i];
    switch (op.kind) {
      case OpKind::Embedding: p.strategy = Strategy::Gather; break;
      case OpKind::Linear: {
        const int64_t tokens = l.graph.v(op.inputs[0]).shape[0];
        p.strategy = tokens >= kGemmTokens && a.tiles() > 1 ? Strategy::Gemm : Strategy::Stream;
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
      case OpKind::Rope: p.strategy = Strategy::Rows; break;
      case OpKind::Attention: p.strategy = Strategy::Heads; break;
      case OpKind::Concat:
        for (int in : op.inputs) {
          if (l.graph.v(in).role != Role::Weight) {
            throw CompileError(fmt::format("op {}: only weights can be concatenated (by placement)", op.name));
          }
        }
        p.strategy = Strategy::None;
        break;
      case OpKind::Split:
      case OpKind::Reshape: p.strategy = Strategy::None; break;
      case OpKind::MoeRouter:
      case OpKind::MoeExperts:
        throw CompileError(fmt::format("op {}: mixture-of-experts layers are not supported by code generation yet", op.name));
      case OpKind::MatMul:
        throw CompileError(fmt::format("op {}: a MatMul of two activations is supported only inside attention", op.name));
      case OpKind::Transpose:
      case OpKind::Slice:
        throw CompileError(fmt::format("op {} ({}) is not supported by code generation", op.name, op_kind_name(op.kind)));
    }
    if (!has_work(p.strategy)) continue;
    // A weight stream may start loading while the previous op of the same layer finishes.
    if (p.strategy == Strategy::Stream && prev >= 0 && l.graph.ops[size_t(prev)].i("layer", -1) == op.i("layer", -1)) {
      p.prefetch = true;
      OpPlan& before = l.plans[size_t(prev)];
      if (before.half < 0) before.half = 0;
      p.half = 1 - before.half;
    }
    op.notes["strategy"] = std::string(strategy_name(p.strategy)) + (p.prefetch ? ", prefetching" : "");
    prev = int(i);
  }
  return l;
}

void tile(Lowering& l, const arch::Arch& a) {
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    Op& op = l.graph.ops[i];
    OpPlan& p = l.plans[i];
    const uint64_t b = budget(a, p);
    switch (p.strategy) {
      case Strategy::Gemm:
        p.gemm = plan_gemm(a, gemm_spec(l, op), b);
        op.notes["tiles"] = fmt::format("blocks {}x{}, k chunks of {}, {}x{} passes", p.gemm.bm, p.gemm.bn, p.gemm.bk,
                                        p.gemm.passes_m, p.gemm.passes_n);
        break;
      case Strategy::Stream:
        p.stream = plan_stream(a, stream_spec(l, op), b);
        op.notes["tiles"] = fmt::format("{} columns a tile, weight chunks of {} x {}, {} buffers", p.stream.per_tile,
                                        p.stream.chunk, p.stream.k_chunk, p.stream.buffers);
        break;
      case Strategy::Rows:
        p.rows = plan_rows(a, rows_spec(l, op), b);
        op.notes["tiles"] = fmt::format("{} rows a tile in chunks of {}", p.rows.per_tile, p.rows.chunk);
        break;
      case Strategy::Heads:
        p.attention = plan_attention(a, attention_spec(l, op), b);
        op.notes["tiles"] = fmt::format("query blocks of {} tokens, {} units", p.attention.q_block, p.attention.units);
        break;
      default: break;
    }
  }
}

void place(Lowering& l, const arch::Arch& a) {
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    Op& op = l.graph.ops[i];
    const OpPlan& p = l.plans[i];
    switch (p.strategy) {
      case Strategy::Gemm:
        op.notes["place"] = fmt::format("grid {}x{}: block (i, j) on tile i*{} + j{}", p.gemm.gr, p.gemm.gc, p.gemm.gc,
                                        a.chip.noc.topology == arch::NocTopology::Mesh && p.gemm.gc == a.chip.mesh.cols
                                            ? " (grid rows are mesh rows)"
                                            : "");
        break;
      case Strategy::Stream:
        op.notes["place"] = fmt::format("tiles 0..{}", p.stream.tiles - 1);
        break;
      case Strategy::Rows: op.notes["place"] = fmt::format("tiles 0..{}", p.rows.tiles - 1); break;
      case Strategy::Heads:
        op.notes["place"] = fmt::format("units in contiguous runs on tiles 0..{}", p.attention.tiles - 1);
        break;
      case Strategy::Gather: op.notes["place"] = fmt::format("rows dealt to {} tiles", std::min<int64_t>(a.tiles(), l.graph.v(op.outputs[0]).shape[0])); break;
      default: break;
    }
  }
}

void schedule(Lowering& l) {
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    if (!has_work(l.plans[i].strategy)) continue;
    Op& op = l.graph.ops[i];
    op.notes["sync"] = l.plans[i].prefetch ? "weights requested before the previous barrier; barrier after"
                                           : "barrier after";
  }
}

}  // namespace tessera::compiler
