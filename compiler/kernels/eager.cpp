#include "compiler/kernels/eager.hpp"

#include <algorithm>
#include <array>

#include "compiler/emit.hpp"
#include "compiler/error.hpp"

namespace tessera::compiler {

std::vector<Traffic> pytorch_kernels(const Graph& g, const Op& op, bool rebuilds_rope) {
  const Value& x = g.v(op.inputs.at(0));
  const uint64_t e = uint64_t(x.elements()), a = uint64_t(esize(x.dtype)), f32 = 4;
  std::vector<Traffic> k;
  switch (op.kind) {
    case OpKind::RmsNorm:
      k = {{"to(float32)", a * e, f32 * e},
           {"pow", f32 * e, f32 * e},
           {"mean", f32 * e, 0},
           {"add eps", 0, 0},
           {"rsqrt", 0, 0},
           {"mul rsqrt", f32 * e, f32 * e},
           {"to(bfloat16)", f32 * e, a * e}};
      break;
    case OpKind::Rope: {
      if (rebuilds_rope) {
        const uint64_t table = uint64_t(x.shape.at(0) * op.i("head_dim")) * f32;  // [tokens, head_dim] fp32
        k = {{"inv_freq @ positions", 0, table / 2},
             {"cat", table / 2, table},
             {"cos", table, table},
             {"sin", table, table},
             {"cos to(bfloat16)", table, table / 2},
             {"sin to(bfloat16)", table, table / 2}};
      }
      const std::vector<Traffic> apply = {
          {"mul cos", a * e, a * e}, {"neg", a * e / 2, a * e / 2}, {"cat", a * e, a * e}, {"mul sin", a * e, a * e}};
      k.insert(k.end(), apply.begin(), apply.end());
      break;
    }
    case OpKind::Attention: {
      const uint64_t kv = uint64_t(g.v(op.inputs.at(1)).bytes()), out = uint64_t(g.v(op.outputs.at(0)).bytes());
      k = {{"k cache index_copy", kv, kv}, {"v cache index_copy", kv, kv}, {"transpose contiguous", out, out}};
      break;
    }
    case OpKind::Linear: {
      const Value& y = g.v(op.outputs.at(0));
      if (y.dtype == Dtype::Fp32 && y.role == Role::Output) {
        k = {{"logits to(float32)", uint64_t(y.elements()) * 2, y.bytes()}};
      }
      break;
    }
    default: break;
  }
  return k;
}

void emit_traffic(KernelContext& ctx, uint64_t scratch, const Traffic& t) {
  constexpr uint64_t kPerTile = 8 << 10, kPiece = 64 << 10;
  const uint64_t total = t.read + t.write;
  const int64_t tiles = std::clamp<int64_t>(ceil_div(int64_t(total), int64_t(kPerTile)), 1, ctx.tiles());
  // Reads land in four buffers in turn and writes leave from a fifth, so that pieces in flight
  // do not wait on one another's SRAM.
  constexpr int kInFlight = 4;
  const uint64_t piece = std::min<uint64_t>(kPiece, ctx.sram_left() / (kInFlight + 1) / 64 * 64);
  if (piece == 0) throw CompileError("no SRAM left for an element-wise kernel's buffers");
  std::array<uint64_t, kInFlight + 1> buf{};
  for (uint64_t& b : buf) b = ctx.sram(piece);
  const int sem = ctx.sem();

  // A tile's share of the reads and of the writes, cut in pieces: reads first, then writes.
  struct Share {
    uint64_t r0, r1, w0, w1;
    int64_t reads, writes;  // pieces
  };
  auto share = [&](int64_t tile) {
    Share sh{};
    if (tile >= tiles) return sh;
    sh.r0 = t.read * uint64_t(tile) / uint64_t(tiles), sh.r1 = t.read * uint64_t(tile + 1) / uint64_t(tiles);
    sh.w0 = t.write * uint64_t(tile) / uint64_t(tiles), sh.w1 = t.write * uint64_t(tile + 1) / uint64_t(tiles);
    sh.reads = ceil_div(int64_t(sh.r1 - sh.r0), int64_t(piece)), sh.writes = ceil_div(int64_t(sh.w1 - sh.w0), int64_t(piece));
    return sh;
  };
  int64_t most = 0;
  for (int64_t tile = 0; tile < tiles; ++tile) most = std::max(most, share(tile).reads + share(tile).writes);
  // Rounds of kRound pieces a tile, every tile of the chip in step (a barrier between them), so
  // that a long kernel may be sampled (KernelContext::plan_rounds); each round drains its pieces.
  constexpr int64_t kRound = 16;
  const int64_t emitted = ctx.plan_rounds(std::max<int64_t>(ceil_div(most, kRound), 1));
  std::vector<int> round_barrier(size_t(emitted), -1);
  for (int64_t e = 1; e < emitted; ++e) round_barrier[size_t(e)] = ctx.pb.barrier_id();

  for (int tile = 0; tile < ctx.tiles(); ++tile) {
    const Share sh = share(tile);
    for (int64_t e = 0; e < emitted; ++e) {
      if (e > 0) {
        ctx.pb.emit(tile, barrier(round_barrier[size_t(e)], ctx.tiles()));
        ctx.begin_round(tile, e);
      }
      const int64_t first = std::min(ctx.round_at(e) * kRound, sh.reads + sh.writes);
      const int64_t last = std::min(first + kRound, sh.reads + sh.writes);
      for (int64_t i = first; i < last; ++i) {
        const int64_t issued = i - first;
        if (issued >= kInFlight) ctx.pb.emit(tile, sem_wait(sem));
        const bool write = i >= sh.reads;
        const uint64_t at = write ? sh.w0 + uint64_t(i - sh.reads) * piece : sh.r0 + uint64_t(i) * piece;
        Block blk;
        blk.d0 = int64_t(std::min(piece, (write ? sh.w1 : sh.r1) - at));
        const Addr mem = hbm(int64_t(scratch + at));
        const Addr local = sram(int64_t(write ? buf[kInFlight] : buf[size_t(issued % kInFlight)]));
        ctx.pb.emit(tile, write ? dma(mem, local, blk, Dtype::Int8, Dtype::None, {sem, int64_t(isa::kTileSelf)})
                                : dma(local, mem, blk, Dtype::Int8, Dtype::None, {sem, int64_t(isa::kTileSelf)}));
      }
      if (last > first) ctx.pb.emit(tile, sem_wait(sem, std::min<int64_t>(last - first, kInFlight)));
    }
  }
}

}  // namespace tessera::compiler
