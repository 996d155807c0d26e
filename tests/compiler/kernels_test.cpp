// Functional tests of the compiler's kernels, each emitted alone with ProgramBuilder and
// KernelContext, run by the simulator in functional mode, and compared with a double-precision
// reference computed here from the same rounded inputs (nothing of the compiler's or the
// simulator's arithmetic is reused). Outputs are bf16 unless a case says otherwise, so the
// tolerance is bf16's: relative L2 error below 1e-2 and no element off by more than 3% of the
// output's largest magnitude. Output buffers start filled with a sentinel, so an element the
// kernel forgets to write, or padding between rows it must not touch, is caught.
//
// Every case states what its plan must look like (several K chunks, several passes, a K cut of
// the weight stream, ...) and checks it, so a change of the planner that would silently drop
// the coverage fails here.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>

#include "arch/loader.hpp"
#include "compiler/builder.hpp"
#include "compiler/kernels/attention.hpp"
#include "compiler/kernels/gemm.hpp"
#include "compiler/kernels/rows.hpp"
#include "compiler/kernels/stream.hpp"
#include "compiler/target.hpp"
#include "isa/dtype.hpp"
#include "isa/verify.hpp"
#include "sim/simulation.hpp"

namespace tessera::compiler {
namespace {

using isa::Dtype;

constexpr float kSentinel = -1024.0f;  // exact in bf16, fp32 and fp8e5m2; never a result here

std::vector<float> random_values(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// The values as the hardware holds them once stored as `d`.
double round_to(Dtype d, double x) {
  uint8_t buf[8] = {};
  isa::store_element(d, buf, 0, float(x));
  return isa::load_element(d, buf, 0);
}
std::vector<double> rounded(const std::vector<float>& v, Dtype d) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = round_to(d, v[i]);
  return out;
}

double activate(isa::Act act, double x) {
  switch (act) {
    case isa::Act::None:
      return x;
    case isa::Act::Relu:
      return std::max(0.0, x);
    case isa::Act::Gelu:
      return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case isa::Act::Silu:
      return x / (1.0 + std::exp(-x));
  }
  return x;
}

// Relative L2 error and largest elementwise error relative to the largest reference magnitude.
struct Errors {
  double l2 = 0, max = 0;
};
Errors compare(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0, worst = 0, scale = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w)), norm += w * w;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = double(got[i]) - want[i];
    diff += d * d;
    worst = std::max(worst, std::isfinite(d) ? std::fabs(d) : INFINITY);
  }
  return {std::sqrt(diff / norm), worst / scale};
}

#define EXPECT_CLOSE(got, want, l2_tol, max_tol)                       \
  do {                                                                 \
    const Errors e_ = compare(got, want);                              \
    EXPECT_LT(e_.l2, l2_tol) << "relative L2 error";                   \
    EXPECT_LT(e_.max, max_tol) << "largest error / largest magnitude"; \
  } while (0)

// One kernel on one chip: HBM buffers with their initial contents, the program, a functional
// run, and the results read back.
class KernelRun {
 public:
  explicit KernelRun(const std::string& preset, const std::vector<std::string>& overrides = {})
      : arch_(arch::load_arch(preset, overrides)), pb_(arch_) {}

  const arch::Arch& arch() const { return arch_; }
  ProgramBuilder& pb() { return pb_; }

  // A buffer holding `values` stored as `d`.
  uint64_t input(const std::string& name, Dtype d, const std::vector<float>& values) {
    const uint64_t addr =
        pb_.hbm_region(name, isa::RegionKind::Io, isa::dtype_bytes(d, values.size()));
    std::vector<uint8_t> bytes(isa::dtype_bytes(d, values.size()));
    for (size_t i = 0; i < values.size(); ++i) isa::store_element(d, bytes.data(), i, values[i]);
    init_.push_back({addr, std::move(bytes)});
    return addr;
  }
  // A buffer of n elements of `d` filled with the sentinel.
  uint64_t output(const std::string& name, Dtype d, size_t n) {
    return input(name, d, std::vector<float>(n, kSentinel));
  }

  // Verifies the program against the architecture and runs it with real data.
  void run() {
    program_ = pb_.take();
    isa::verify_or_throw(program_, target_for(arch_));
    sim_ = std::make_unique<sim::Simulation>(arch_, sim::Mode::Functional);
    for (const auto& [addr, bytes] : init_) sim_->memory().hbm.write(addr, bytes);
    result_ = sim_->run(program_);
    ASSERT_GT(result_.time, 0u);
  }

  std::vector<float> read(uint64_t addr, Dtype d, size_t n) const {
    const std::vector<uint8_t> bytes = sim_->memory().hbm.read(addr, isa::dtype_bytes(d, n));
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = isa::load_element(d, bytes.data(), i);
    return v;
  }

 private:
  arch::Arch arch_;
  ProgramBuilder pb_;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> init_;
  isa::Program program_;
  std::unique_ptr<sim::Simulation> sim_;
  sim::RunResult result_;
};

// Rows `rows` x `cols` of a buffer whose rows are `ld` elements apart (padding in between).
std::vector<float> strided(const std::vector<float>& padded, int64_t rows, int64_t cols, int64_t ld,
                           int64_t col0 = 0) {
  std::vector<float> v;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) v.push_back(padded[size_t(r * ld + col0 + c)]);
  }
  return v;
}

// Elements of a padded buffer outside the rows x [col0, col0 + cols) window still hold the
// sentinel.
int64_t padding_touched(const std::vector<float>& padded, int64_t rows, int64_t cols, int64_t ld,
                        int64_t col0 = 0) {
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < ld; ++c) {
      if ((c < col0 || c >= col0 + cols) && padded[size_t(r * ld + c)] != kSentinel) ++n;
    }
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// GEMM: C = A B (+ bias), A [m, k]; B [k, n] or, transposed, [n, k]; act in the epilogue.

struct GemmCase {
  std::string name{};
  std::string preset{};
  std::vector<std::string> overrides{};
  int64_t m = 0, k = 0, n = 0;
  bool transposed = false, bias = false;
  isa::Act act = isa::Act::None;
  Dtype dtype = Dtype::Bf16, out = Dtype::Bf16;
  Dtype a_dtype = Dtype::None;   // A in HBM when it differs from dtype (converted as loaded)
  int64_t pad_a = 0, pad_c = 0;  // extra elements per row of A and C (column views)
  // What the plan must show for the case to cover what it is named for.
  int64_t min_kchunks = 1, min_passes = 1;
  bool partial_blocks = false;  // M or N not a multiple of the block
  int64_t min_panels = 0;       // > 0: staged through shared memory in at least this many K panels
  bool a_resident = false;      // ... with A rows kept in it across passes
  bool b_direct = false;        // ... with B straight from HBM
  bool short_last_panel = false;  // ... whose last K panel has fewer chunks than chunk buffers
};

std::ostream& operator<<(std::ostream& os, const GemmCase& c) {
  return os << c.name;
}

class Gemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(Gemm, MatchesReference) {
  const GemmCase& c = GetParam();
  KernelRun run(c.preset, c.overrides);
  const int64_t lda = c.k + c.pad_a, ldc = c.n + c.pad_c;
  const std::vector<float> a = random_values(size_t(c.m * lda), 11);
  const std::vector<float> b = random_values(size_t(c.k * c.n), 12);
  const std::vector<float> bias = random_values(size_t(c.n), 13, -0.5f, 0.5f);
  const Dtype adt = c.a_dtype == Dtype::None ? c.dtype : c.a_dtype;
  const int64_t ea = isa::dtype_bits(adt) / 8, eo = isa::dtype_bits(c.out) / 8;

  GemmSpec s;
  s.m = c.m, s.k = c.k, s.n = c.n;
  s.dtype = c.dtype, s.out = c.out, s.a_dtype = c.a_dtype;
  s.a = hbm(int64_t(run.input("A", adt, a))), s.lda = c.pad_a ? lda * ea : 0;
  s.b = hbm(int64_t(run.input("B", c.dtype, b)));
  s.b_transposed = c.transposed;
  const uint64_t c_addr = run.output("C", c.out, size_t(c.m * ldc));
  s.c = hbm(int64_t(c_addr)), s.ldc = c.pad_c ? ldc * eo : 0;
  s.act = c.act;
  if (c.bias) s.has_bias = true, s.bias = hbm(int64_t(run.input("bias", Dtype::Bf16, bias)));

