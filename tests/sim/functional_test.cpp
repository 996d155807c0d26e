// Functional mode: hand-written programs (a GEMM over four tiles, softmax over rows, RMSNorm)
// compute what an independent double-precision reference computes, within dtype tolerance;
// and functional and performance mode report the same time.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "arch/loader.hpp"
#include "isa/assembly.hpp"
#include "sim/simulation.hpp"

namespace tessera::sim {
namespace {

using isa::Dtype;

std::vector<float> random_values(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void write_values(Memory& m, uint64_t addr, Dtype d, const std::vector<float>& v) {
  std::vector<uint8_t> bytes(isa::dtype_bytes(d, v.size()));
  for (size_t i = 0; i < v.size(); ++i) isa::store_element(d, bytes.data(), i, v[i]);
  m.write(addr, bytes);
}

std::vector<float> read_values(const Memory& m, uint64_t addr, Dtype d, size_t n) {
  std::vector<uint8_t> bytes = m.read(addr, isa::dtype_bytes(d, n));
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = isa::load_element(d, bytes.data(), i);
  return v;
}

// Values as the hardware sees them after rounding to `d`.
std::vector<double> rounded(const std::vector<float>& v, Dtype d) {
  std::vector<double> out(v.size());
  uint8_t buf[4];
  for (size_t i = 0; i < v.size(); ++i) {
    isa::store_element(d, buf, 0, v[i]);
    out[i] = isa::load_element(d, buf, 0);
  }
  return out;
}

double max_relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double worst = 0, scale = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / scale);
  return worst;
}

TEST(Functional, FourTileGemmExampleMatchesReference) {
  const isa::Program p = isa::assemble_file(std::string(TESSERA_SOURCE_DIR) + "/isa/examples/gemm_4tile.tasm");
  Simulation sim(arch::load_arch("maia100-class"), Mode::Functional);
  const int M = 256, K = 512, N = 256;
  const std::vector<float> a = random_values(size_t(M * K), 1), b = random_values(size_t(K * N), 2);
  write_values(sim.memory().hbm, p.find_symbol("A")->addr, Dtype::Bf16, a);
  write_values(sim.memory().hbm, p.find_symbol("B")->addr, Dtype::Bf16, b);
  sim.run(p);
  const std::vector<float> c = read_values(sim.memory().hbm, p.find_symbol("C")->addr, Dtype::Fp32, size_t(M * N));
  const std::vector<double> ar = rounded(a, Dtype::Bf16), br = rounded(b, Dtype::Bf16);
  std::vector<double> want(size_t(M * N), 0.0);
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < N; ++j) want[size_t(i * N + j)] += ar[size_t(i * K + k)] * br[size_t(k * N + j)];
  // bf16 inputs are exact in the reference; only fp32 accumulation differs.
  EXPECT_LT(max_relative_error(c, want), 1e-5);
}

// Softmax over the rows of a 16 x 64 matrix, fp32 in SRAM, on tile 0.
const char* kSoftmax = R"(
.region io io 0x0 0x10000
.tensor X fp32 [16, 64] hbm 0x0 input
.tensor Y fp32 [16, 64] hbm 0x8000 output
.stream tile=0
  dma dst=sram[0x0], src=hbm[X], d0=1024, sdt=fp32, sem=0
  sem.wait sem=0
  vec.rmax dst=sram[0x4000], rows=16, cols=64, ddt=fp32, src0=sram[0x0], s0dt=fp32
  vec.sub dst=sram[0x0], rows=16, cols=64, ddt=fp32, src0=sram[0x0], s0dt=fp32, src1=sram[0x4000], s1dt=fp32, bcast=col
  vec.exp dst=sram[0x0], rows=16, cols=64, ddt=fp32, src0=sram[0x0], s0dt=fp32
  vec.rsum dst=sram[0x4000], rows=16, cols=64, ddt=fp32, src0=sram[0x0], s0dt=fp32
  vec.recip dst=sram[0x4000], rows=16, cols=1, ddt=fp32, src0=sram[0x4000], s0dt=fp32
  vec.mul dst=sram[0x0], rows=16, cols=64, ddt=fp32, src0=sram[0x0], s0dt=fp32, src1=sram[0x4000], s1dt=fp32, bcast=col
  dma dst=hbm[Y], src=sram[0x0], d0=1024, sdt=fp32, sem=1
  sem.wait sem=1
  halt
)";

