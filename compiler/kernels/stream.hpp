// y = x W^T (+ b) for few tokens (decode), where the weights dominate: every tile owns a slice
// of W's rows (output columns) and streams it from HBM in chunks through rotating buffers,
// each chunk multiplied as soon as it lands. The first chunks can be requested before the
// previous op has finished (prefetch), so HBM keeps streaming across op boundaries. x is small
// and read by every tile: it is staged once per shared-memory instance (cluster L2, GPU L2)
// when it fits there, so HBM delivers it once per instance instead of once per tile. Where x
// would take more than half a tile's SRAM share (GPU SMs), each weight chunk comes with the
// matching columns of x instead (x slices), read from the staged copy. Each finished block of
// output columns is stored at once from one of two buffers. Where the accumulators of all the
// tokens do not fit next to the weight buffers, tokens are taken in groups and a tile walks its
// weights once per group. With many tokens and few output columns a tile (a decode batch of
// 128 on a GPU), K is split over tiles too, so each tile needs only its range of x.
#pragma once

#include <cstdint>

#include "compiler/kernels/kernel.hpp"

namespace tessera::compiler {

struct StreamSpec {
  int64_t t = 0, k = 0, n = 0;  // x [t, k], w [n, k] -> y [t, n]
  Dtype xdt = Dtype::Bf16, wdt = Dtype::Bf16, ydt = Dtype::Bf16;
  Addr x, w, y;                  // HBM; w rows are packed (k elements each)
  int64_t ldx = 0, ldy = 0;      // bytes between rows; 0: packed
  isa::Act act = isa::Act::None;
  bool has_bias = false;
  Addr bias;
  Dtype bias_dtype = Dtype::Bf16;
};

// A tile's weights are walked in chunks of `chunk` rows (output columns) by `k_chunk` columns
// (reduction), k innermost: the MATMULs of one row block accumulate, the last one's epilogue
// writes the block. Row blocks as wide as the arrays keep them busy; K is cut when a full-K
// chunk would be too large.
struct StreamPlan {
  int64_t per_tile = 0;  // output columns per tile
  int64_t chunk = 0;     // weight rows per chunk
  int64_t k_chunk = 0;   // weight columns per chunk
  int64_t buffers = 3;
  int64_t tiles = 0;     // tiles with columns to compute
  bool x_slices = false; // x comes in k_chunk-column slices with each weight chunk
  int64_t group = 0;     // tokens per group (all of them unless SRAM is short)
  // Split K: ksplit tiles share each column range, each streaming a range of K; their fp32
  // partial sums [ksplit, t, n] go to the shared memory where they fit next to x (chip-wide
  // shared memory only), else to an HBM scratch area (memory planning places it), and
  // after a barrier every tile reduces reduce_cols columns at a time, with bias and activation.
  int64_t ksplit = 1;
  int64_t reduce_cols = 0;
  bool partials_shared = false;
  uint64_t scratch_bytes = 0, scratch = 0;
};

// K ranges for a stream of t tokens over [n, k] weights of we bytes (x reaches the tiles staged
// in the weights' dtype too): as many as pay for their partial sums (powers of two, ranges of at
// least 512); with the stream's estimated time, that of its slowest resource.
struct StreamSplit {
  int64_t ranges = 1;
  double seconds = 0;
};
StreamSplit stream_ksplit(const arch::Arch& a, int64_t t, int64_t n, int64_t k, int64_t we, uint64_t sram_budget,
                          uint64_t shared_budget);

StreamPlan plan_stream(const arch::Arch& a, const StreamSpec& s, uint64_t sram_budget, uint64_t shared_budget);

class StreamKernel {
 public:
  StreamKernel(KernelContext& ctx, const StreamSpec& s, const StreamPlan& p);
  void prefetch();  // the first weight chunks of every tile
  void body();      // x, the multiplies, the rest of the weights, the store

 private:
  // Chunk i of a tile walks token group i / (blocks * kchunks), then row blocks, K innermost:
  // the kc-th chunk of the tile's K range, K columns [k, k + kw).
  struct Chunk {
    int64_t group, block, kc, k, kw;
  };
  Chunk chunk_at(int tile, int64_t i) const;
  int64_t columns(int tile) const;
  int64_t first_column(int tile) const;
  std::pair<int64_t, int64_t> k_range(int tile) const;
  int64_t kchunks(int tile) const;
  int64_t chunks(int tile) const;  // groups x row blocks x k chunks
  int64_t group_rows(int64_t g) const;
  Addr partials(int64_t element) const;  // fp32 element [range, t, n] of the split-K partials
  void load_chunk(int tile, int64_t chunk);
  void load_x_slice(int tile, int64_t chunk);
  // Stages x in shared memory when it fits there and several tiles share it.
  void stage_x();
  // Group g's rows of x into the tile's SRAM (unless x comes in slices).
  void load_x(int tile, int64_t g);
  // Split K: after a barrier, the partial sums reduced into y.
  void reduce();

  KernelContext& ctx_;
  StreamSpec s_;
  StreamPlan p_;
  int64_t xe_, we_, ye_;
  uint64_t x_ = 0, acc_ = 0, bias_ = 0;
  uint64_t out_[2] = {};
  uint64_t partials_at_ = 0;  // in shared memory, when they are there
  uint64_t racc_ = 0, part_[2] = {}, rout_ = 0;  // the reduction's
  std::vector<uint64_t> wbuf_, xbuf_;  // xbuf_: x slices (x_slices)
  std::vector<int> wsem_, xbuf_sem_;
  bool staged_ = false;
  uint64_t staged_at_ = 0;  // shared-memory offset of the staged x
  int xsem_ = 0, stage_sem_ = 0, peers_sem_ = 0, bias_sem_ = 0, done_ = 0;
};

}  // namespace tessera::compiler