  KernelContext ctx(run.pb());
  const GemmPlan p = plan_gemm(run.arch(), s, ctx.sram_left(), c.min_panels > 0 ? ctx.shared_left() : 0);
  const int64_t kchunks = (c.k + p.bk - 1) / p.bk;
  SCOPED_TRACE(fmt::format("plan: grid {}x{}, blocks {}x{}x{}, {} k chunks, {}x{} passes, panels of {}", p.gr,
                           p.gc, p.bm, p.bn, p.bk, kchunks, p.passes_m, p.passes_n, p.panel));
  if (c.min_panels > 0) {
    ASSERT_GT(p.panel, 0) << "the case is meant to stage through shared memory";
    EXPECT_GE((c.k + p.panel - 1) / p.panel, c.min_panels);
  } else {
    EXPECT_EQ(p.panel, 0);
  }
  EXPECT_EQ(p.a_resident, c.a_resident);
  EXPECT_EQ(p.b_direct, c.b_direct);
  if (c.short_last_panel) {
    const int64_t last = c.k - (c.k - 1) / p.panel * p.panel;
    EXPECT_LT((last + p.bk - 1) / p.bk, p.buffers) << "panel " << p.panel << ", bk " << p.bk;
  }
  // The multicast grid takes every tile; through shared memory it may leave a tenth idle.
  EXPECT_LE(p.gr * p.gc, run.arch().tiles());
  EXPECT_GE(p.gr * p.gc * 10, run.arch().tiles() * (c.min_panels > 0 ? 9 : 10));
  EXPECT_GE(kchunks, c.min_kchunks);
  EXPECT_GE(p.passes_m * p.passes_n, c.min_passes);
  if (c.partial_blocks) {
    EXPECT_TRUE(c.m % p.bm != 0 || c.n % p.bn != 0);
  }
  emit_gemm(ctx, s, p);
  run.run();
  if (HasFatalFailure()) return;

  std::vector<double> ar = rounded(a, adt);
  for (double& v : ar) v = round_to(c.dtype, v);  // converted to the arrays' dtype on the way in
  const std::vector<double> br = rounded(b, c.dtype),
                            biasr = rounded(bias, Dtype::Bf16);
  std::vector<double> want(size_t(c.m * c.n));
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double acc = c.bias ? biasr[size_t(j)] : 0.0;
      for (int64_t kk = 0; kk < c.k; ++kk) {
        const double bv = c.transposed ? br[size_t(j * c.k + kk)] : br[size_t(kk * c.n + j)];
        acc += ar[size_t(i * lda + kk)] * bv;
      }
      want[size_t(i * c.n + j)] = activate(c.act, acc);
    }
  }
  const std::vector<float> got = run.read(c_addr, c.out, size_t(c.m * ldc));
  const double tol = c.out == Dtype::Fp32 ? 1e-5 : 1e-2;
  EXPECT_CLOSE(strided(got, c.m, c.n, ldc), want, tol, 3 * tol);
  EXPECT_EQ(padding_touched(got, c.m, c.n, ldc), 0) << "the GEMM wrote into C's padding";
}

const std::vector<std::string> kSram64K = {"chip.tile.sram.capacity=64KiB"};
const std::vector<std::string> kSram48K = {"chip.tile.sram.capacity=48KiB"};

INSTANTIATE_TEST_SUITE_P(
    Kernels, Gemm,
    ::testing::Values(
        // 8x8 grid of 24x17 blocks over 190x130: partial blocks; K = 256 + 256 + 188.
        GemmCase{.name = "maia_rowmajor_3k",
                 .preset = "maia100-class",
                 .m = 190,
                 .k = 700,
                 .n = 130,
                 .min_kchunks = 3,
                 .partial_blocks = true},
        GemmCase{.name = "maia_transposed_3k_bias_relu",
                 .preset = "maia100-class",
                 .m = 190,
                 .k = 700,
                 .n = 130,
                 .transposed = true,
                 .bias = true,
                 .act = isa::Act::Relu,
                 .min_kchunks = 3,
                 .partial_blocks = true},
        // The smallest SRAM a 64x64 array allows: K in 7 chunks of at most 64 (the middle four in
        // a loop), two passes over M.
        GemmCase{.name = "maia_small_sram_transposed_loop_passes",
                 .preset = "maia100-class",
                 .overrides = kSram48K,
                 .m = 600,
                 .k = 400,
                 .n = 400,
                 .transposed = true,
                 .min_kchunks = 7,
                 .min_passes = 2,
                 .partial_blocks = true},
        GemmCase{.name = "maia_small_sram_rowmajor_loop_passes_bias",
                 .preset = "maia100-class",
                 .overrides = kSram48K,
                 .m = 600,
                 .k = 400,
                 .n = 400,
                 .bias = true,
                 .act = isa::Act::Silu,
                 .min_kchunks = 7,
                 .min_passes = 2,
                 .partial_blocks = true},
        // One K chunk, a 2x32 grid whose last column has no work.
        GemmCase{.name = "maia_one_chunk_empty_columns",
                 .preset = "maia100-class",
                 .m = 40,
                 .k = 64,
                 .n = 520,
                 .transposed = true,
                 .min_kchunks = 1,
                 .partial_blocks = true},
        // Two tiles, small SRAM: two passes, 8 K chunks (an odd number of middle ones for the
        // loop); A and C are column views of wider matrices; fp32 out for a tight check.
        GemmCase{.name = "tpu_small_sram_transposed_passes_views_fp32",
                 .preset = "tpu-v4-class",
                 .overrides = {"chip.tile.sram.capacity=768KiB"},
                 .m = 400,
                 .k = 1000,
                 .n = 400,
                 .transposed = true,
                 .bias = true,
                 .out = Dtype::Fp32,
                 .pad_a = 24,
                 .pad_c = 40,
                 .min_kchunks = 7,
                 .min_passes = 2},
        GemmCase{.name = "tpu_rowmajor_4k",
                 .preset = "tpu-v4-class",
                 .m = 300,
                 .k = 1000,
                 .n = 200,
                 .act = isa::Act::Gelu,
                 .min_kchunks = 4},
        // 132 SMs as an 11x12 grid; the last K chunk is 8 wide; C has padding.
        GemmCase{.name = "h100_transposed_bias_gelu",
                 .preset = "h100-sxm",
                 .m = 256,
                 .k = 520,
                 .n = 300,
                 .transposed = true,
                 .bias = true,
                 .act = isa::Act::Gelu,
                 .pad_c = 16,
                 .min_kchunks = 3,
                 .partial_blocks = true},
        GemmCase{.name = "h100_small_sram_rowmajor",
                 .preset = "h100-sxm",
                 .overrides = {"chip.tile.sram.capacity=32KiB"},
                 .m = 400,
                 .k = 300,
                 .n = 360,
                 .min_kchunks = 5,
                 .partial_blocks = true},
        GemmCase{.name = "h100_fp8_transposed",
                 .preset = "h100-sxm",
                 .m = 96,
                 .k = 600,
                 .n = 160,
                 .transposed = true,
                 .dtype = Dtype::Fp8E4M3,
                 .min_kchunks = 2,
                 .partial_blocks = true},
        // bf16 activations against fp8 weights (a prefill with --dtype fp8e4m3): A converted as
        // loaded, its addresses in bf16.
        GemmCase{.name = "maia_bf16_activations_fp8_weights",
                 .preset = "maia100-class",
                 .m = 190,
                 .k = 700,
                 .n = 130,
                 .transposed = true,
                 .dtype = Dtype::Fp8E4M3,
                 .a_dtype = Dtype::Bf16,
                 .pad_a = 8,
                 .min_kchunks = 2,
                 .partial_blocks = true},
        // Through shared memory (L2) of only 640 KiB: K takes several panels; small SRAM forces
        // passes, whose panels follow in one sequence.
        GemmCase{.name = "h100_l2_transposed_panels_passes_bias",
                 .preset = "h100-sxm",
                 .overrides = {"chip.shared_memory.capacity=640KiB", "chip.tile.sram.capacity=24KiB"},
                 .m = 1100,
                 .k = 700,
                 .n = 900,
                 .transposed = true,
                 .bias = true,
                 .act = isa::Act::Silu,
                 .min_kchunks = 5,
                 .min_passes = 2,
                 .partial_blocks = true,
                 .min_panels = 3},
        // The whole L2: A's rows stay in it across the passes of a pass row (two rows of
        // passes, so both sets of resident rows are used); a few rows of A with B straight from
        // HBM (one grid row, one pass row).
        GemmCase{.name = "h100_l2_a_resident_across_passes",
                 .preset = "h100-sxm",
                 .overrides = {"chip.tile.sram.capacity=24KiB"},
                 .m = 700,
                 .k = 700,
                 .n = 1300,
                 .transposed = true,
                 .bias = true,
                 .min_kchunks = 5,
                 .min_passes = 4,
                 .partial_blocks = true,
                 .min_panels = 1,
                 .a_resident = true},
        GemmCase{.name = "h100_l2_b_direct_rowmajor",
                 .preset = "h100-sxm",
                 .m = 12,
                 .k = 600,
                 .n = 900,
                 .min_kchunks = 3,
                 .partial_blocks = true,
                 .min_panels = 1,
                 .b_direct = true},
        GemmCase{.name = "h100_l2_rowmajor_panels_fp32",
                 .preset = "h100-sxm",
                 .overrides = {"chip.shared_memory.capacity=640KiB"},
                 .m = 300,
                 .k = 900,
                 .n = 270,
                 .out = Dtype::Fp32,
                 .pad_a = 12,
                 .pad_c = 4,
                 .min_kchunks = 3,
                 .partial_blocks = true,
                 .min_panels = 2},
        // Chunk loads run ahead across panels: a one-chunk last panel in every pass, and tiles
        // idle in some passes (partial blocks at both edges).
        GemmCase{.name = "h100_l2_short_last_panel_passes",
                 .preset = "h100-sxm",
                 .overrides = {"chip.shared_memory.capacity=640KiB", "chip.tile.sram.capacity=24KiB"},
                 .m = 1100,
                 .k = 980,
                 .n = 900,
                 .transposed = true,
                 .min_kchunks = 5,
                 .min_passes = 2,
                 .partial_blocks = true,
                 .min_panels = 3,
                 .short_last_panel = true},
        GemmCase{.name = "h100_l2_bf16_activations_fp8_weights",
                 .preset = "h100-sxm",
                 .m = 256,
                 .k = 520,
                 .n = 300,
                 .transposed = true,
                 .dtype = Dtype::Fp8E4M3,
                 .a_dtype = Dtype::Bf16,
                 .min_kchunks = 2,
                 .partial_blocks = true,
                 .min_panels = 1}),
    [](const ::testing::TestParamInfo<GemmCase>& i) { return i.param.name; });