TEST(Functional, SoftmaxOverRows) {
  const isa::Program p = isa::assemble(kSoftmax, "softmax.tasm");
  Simulation sim(arch::load_arch("maia100-class"), Mode::Functional);
  const std::vector<float> x = random_values(16 * 64, 3, -4.0f, 4.0f);
  write_values(sim.memory().hbm, 0, Dtype::Fp32, x);
  sim.run(p);
  const std::vector<float> y = read_values(sim.memory().hbm, 0x8000, Dtype::Fp32, 16 * 64);
  std::vector<double> want(x.size());
  for (int r = 0; r < 16; ++r) {
    double mx = -1e30, sum = 0;
    for (int c = 0; c < 64; ++c) mx = std::max(mx, double(x[size_t(r * 64 + c)]));
    for (int c = 0; c < 64; ++c) sum += std::exp(double(x[size_t(r * 64 + c)]) - mx);
    for (int c = 0; c < 64; ++c) want[size_t(r * 64 + c)] = std::exp(double(x[size_t(r * 64 + c)]) - mx) / sum;
  }
  EXPECT_LT(max_relative_error(y, want), 1e-5);
}

// RMSNorm of 8 rows of 128 bf16 values with a bf16 weight: y = x / sqrt(mean(x^2) + eps) * w.
const char* kRmsNorm = R"(
.region io io 0x0 0x10000
.tensor X bf16 [8, 128] hbm 0x0 input
.tensor W bf16 [128] hbm 0x1000 weight
.tensor Y bf16 [8, 128] hbm 0x2000 output
.stream tile=3
  dma dst=sram[0x0], src=hbm[X], d0=1024, sem=0
  dma dst=sram[0x1000], src=hbm[W], d0=128, sem=0
  sem.wait sem=0, count=2
  vec.mul dst=sram[0x2000], rows=8, cols=128, ddt=fp32, src0=sram[0x0], src1=sram[0x0]
  vec.rsum dst=sram[0x3000], rows=8, cols=128, ddt=fp32, src0=sram[0x2000], s0dt=fp32, scale=0.0078125
  vec.scale dst=sram[0x3000], rows=8, cols=1, ddt=fp32, src0=sram[0x3000], s0dt=fp32, shift=1e-05
  vec.rsqrt dst=sram[0x3000], rows=8, cols=1, ddt=fp32, src0=sram[0x3000], s0dt=fp32
  vec.mul dst=sram[0x2000], rows=8, cols=128, ddt=fp32, src0=sram[0x0], src1=sram[0x3000], s1dt=fp32, bcast=col
  vec.mul dst=sram[0x0], rows=8, cols=128, src0=sram[0x2000], s0dt=fp32, src1=sram[0x1000], bcast=row
  dma dst=hbm[Y], src=sram[0x0], d0=1024, sem=1
  sem.wait sem=1
  halt
)";

TEST(Functional, RmsNorm) {
  const isa::Program p = isa::assemble(kRmsNorm, "rmsnorm.tasm");
  Simulation sim(arch::load_arch("maia100-class"), Mode::Functional);
  const std::vector<float> x = random_values(8 * 128, 4, -2.0f, 2.0f), w = random_values(128, 5, 0.5f, 1.5f);
  write_values(sim.memory().hbm, 0, Dtype::Bf16, x);
  write_values(sim.memory().hbm, 0x1000, Dtype::Bf16, w);
  sim.run(p);
  const std::vector<float> y = read_values(sim.memory().hbm, 0x2000, Dtype::Bf16, 8 * 128);
  const std::vector<double> xr = rounded(x, Dtype::Bf16), wr = rounded(w, Dtype::Bf16);
  std::vector<double> want(x.size());
  for (int r = 0; r < 8; ++r) {
    double ms = 0;
    for (int c = 0; c < 128; ++c) ms += xr[size_t(r * 128 + c)] * xr[size_t(r * 128 + c)];
    const double inv = 1.0 / std::sqrt(ms / 128 + 1e-5);
    for (int c = 0; c < 128; ++c) want[size_t(r * 128 + c)] = xr[size_t(r * 128 + c)] * inv * wr[size_t(c)];
  }
  EXPECT_LT(max_relative_error(y, want), 8e-3);  // the output is rounded to bf16 (2^-8)
}

TEST(Functional, BothModesReportTheSameTime) {
  for (const char* program : {kSoftmax, kRmsNorm}) {
    const isa::Program p = isa::assemble(program);
    const arch::Arch a = arch::load_arch("maia100-class");
    Simulation functional(a, Mode::Functional), performance(a, Mode::Performance);
    const RunResult f = functional.run(p), q = performance.run(p);
    EXPECT_EQ(f.time, q.time);
    EXPECT_EQ(f.stats.to_json(), q.stats.to_json());
  }
  const isa::Program g = isa::assemble_file(std::string(TESSERA_SOURCE_DIR) + "/isa/examples/gemm_4tile.tasm");
  const arch::Arch a = arch::load_arch("maia100-class");
  Simulation functional(a, Mode::Functional), performance(a, Mode::Performance);
  EXPECT_EQ(functional.run(g).time, performance.run(g).time);
}

}  // namespace
}  // namespace tessera::sim