// ---------------------------------------------------------------------------------------------
// Weight streaming: y = x W^T (+ b), x [t, k], W [n, k], few tokens.

struct StreamCase {
  std::string name{};
  std::string preset{};
  std::vector<std::string> overrides{};
  int64_t t = 1, k = 0, n = 0;
  bool bias = false;
  isa::Act act = isa::Act::None;
  Dtype wdt = Dtype::Bf16;
  int64_t pad_x = 0, pad_y = 0;
  bool k_cut = false;       // the plan must cut K (k_chunk < k)
  bool row_blocks = false;  // ... and walk a tile's columns in several row blocks
  bool x_slices = false;    // x comes in k_chunk-column slices with each weight chunk (else whole)
  bool groups = false;      // tokens must be taken in several groups
  int64_t ksplit = 1;       // K ranges the plan must split the columns' work into
};

std::ostream& operator<<(std::ostream& os, const StreamCase& c) {
  return os << c.name;
}

class Stream : public ::testing::TestWithParam<StreamCase> {};

TEST_P(Stream, MatchesReference) {
  const StreamCase& c = GetParam();
  KernelRun run(c.preset, c.overrides);
  const int64_t ldx = c.k + c.pad_x, ldy = c.n + c.pad_y;
  const std::vector<float> x = random_values(size_t(c.t * ldx), 21);
  const std::vector<float> w = random_values(size_t(c.n * c.k), 22);
  const std::vector<float> bias = random_values(size_t(c.n), 23, -0.5f, 0.5f);

  StreamSpec s;
  s.t = c.t, s.k = c.k, s.n = c.n;
  s.xdt = Dtype::Bf16, s.wdt = c.wdt, s.ydt = Dtype::Bf16;
  s.x = hbm(int64_t(run.input("x", Dtype::Bf16, x))), s.ldx = c.pad_x ? ldx * 2 : 0;
  s.w = hbm(int64_t(run.input("w", c.wdt, w)));
  const uint64_t y_addr = run.output("y", Dtype::Bf16, size_t(c.t * ldy));
  s.y = hbm(int64_t(y_addr)), s.ldy = c.pad_y ? ldy * 2 : 0;
  s.act = c.act;
  if (c.bias) s.has_bias = true, s.bias = hbm(int64_t(run.input("b", Dtype::Bf16, bias)));

  KernelContext ctx(run.pb());
  StreamPlan p = plan_stream(run.arch(), s, ctx.sram_left(), ctx.shared_left());
  if (p.scratch_bytes > 0) p.scratch = run.output("partials", Dtype::Fp32, p.scratch_bytes / 4);
  SCOPED_TRACE(fmt::format("plan: {} columns a tile on {} tiles, chunks {} x {}, K in {} ranges", p.per_tile,
                           p.tiles, p.chunk, p.k_chunk, p.ksplit));
  EXPECT_EQ(p.ksplit, c.ksplit);
  if (c.k_cut) {
    EXPECT_LT(p.k_chunk, c.k);
  }
  if (c.row_blocks) {
    EXPECT_LT(p.chunk, p.per_tile);
  }
  EXPECT_EQ(p.x_slices, c.x_slices);
  EXPECT_EQ(p.group < c.t, c.groups);
  EXPECT_NE(c.n % run.arch().tiles(), 0) << "cases keep N off a multiple of the tiles";
  StreamKernel kernel(ctx, s, p);
  kernel.prefetch();
  kernel.body();
  run.run();
  if (HasFatalFailure()) return;

  // x is converted to the weights' dtype on its way into SRAM.
  std::vector<double> xr = rounded(x, Dtype::Bf16);
  for (double& v : xr) v = round_to(c.wdt, v);
  const std::vector<double> wr = rounded(w, c.wdt);
  const std::vector<double> br = rounded(bias, Dtype::Bf16);
  std::vector<double> want(size_t(c.t * c.n));
  for (int64_t i = 0; i < c.t; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double acc = c.bias ? br[size_t(j)] : 0.0;
      for (int64_t kk = 0; kk < c.k; ++kk)
        acc += xr[size_t(i * ldx + kk)] * wr[size_t(j * c.k + kk)];
      want[size_t(i * c.n + j)] = activate(c.act, acc);
    }
  }
  const std::vector<float> got = run.read(y_addr, Dtype::Bf16, size_t(c.t * ldy));
  EXPECT_CLOSE(strided(got, c.t, c.n, ldy), want, 1e-2, 3e-2);
  EXPECT_EQ(padding_touched(got, c.t, c.n, ldy), 0) << "the stream wrote into y's padding";
}

INSTANTIATE_TEST_SUITE_P(
    Kernels, Stream,
    ::testing::Values(
        // Decode: one token, 301 outputs over 61 of the 64 tiles (5 each, the last one 1), K cut
        // in two.
        StreamCase{.name = "maia_decode_small_sram_kcut_bias_silu",
                   .preset = "maia100-class",
                   .overrides = kSram64K,
                   .t = 1,
                   .k = 2048,
                   .n = 301,
                   .bias = true,
                   .act = isa::Act::Silu,
                   .k_cut = true},
        // 32 tokens staged through the cluster L2 by four loaders; x and y are column views.
        StreamCase{.name = "maia_32_tokens_views",
                   .preset = "maia100-class",
                   .t = 32,
                   .k = 1536,
                   .n = 200,
                   .pad_x = 8,
                   .pad_y = 24,
                   .x_slices = true,
                   .ksplit = 2},
        StreamCase{.name = "maia_fp8_weights_kcut",
                   .preset = "maia100-class",
                   .overrides = kSram64K,
                   .t = 24,
                   .k = 4096,
                   .n = 330,
                   .bias = true,
                   .wdt = Dtype::Fp8E4M3,
                   .k_cut = true,
                   .x_slices = true,
                   .ksplit = 2},
        // Two tiles: 550 columns each in row blocks of 512, K cut to 256.
        StreamCase{.name = "tpu_small_sram_row_blocks_kcut",
                   .preset = "tpu-v4-class",
                   .overrides = {"chip.tile.sram.capacity=1MiB"},
                   .t = 4,
                   .k = 1024,
                   .n = 1099,
                   .bias = true,
                   .act = isa::Act::Relu,
                   .k_cut = true,
                   .row_blocks = true},
        StreamCase{.name = "tpu_row_blocks",
                   .preset = "tpu-v4-class",
                   .t = 3,
                   .k = 1024,
                   .n = 1099,
                   .row_blocks = true},
        // 132 SMs, x staged once through L2, K split over two tiles (partials in L2) and cut.
        StreamCase{.name = "h100_small_sram_kcut",
                   .preset = "h100-sxm",
                   .overrides = {"chip.tile.sram.capacity=128KiB"},
                   .t = 40,
                   .k = 4096,
                   .n = 1000,
                   .bias = true,
                   .act = isa::Act::Gelu,
                   .k_cut = true,
                   .x_slices = true,
                   .ksplit = 2},
        StreamCase{.name = "h100_decode", .preset = "h100-sxm", .t = 1, .k = 512, .n = 333},
        // x larger than half a tile's share: it comes in slices with the weight chunks, from
        // its copy staged in L2 (h100), or straight from HBM when the cluster L2 is too small
        // (maia with 16 KiB of it; fp8 weights, so the slices are converted on the way).
        StreamCase{.name = "h100_48_tokens_x_slices_from_l2",
                   .preset = "h100-sxm",
                   .t = 48,
                   .k = 4096,
                   .n = 300,
                   .bias = true,
                   .pad_y = 8,
                   .k_cut = true,
                   .x_slices = true,
                   .ksplit = 8},
        StreamCase{
            .name = "maia_x_slices_from_hbm_fp8",
            .preset = "maia100-class",
            .overrides = {"chip.tile.sram.capacity=128KiB", "chip.shared_memory.capacity=16KiB"},
            .t = 16,
            .k = 4096,
            .n = 130,
            .act = isa::Act::Silu,
            .wdt = Dtype::Fp8E4M3,
            .pad_x = 16,
            .k_cut = true,
            .x_slices = true,
            .ksplit = 4},
        // 200 tokens (a large decode batch) on a 48 KiB SM: the accumulators of all of them do
        // not fit beside the weights, so tokens come in groups (x in slices, from L2; y padded).
        StreamCase{.name = "h100_200_tokens_in_groups",
                   .preset = "h100-sxm",
                   .overrides = {"chip.tile.sram.capacity=48KiB"},
                   .t = 200,
                   .k = 256,
                   .n = 4300,
                   .bias = true,
                   .pad_y = 4,
                   .k_cut = true,
                   .x_slices = true,
                   .groups = true}),
    [](const ::testing::TestParamInfo<StreamCase>& i) { return i.param.name; });

// ---------------------------------------------------------------------------------------------
// Row-wise ops.

// An input of a row kernel: its whole buffer, and the operand's view of it (rows `ld`
// elements apart, starting at column `col0`; ld 0: packed).
struct Buf {
  std::vector<float> values;
  Dtype dtype = Dtype::Bf16;
  int64_t ld = 0, col0 = 0;
  bool broadcast = false;
};

struct RowsResult {
  RowsPlan plan;
  std::vector<float> out;  // rows x cols, packed
};

RowsResult run_rows(const std::string& preset, const std::vector<std::string>& overrides,
                    RowsSpec s, const std::vector<Buf>& inputs, Dtype out_dtype = Dtype::Bf16) {
  KernelRun run(preset, overrides);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Buf& b = inputs[i];
    const int64_t e = isa::dtype_bits(b.dtype) / 8;
    const uint64_t base = run.input(fmt::format("in{}", i), b.dtype, b.values);
    s.in.push_back({hbm(int64_t(base) + b.col0 * e), b.ld * e, b.dtype, b.broadcast});
  }
  const uint64_t out = run.output("out", out_dtype, size_t(s.rows * s.cols));
  s.out = {hbm(int64_t(out)), 0, out_dtype, false};
  KernelContext ctx(run.pb());
  RowsResult r;
  r.plan = plan_rows(run.arch(), s, ctx.sram_left());
  r.plan.round_chunks = rows_round_chunks(r.plan);  // as the compiler plans a rows op
  emit_rows(ctx, s, r.plan);
  run.run();
  r.out = run.read(out, out_dtype, size_t(s.rows * s.cols));
  return r;
}

RowsSpec rows_spec(OpKind kind, int64_t rows, int64_t cols, double eps = 0) {
  RowsSpec s;
  s.kind = kind, s.rows = rows, s.cols = cols, s.eps = eps;
  return s;
}

std::vector<double> rms_norm_ref(const std::vector<double>& x, const std::vector<double>& w,
                                 int64_t rows, int64_t cols, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += x[size_t(r * cols + c)] * x[size_t(r * cols + c)];
    const double inv = 1.0 / std::sqrt(ss / double(cols) + eps);
    for (int64_t c = 0; c < cols; ++c)
      y[size_t(r * cols + c)] = x[size_t(r * cols + c)] * inv * w[size_t(c)];
  }
  return y;
}

std::vector<double> layer_norm_ref(const std::vector<double>& x, const std::vector<double>& w,
                                   const std::vector<double>& b, int64_t rows, int64_t cols, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) mu += x[size_t(r * cols + c)] / double(cols);
    for (int64_t c = 0; c < cols; ++c) var += (x[size_t(r * cols + c)] - mu) * (x[size_t(r * cols + c)] - mu) / double(cols);
    for (int64_t c = 0; c < cols; ++c)
      y[size_t(r * cols + c)] = (x[size_t(r * cols + c)] - mu) / std::sqrt(var + eps) * w[size_t(c)] + b[size_t(c)];
  }
  return y;
}

// Many chunks a tile (a long prefill's rows): rounds of chunks with a barrier between them on
// every tile of the chip, with work or not (132 SMs, 127 with rows, the last with fewer rounds).
TEST(Rows, RmsNormInRounds) {
  const int64_t R = 2650, C = 1024;
  const auto x = random_values(size_t(R * C), 60, -2, 2), w = random_values(size_t(C), 61, 0.5f, 1.5f);
  const RowsResult r =
      run_rows("h100-sxm", {"chip.tile.sram.capacity=24KiB"}, rows_spec(OpKind::RmsNorm, R, C, 1e-5), {{x}, {w}});
  ASSERT_GT(r.plan.round_chunks, 0) << "chunks of " << r.plan.chunk << ", " << r.plan.per_tile << " rows a tile";
  EXPECT_LT(r.plan.tiles, 132);
  const int64_t last = R - (r.plan.tiles - 1) * r.plan.per_tile, round_rows = r.plan.chunk * r.plan.round_chunks;
  EXPECT_LT(ceil_div(last, round_rows), ceil_div(r.plan.per_tile, round_rows));
  EXPECT_CLOSE(r.out, rms_norm_ref(rounded(x, Dtype::Bf16), rounded(w, Dtype::Bf16), R, C, 1e-5), 1e-2, 3e-2);
}

TEST(Rows, RmsNorm) {
  const int64_t R = 100, C = 256;
  const auto x = random_values(size_t(R * C), 31, -2, 2),
             w = random_values(size_t(C), 32, 0.5f, 1.5f);
  const RowsResult r =
      run_rows("maia100-class", {}, rows_spec(OpKind::RmsNorm, R, C, 1e-5), {{x}, {w}});
  EXPECT_CLOSE(r.out, rms_norm_ref(rounded(x, Dtype::Bf16), rounded(w, Dtype::Bf16), R, C, 1e-5),
               1e-2, 3e-2);
}

TEST(Rows, RmsNormInSeveralChunksPerTile) {
  const int64_t R = 200, C = 2048;
  const auto x = random_values(size_t(R * C), 33, -2, 2),
             w = random_values(size_t(C), 34, 0.5f, 1.5f);
  const RowsResult r =
      run_rows("maia100-class", kSram64K, rows_spec(OpKind::RmsNorm, R, C, 1e-6), {{x}, {w}});
  EXPECT_LT(r.plan.chunk, r.plan.per_tile) << "the case must need several chunks per tile";
  EXPECT_CLOSE(r.out, rms_norm_ref(rounded(x, Dtype::Bf16), rounded(w, Dtype::Bf16), R, C, 1e-6),
               1e-2, 3e-2);
}

TEST(Rows, LayerNorm) {
  const int64_t R = 37, C = 320;
  const auto x = random_values(size_t(R * C), 35, -1, 3),
             w = random_values(size_t(C), 36, 0.5f, 1.5f),
             b = random_values(size_t(C), 37, -0.2f, 0.2f);
  const RowsResult r =
      run_rows("tpu-v4-class", {}, rows_spec(OpKind::LayerNorm, R, C, 1e-5), {{x}, {w}, {b}});
  EXPECT_CLOSE(r.out, layer_norm_ref(rounded(x, Dtype::Bf16), rounded(w, Dtype::Bf16), rounded(b, Dtype::Bf16), R, C, 1e-5),
               1e-2, 3e-2);
}

TEST(Rows, SoftmaxFp32Out) {
  const int64_t R = 300, C = 77;  // 132 SMs: 3 rows each on the first 100
  const auto x = random_values(size_t(R * C), 38, -6, 6);
  const RowsResult r =
      run_rows("h100-sxm", {}, rows_spec(OpKind::Softmax, R, C), {{x}}, Dtype::Fp32);
  const auto xr = rounded(x, Dtype::Bf16);
  std::vector<double> want(xr.size());
  for (int64_t i = 0; i < R; ++i) {
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, xr[size_t(i * C + c)]);
    for (int64_t c = 0; c < C; ++c) sum += std::exp(xr[size_t(i * C + c)] - mx);
    for (int64_t c = 0; c < C; ++c)
      want[size_t(i * C + c)] = std::exp(xr[size_t(i * C + c)] - mx) / sum;
  }
  EXPECT_CLOSE(r.out, want, 1e-4, 1e-4);
  for (int64_t i = 0; i < R; ++i) {
    const double sum = std::accumulate(r.out.begin() + i * C, r.out.begin() + (i + 1) * C, 0.0);
    EXPECT_NEAR(sum, 1.0, 1e-4) << "row " << i;
  }
}

// Rows of [gate | up], 2C wide: silu(gate) * up.
std::vector<double> swiglu_ref(const std::vector<double>& g, int64_t rows, int64_t cols) {
  std::vector<double> y(size_t(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < cols; ++c)
      y[size_t(i * cols + c)] = activate(isa::Act::Silu, g[size_t(i * 2 * cols + c)]) * g[size_t(i * 2 * cols + cols + c)];
  }
  return y;
}

TEST(Rows, SwiGlu) {
  const int64_t R = 50, C = 176;
  const auto gu = random_values(size_t(R * 2 * C), 39, -4, 4);
  const RowsResult r = run_rows("maia100-class", {}, rows_spec(OpKind::SwiGlu, R, C), {{gu}});
  EXPECT_CLOSE(r.out, swiglu_ref(rounded(gu, Dtype::Bf16), R, C), 1e-2, 3e-2);
}

TEST(Rows, Activations) {
  const int64_t R = 33, C = 100;
  const auto x = random_values(size_t(R * C), 40, -4, 4);
  const auto xr = rounded(x, Dtype::Bf16);
  const std::pair<OpKind, isa::Act> kinds[] = {{OpKind::Silu, isa::Act::Silu},
                                               {OpKind::Gelu, isa::Act::Gelu},
                                               {OpKind::Relu, isa::Act::Relu}};
  for (const auto& [kind, act] : kinds) {
    SCOPED_TRACE(std::string(op_kind_name(kind)));
    const RowsResult r = run_rows("maia100-class", {}, rows_spec(kind, R, C), {{x}});
    std::vector<double> want(xr.size());
    for (size_t i = 0; i < xr.size(); ++i) want[i] = activate(act, xr[i]);
    EXPECT_CLOSE(r.out, want, 1e-2, 3e-2);
  }
}

TEST(Rows, AddAndMul) {
  const int64_t R = 70, C = 96;
  const auto a = random_values(size_t(R * C), 41), b = random_values(size_t(R * C), 42),
             row = random_values(size_t(C), 43);
  const auto ar = rounded(a, Dtype::Bf16), br = rounded(b, Dtype::Bf16),
             rr = rounded(row, Dtype::Bf16);
  std::vector<double> sum(ar.size()), bsum(ar.size()), bprod(ar.size());
  for (int64_t i = 0; i < R * C; ++i) {
    sum[size_t(i)] = ar[size_t(i)] + br[size_t(i)];
    bsum[size_t(i)] = ar[size_t(i)] + rr[size_t(i % C)];
    bprod[size_t(i)] = ar[size_t(i)] * rr[size_t(i % C)];
  }
  {
    SCOPED_TRACE("add, h100");
    EXPECT_CLOSE(run_rows("h100-sxm", {}, rows_spec(OpKind::Add, R, C), {{a}, {b}}).out, sum, 1e-2,
                 3e-2);
  }
  {
    SCOPED_TRACE("add of a broadcast row, maia");
    EXPECT_CLOSE(run_rows("maia100-class", {}, rows_spec(OpKind::Add, R, C),
                          {{a}, {row, Dtype::Bf16, 0, 0, true}})
                     .out,
                 bsum, 1e-2, 3e-2);
  }
  {
    SCOPED_TRACE("mul of a broadcast row, tpu");
    EXPECT_CLOSE(run_rows("tpu-v4-class", {}, rows_spec(OpKind::Mul, R, C),
                          {{a}, {row, Dtype::Bf16, 0, 0, true}})
                     .out,
                 bprod, 1e-2, 3e-2);
  }
}

// Rows wider than the SRAM: column blocks; norms and softmax in two passes over the blocks.
TEST(Rows, RmsNormWideRowsInTwoPasses) {
  const int64_t R = 10, C = 12000;  // a row needs ~144 KB
  const auto x = random_values(size_t(R * C), 51, -2, 2),
             w = random_values(size_t(C), 52, 0.5f, 1.5f);
  const RowsResult r =
      run_rows("maia100-class", kSram64K, rows_spec(OpKind::RmsNorm, R, C, 1e-5), {{x}, {w}});
  EXPECT_TRUE(r.plan.two_pass);
  EXPECT_GT(ceil_div(C, r.plan.cb), 2) << "the case must need several column blocks";
  EXPECT_CLOSE(r.out, rms_norm_ref(rounded(x, Dtype::Bf16), rounded(w, Dtype::Bf16), R, C, 1e-5),
               1e-2, 3e-2);
}

TEST(Rows, LayerNormWideRowsInTwoPasses) {
  const int64_t R = 9, C = 70000;  // tpu: two tiles, five rows and four; a row needs ~1.1 MB
  const auto x = random_values(size_t(R * C), 53, -1, 3),
             w = random_values(size_t(C), 54, 0.5f, 1.5f),
             b = random_values(size_t(C), 55, -0.2f, 0.2f);
  const RowsResult r = run_rows("tpu-v4-class", {"chip.tile.sram.capacity=1MiB"}, rows_spec(OpKind::LayerNorm, R, C, 1e-5),
                                {{x}, {w}, {b}});
  EXPECT_TRUE(r.plan.two_pass);
  EXPECT_CLOSE(r.out, layer_norm_ref(rounded(x, Dtype::Bf16), rounded(w, Dtype::Bf16), rounded(b, Dtype::Bf16), R, C, 1e-5),
               1e-2, 3e-2);
}

// The running maximum must be rescaled as it grows: rows ramp up, so later blocks hold larger
// values (an even and an odd number of blocks, as the maximum alternates between two buffers).
TEST(Rows, SoftmaxWideRowsInTwoPasses) {
  for (const int64_t C : {4000, 5000}) {
    SCOPED_TRACE(C);
    const int64_t R = 6;
    auto x = random_values(size_t(R * C), 56, -3, 3);
    for (int64_t i = 0; i < R * C; ++i) x[size_t(i)] += 8.0f * float(i % C) / float(C);
    const RowsResult r =
        run_rows("h100-sxm", {"chip.tile.sram.capacity=24KiB"}, rows_spec(OpKind::Softmax, R, C), {{x}}, Dtype::Fp32);
    EXPECT_TRUE(r.plan.two_pass);
    const auto xr = rounded(x, Dtype::Bf16);
    std::vector<double> want(xr.size());
    for (int64_t i = 0; i < R; ++i) {
      double mx = -INFINITY, sum = 0;
      for (int64_t c = 0; c < C; ++c) mx = std::max(mx, xr[size_t(i * C + c)]);
      for (int64_t c = 0; c < C; ++c) sum += std::exp(xr[size_t(i * C + c)] - mx);
      for (int64_t c = 0; c < C; ++c)
        want[size_t(i * C + c)] = std::exp(xr[size_t(i * C + c)] - mx) / sum;
    }
    EXPECT_CLOSE(r.out, want, 1e-4, 1e-3);
  }
}

// SwiGLU on rows of 28672 columns (a 70B model's MLP) on a small SRAM: column blocks.
TEST(Rows, SwiGluWideRowsInBlocks) {
  const int64_t R = 70, C = 28672;  // more rows than tiles: no column split
  const auto gu = random_values(size_t(R * 2 * C), 57, -4, 4);
  const RowsResult r =
      run_rows("maia100-class", kSram64K, rows_spec(OpKind::SwiGlu, R, C), {{gu}});
  EXPECT_GT(r.plan.cb, 0);
  EXPECT_LT(r.plan.cb, C);
  EXPECT_CLOSE(r.out, swiglu_ref(rounded(gu, Dtype::Bf16), R, C), 1e-2, 3e-2);
}

// Two rows on 64 tiles: the columns of an element-wise op are spread over the tiles too, and a
// broadcast row is read at each tile's columns.
TEST(Rows, ElementwiseColumnsOverTiles) {
  const int64_t R = 2, C = 9000;
  const auto a = random_values(size_t(R * C), 58), row = random_values(size_t(C), 59);
  const RowsResult r = run_rows("maia100-class", {}, rows_spec(OpKind::Mul, R, C),
                                {{a}, {row, Dtype::Bf16, 0, 0, true}});
  EXPECT_GT(r.plan.col_tiles, 8);
  const auto ar = rounded(a, Dtype::Bf16), rr = rounded(row, Dtype::Bf16);
  std::vector<double> want(ar.size());
  for (int64_t i = 0; i < R * C; ++i) want[size_t(i)] = ar[size_t(i)] * rr[size_t(i % C)];
  EXPECT_CLOSE(r.out, want, 1e-2, 3e-2);
}

// Rotary embeddings (rotate-half): token t of a sequence of `seq` uses table row t % seq; with
// seq 1 (decode) every token uses row 0. x is a column view of a wider matrix (a Split output,
// as the fused q/k/v projection gives).
struct RopeCase {
  std::string preset{};
  std::vector<std::string> overrides{};
  int64_t batch = 1, seq = 1, heads = 1, head_dim = 64, first_position = 0;
  int64_t wide_cols = 0, col0 = 0;  // the matrix x is a view of
  bool chunks = false;              // the plan must use several chunks per tile
  bool wraps = false;  // a chunk must hold the end of one sequence and the start of the next
  bool blocks = false;  // the plan must cut rows into blocks of heads
  // Prefill: chunks of fewer tokens than heads (rotated token by token) or not (head by head).
  bool token_by_token = false;
};

void check_rope(const RopeCase& c) {
  const int64_t T = c.batch * c.seq, C = c.heads * c.head_dim, half = c.head_dim / 2;
  std::vector<float> cos, sin;
  for (int64_t p = 0; p < c.seq; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle =
          double(c.first_position + p) * std::pow(10000.0, -2.0 * double(i) / double(c.head_dim));
      cos.push_back(float(std::cos(angle)));
      sin.push_back(float(std::sin(angle)));
    }
  }
  const auto wide = random_values(size_t(T * c.wide_cols), 44, -2, 2);
  RowsSpec s = rows_spec(OpKind::Rope, T, C);
  s.heads = c.heads, s.head_dim = c.head_dim, s.seq = c.seq;
  const RowsResult r =
      run_rows(c.preset, c.overrides, s,
               {{wide, Dtype::Bf16, c.wide_cols, c.col0}, {cos, Dtype::Fp32}, {sin, Dtype::Fp32}});
  if (c.chunks) {
    EXPECT_LT(r.plan.chunk, r.plan.per_tile) << "the case must need several chunks per tile";
  }
  if (c.seq > 1) {
    const int64_t heads = r.plan.cb > 0 ? r.plan.cb / c.head_dim : c.heads;
    EXPECT_EQ(r.plan.chunk < heads, c.token_by_token) << "chunks of " << r.plan.chunk << " tokens, " << heads << " heads";
  }
  if (c.blocks) {
    EXPECT_GT(r.plan.cb, 0) << "the case must cut rows into blocks";
    EXPECT_EQ(r.plan.cb % c.head_dim, 0);
  }
  if (c.wraps) {
    bool wraps = false;
    for (int64_t r0 = 0; r0 < T; r0 += r.plan.per_tile) {
      const int64_t r1 = std::min(T, r0 + r.plan.per_tile);
      for (int64_t a = r0; a < r1; a += r.plan.chunk)
        wraps = wraps || a % c.seq + std::min(r.plan.chunk, r1 - a) > c.seq;
    }
    EXPECT_TRUE(wraps) << "the case must have a chunk across a sequence boundary";
  }
  const auto xr = rounded(wide, Dtype::Bf16);
  std::vector<double> want(size_t(T * C));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = t % c.seq;
    for (int64_t h = 0; h < c.heads; ++h) {
      for (int64_t i = 0; i < half; ++i) {
        const double x1 = xr[size_t(t * c.wide_cols + c.col0 + h * c.head_dim + i)];
        const double x2 = xr[size_t(t * c.wide_cols + c.col0 + h * c.head_dim + half + i)];
        const double co = cos[size_t(p * half + i)], si = sin[size_t(p * half + i)];
        want[size_t(t * C + h * c.head_dim + i)] = x1 * co - x2 * si;
        want[size_t(t * C + h * c.head_dim + half + i)] = x2 * co + x1 * si;
      }
    }
  }
  EXPECT_CLOSE(r.out, want, 1e-2, 3e-2);
}

TEST(Rows, RopePrefillOnAViewH100) {
  check_rope({.preset = "h100-sxm",
              .batch = 2,
              .seq = 12,
              .heads = 4,
              .head_dim = 32,
              .wide_cols = 256,
              .col0 = 64,
              .token_by_token = true});
}
// Chunks of more tokens than heads: head by head.
TEST(Rows, RopePrefillHeadByHead) {
  check_rope({.preset = "h100-sxm", .batch = 4, .seq = 300, .heads = 2, .head_dim = 64, .wide_cols = 128});
}
TEST(Rows, RopeDecodeMaia) {
  check_rope({.preset = "maia100-class",
              .batch = 5,
              .seq = 1,
              .heads = 2,
              .head_dim = 64,
              .first_position = 37,
              .wide_cols = 128});
}
TEST(Rows, RopePrefillInChunksMaia) {
  check_rope({.preset = "maia100-class",
              .overrides = kSram64K,
              .batch = 8,
              .seq = 80,
              .heads = 8,
              .head_dim = 128,
              .first_position = 3,
              .wide_cols = 1536,
              .col0 = 512,
              .chunks = true,
              .token_by_token = true});
}
// 64 heads of 128 on a 64 KiB SRAM: blocks of whole heads.
TEST(Rows, RopeInBlocksOfHeads) {
  check_rope({.preset = "maia100-class",
              .overrides = kSram64K,
              .batch = 2,
              .seq = 5,
              .heads = 64,
              .head_dim = 128,
              .first_position = 11,
              .wide_cols = 8192,
              .blocks = true,
              .token_by_token = true});
}
TEST(Rows, RopeChunksAcrossSequenceBoundaries) {
  // 40 sequences of 7 tokens, 5 rows a tile: tile 1's rows 5..9 are positions 5, 6, 0, 1, 2.
  check_rope({.preset = "maia100-class",
              .overrides = kSram64K,
              .batch = 40,
              .seq = 7,
              .heads = 8,
              .head_dim = 128,
              .wide_cols = 1024,
              .wraps = true,
              .token_by_token = true});
}

// ---------------------------------------------------------------------------------------------
// Embedding gather: output row t = table row rows[t], exactly.

TEST(Gather, CopiesTableRows) {
  KernelRun run("maia100-class");
  const int64_t V = 300, C = 96;
  const auto table = random_values(size_t(V * C), 45);
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < 70; ++t) rows.push_back((t * 37 + 5) % V);
  rows[3] = rows[0], rows[4] = V - 1, rows[5] = 0;
  const Operand2 tab{hbm(int64_t(run.input("table", Dtype::Bf16, table))), 0, Dtype::Bf16, false};
  const uint64_t out = run.output("out", Dtype::Bf16, rows.size() * size_t(C));
  KernelContext ctx(run.pb());
  emit_gather(ctx, tab, C, rows, {hbm(int64_t(out)), 0, Dtype::Bf16, false});
  run.run();
  const auto got = run.read(out, Dtype::Bf16, rows.size() * size_t(C));
  const auto tr = rounded(table, Dtype::Bf16);
  int64_t wrong = 0;
  for (size_t t = 0; t < rows.size(); ++t) {
    for (int64_t c = 0; c < C; ++c)
      wrong += got[t * size_t(C) + size_t(c)] != tr[size_t(rows[t] * C + c)];
  }
  EXPECT_EQ(wrong, 0);
}

// ---------------------------------------------------------------------------------------------
// Attention with a KV cache: the step's keys and values are appended to the cache at positions
// past .. past + seq - 1, and every query attends over the cache's first `past` positions and
// the step's tokens (causally: up to its own position).

struct AttentionCase {
  std::string name{};
  std::string preset{};
  std::vector<std::string> overrides{};
  int64_t batch = 1, seq = 1, past = 0, heads = 1, kv_heads = 1, head_dim = 64;
  // A ragged step: (past, tokens) per sequence (batch, seq and past unused).
  std::vector<std::pair<int64_t, int64_t>> ragged{};
  int64_t spare = 0;  // cache positions beyond the longest step's
  bool causal = true;
  Dtype kv_dtype = Dtype::Bf16;
  bool fused_qkv = false;  // q, k, v as column views of one [tokens, (H + 2 Hkv) D] matrix
  // Plan expectations.
  int64_t min_q_blocks = 1;
  int64_t splits = 1;
  bool several_heads_per_tile = false;
  int64_t key_block = 0;    // asked of the planner (0: as large as fit)
  bool key_blocks = false;  // the plan must walk a unit's keys in several blocks
  bool grouped = false;     // short units must go in groups
};

std::ostream& operator<<(std::ostream& os, const AttentionCase& c) {
  return os << c.name;
}

class Attention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(Attention, MatchesReferenceAndAppendsToCache) {
  const AttentionCase& c = GetParam();
  KernelRun run(c.preset, c.overrides);
  const int64_t B = c.ragged.empty() ? c.batch : int64_t(c.ragged.size()), H = c.heads, Hkv = c.kv_heads,
                D = c.head_dim, G = H / Hkv;
  // Per sequence: past, tokens and first row.
  std::vector<int64_t> Ps, Ss, row0;
  int64_t T = 0, longest = 0;
  for (int64_t b = 0; b < B; ++b) {
    Ps.push_back(c.ragged.empty() ? c.past : c.ragged[size_t(b)].first);
    Ss.push_back(c.ragged.empty() ? c.seq : c.ragged[size_t(b)].second);
    row0.push_back(T), T += Ss.back(), longest = std::max(longest, Ps.back() + Ss.back());
  }
  const int64_t cap = longest + c.spare;
  const int64_t qw = H * D, kw = Hkv * D, wide = qw + 2 * kw;

  AttentionSpec s;
  s.batch = B, s.seq = c.seq, s.past = c.past, s.heads = H, s.kv_heads = Hkv, s.head_dim = D;
  if (!c.ragged.empty()) s.seq_lens = Ss, s.past_lens = Ps;
  s.capacity = cap, s.causal = c.causal, s.kv_dtype = c.kv_dtype;
  // q, k, v: either three packed matrices or views of one.
  std::vector<float> q, k, v;
  if (c.fused_qkv) {
    const auto all = random_values(size_t(T * wide), 51, -2, 2);
    const uint64_t base = run.input("qkv", Dtype::Bf16, all);
    q = strided(all, T, qw, wide), k = strided(all, T, kw, wide, qw),
    v = strided(all, T, kw, wide, qw + kw);
    s.q = {hbm(int64_t(base)), wide * 2, Dtype::Bf16, false};
    s.k = {hbm(int64_t(base) + qw * 2), wide * 2, Dtype::Bf16, false};
    s.v = {hbm(int64_t(base) + (qw + kw) * 2), wide * 2, Dtype::Bf16, false};
  } else {
    q = random_values(size_t(T * qw), 52, -2, 2), k = random_values(size_t(T * kw), 53, -2, 2);
    v = random_values(size_t(T * kw), 54, -2, 2);
    s.q = {hbm(int64_t(run.input("q", Dtype::Bf16, q))), 0, Dtype::Bf16, false};
    s.k = {hbm(int64_t(run.input("k", Dtype::Bf16, k))), 0, Dtype::Bf16, false};
    s.v = {hbm(int64_t(run.input("v", Dtype::Bf16, v))), 0, Dtype::Bf16, false};
  }
  // Caches [B, Hkv, cap, D]: positions before a sequence's past hold earlier keys and values,
  // the rest the sentinel.
  auto cache_init = [&](uint64_t seed) {
    std::vector<float> cv = random_values(size_t(B * Hkv * cap * D), seed, -2, 2);
    for (int64_t bh = 0; bh < B * Hkv; ++bh) {
      for (int64_t pos = Ps[size_t(bh / Hkv)]; pos < cap; ++pos) {
        for (int64_t d = 0; d < D; ++d) cv[size_t((bh * cap + pos) * D + d)] = kSentinel;
      }
    }
    return cv;
  };
  const std::vector<float> kc0 = cache_init(55), vc0 = cache_init(56);
  const uint64_t kc = run.input("kcache", c.kv_dtype, kc0),
                 vc = run.input("vcache", c.kv_dtype, vc0);
  s.kcache = hbm(int64_t(kc)), s.vcache = hbm(int64_t(vc));
  const uint64_t out = run.output("out", Dtype::Bf16, size_t(T * qw));
  s.out = {hbm(int64_t(out)), 0, Dtype::Bf16, false};

  KernelContext ctx(run.pb());
  AttentionPlan p = plan_attention(run.arch(), s, ctx.sram_left(), c.key_block);
  if (p.scratch_bytes > 0) p.scratch = run.output("scratch", Dtype::Fp32, p.scratch_bytes / 4);
  SCOPED_TRACE(fmt::format(
      "plan: query blocks of {}, {} units on {} tiles, {} key ranges, key blocks of {}, groups of {}",
      p.q_block, p.units, p.tiles, p.splits, p.key_block, p.group));
  EXPECT_EQ(p.group > 1, c.grouped);
  if (c.key_blocks) {
    EXPECT_LT(p.key_block * p.splits, longest) << "the case must walk keys in several blocks";
  } else {
    EXPECT_GE(p.key_block * p.splits, longest) << "the case must take each unit's keys in one block";
  }
  EXPECT_GE((*std::max_element(Ss.begin(), Ss.end()) + p.q_block - 1) / p.q_block, c.min_q_blocks);
  EXPECT_EQ(p.splits, c.splits);
  if (c.several_heads_per_tile) {
    EXPECT_GT(B * Hkv, p.tiles);
  }
  emit_attention(ctx, s, p);
  run.run();
  if (HasFatalFailure()) return;

  const auto qr = rounded(q, Dtype::Bf16), kr = rounded(k, Dtype::Bf16),
             vr = rounded(v, Dtype::Bf16);
  const auto kcr = rounded(kc0, c.kv_dtype), vcr = rounded(vc0, c.kv_dtype);
  std::vector<double> want(size_t(T * qw));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t P = Ps[size_t(b)], S = Ss[size_t(b)], r0 = row0[size_t(b)];
    for (int64_t hq = 0; hq < H; ++hq) {
      const int64_t h = hq / G;
      auto key = [&](const std::vector<double>& cache, const std::vector<double>& fresh, int64_t j,
                     int64_t d) {
        return j < P ? cache[size_t(((b * Hkv + h) * cap + j) * D + d)]
                     : fresh[size_t((r0 + j - P) * kw + h * D + d)];
      };
      for (int64_t i = 0; i < S; ++i) {
        const int64_t n = c.causal ? P + i + 1 : P + S;
        std::vector<double> score(static_cast<size_t>(n));
        double mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += qr[size_t((r0 + i) * qw + hq * D + d)] * key(kcr, kr, j, d);
          score[size_t(j)] = dot / std::sqrt(double(D));
          mx = std::max(mx, score[size_t(j)]);
        }
        double z = 0;
        for (double& sc : score) sc = std::exp(sc - mx), z += sc;
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t j = 0; j < n; ++j) o += score[size_t(j)] * key(vcr, vr, j, d);
          want[size_t((r0 + i) * qw + hq * D + d)] = o / z;
        }
      }
    }
  }
  EXPECT_CLOSE(run.read(out, Dtype::Bf16, size_t(T * qw)), want, 1e-2, 3e-2);

  // The caches: old positions untouched, the step's keys and values (in the cache's dtype) at
  // past .. past + seq - 1, the spare positions untouched.
  for (int kv = 0; kv < 2; ++kv) {
    SCOPED_TRACE(kv ? "v cache" : "k cache");
    const auto got = run.read(kv ? vc : kc, c.kv_dtype, size_t(B * Hkv * cap * D));
    const auto& before = kv ? vcr : kcr;
    const auto& fresh = kv ? vr : kr;
    int64_t wrong = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t P = Ps[size_t(b)], S = Ss[size_t(b)];
      for (int64_t h = 0; h < Hkv; ++h) {
        for (int64_t pos = 0; pos < cap; ++pos) {
          for (int64_t d = 0; d < D; ++d) {
            const size_t at = size_t(((b * Hkv + h) * cap + pos) * D + d);
            const bool is_new = pos >= P && pos < P + S;
            const double expect =
                is_new ? round_to(c.kv_dtype, fresh[size_t((row0[size_t(b)] + pos - P) * kw + h * D + d)])
                       : before[at];
            wrong += double(got[at]) != expect;
          }
        }
      }
    }
    EXPECT_EQ(wrong, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kernels, Attention,
    ::testing::Values(
        // Decode steps: one token per sequence over a cache of 37 (GQA 4:1) or 50 (MQA) positions.
        AttentionCase{.name = "maia_decode_gqa",
                      .preset = "maia100-class",
                      .batch = 2,
                      .seq = 1,
                      .past = 37,
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .spare = 10,
                      .grouped = true},
        AttentionCase{.name = "h100_decode_mqa_fp8_cache",
                      .preset = "h100-sxm",
                      .batch = 3,
                      .seq = 1,
                      .past = 50,
                      .heads = 4,
                      .kv_heads = 1,
                      .head_dim = 128,
                      .spare = 3,
                      .kv_dtype = Dtype::Fp8E4M3,
                      .grouped = true},
        // Prefill: 300 tokens in query blocks of 128, 128 and 44 (GQA 4:1: 512 rows), from
        // the fused q/k/v projection; units of unequal cost balanced over the tiles.
        AttentionCase{.name = "maia_prefill_causal_fused_qkv",
                      .preset = "maia100-class",
                      .batch = 2,
                      .seq = 300,
                      .past = 0,
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 32,
                      .fused_qkv = true,
                      .min_q_blocks = 3,
                      .grouped = true},
        // Chunked prefill (a step after a past) on two tiles, four heads each: the next head's
        // keys and values load while the current one computes.
        AttentionCase{.name = "tpu_prefill_after_past_double_buffered",
                      .preset = "tpu-v4-class",
                      .batch = 2,
                      .seq = 20,
                      .past = 12,
                      .heads = 4,
                      .kv_heads = 4,
                      .head_dim = 64,
                      .spare = 5,
                      .fused_qkv = true,
                      .several_heads_per_tile = true,
                      .grouped = true},
        AttentionCase{.name = "tpu_prefill_not_causal",
                      .preset = "tpu-v4-class",
                      .batch = 1,
                      .seq = 24,
                      .past = 8,
                      .heads = 4,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .causal = false,
                      .grouped = true},
        // Small SRAM: key blocks shrink to fit next to 128 query rows.
        AttentionCase{.name = "maia_small_sram_key_blocks",
                      .preset = "maia100-class",
                      .overrides = {"chip.tile.sram.capacity=256KiB"},
                      .batch = 1,
                      .seq = 64,
                      .past = 448,
                      .heads = 4,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .key_blocks = true},
        // Keys in blocks with an online softmax: asked for (blocks of 64 over 100 + 40 keys, the
        // causal diagonal inside the last blocks), and forced by a context that does not fit a
        // GPU SM's SRAM (3001 positions, fp8 cache; four units on 132 SMs also split their keys
        // in five ranges, combined after a barrier).
        AttentionCase{.name = "maia_prefill_after_past_key_blocks",
                      .preset = "maia100-class",
                      .batch = 2,
                      .seq = 40,
                      .past = 100,
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 32,
                      .spare = 3,
                      .fused_qkv = true,
                      .key_block = 64,
                      .key_blocks = true},
        AttentionCase{.name = "tpu_not_causal_key_blocks",
                      .preset = "tpu-v4-class",
                      .batch = 1,
                      .seq = 24,
                      .past = 8,
                      .heads = 4,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .causal = false,
                      .key_block = 16,
                      .key_blocks = true},
        AttentionCase{.name = "h100_decode_long_context_fp8_cache",
                      .preset = "h100-sxm",
                      .batch = 2,
                      .seq = 1,
                      .past = 3000,
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 128,
                      .spare = 1,
                      .kv_dtype = Dtype::Fp8E4M3,
                      .splits = 5,
                      .key_blocks = true},
        // Causal prefill in key blocks of 32: query blocks 0 and 2 of a head paired (128 + 300
        // keys), block 1 alone (256), four items on two tiles in two rounds with a barrier between.
        AttentionCase{.name = "tpu_prefill_causal_pairs_in_rounds",
                      .preset = "tpu-v4-class",
                      .batch = 1,
                      .seq = 300,
                      .past = 0,
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 32,
                      .min_q_blocks = 3,
                      .key_block = 32,
                      .key_blocks = true},
        // Through h100's L2: the step's keys and values (column views of a fused QKV) are staged
        // there once, and each query block of two sequences reads them from it in key blocks.
        AttentionCase{.name = "h100_prefill_kv_staged_in_l2_fused_qkv",
                      .preset = "h100-sxm",
                      .batch = 2,
                      .seq = 260,
                      .past = 0,
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .fused_qkv = true,
                      .min_q_blocks = 2,
                      .key_blocks = true},
        // A decode step of one sequence over 2001 positions: its two units split their keys in
        // three ranges of one block each (in a group), combined after a barrier.
        AttentionCase{.name = "maia_decode_split_keys",
                      .preset = "maia100-class",
                      .batch = 1,
                      .seq = 1,
                      .past = 2000,
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .spare = 7,
                      .splits = 3,
                      .grouped = true},
        // Ragged steps (continuous batching): a decode after 37, a prompt's chunk of 20 after 12,
        // a new prompt of 7 and a decode after 3 in one step; in short units, grouped.
        AttentionCase{.name = "maia_ragged_prefill_and_decode",
                      .preset = "maia100-class",
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .ragged = {{37, 1}, {12, 20}, {0, 7}, {3, 1}},
                      .spare = 4,
                      .grouped = true},
        // ... and in key blocks of 32 (a chunk of 300 after 40: causal pairs; decodes after 90
        // and 5; a new prompt of 33), longest first over two tiles.
        AttentionCase{.name = "tpu_ragged_key_blocks",
                      .preset = "tpu-v4-class",
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 32,
                      .ragged = {{90, 1}, {40, 300}, {5, 1}, {0, 33}},
                      .min_q_blocks = 3,
                      .key_block = 32,
                      .key_blocks = true},
        // On h100: the new prompts' keys and values staged in L2 (fused QKV), a chunk after a
        // past read from the cache and its own k and v; fp8 cache.
        AttentionCase{.name = "h100_ragged_staged_and_cached_fp8_cache",
                      .preset = "h100-sxm",
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .ragged = {{0, 150}, {200, 64}, {700, 1}, {0, 9}},
                      .spare = 2,
                      .kv_dtype = Dtype::Fp8E4M3,
                      .fused_qkv = true,
                      .key_blocks = true},
        // Decodes over unlike contexts (1300 and 2700) split their keys in two ranges (the
        // shorter one's 1301 keys allow two of at least 512).
        AttentionCase{.name = "maia_ragged_decodes_split_keys",
                      .preset = "maia100-class",
                      .heads = 8,
                      .kv_heads = 2,
                      .head_dim = 64,
                      .ragged = {{1300, 1}, {2700, 1}},
                      .spare = 3,
                      .splits = 2,
                      .grouped = true}),
    [](const ::testing::TestParamInfo<AttentionCase>& i) { return i.param.name; });

}  // namespace
}  // namespace tessera::compiler
