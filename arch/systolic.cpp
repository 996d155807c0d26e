#include "arch/systolic.hpp"

#include <algorithm>

namespace tessera::arch {
namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
}  // namespace

MatmulTiming matmul_timing(const ArrayShape& a, int64_t pack, int64_t m, int64_t k, int64_t n) {
  const int64_t R = a.rows, C = a.cols;
  MatmulTiming t;
  if (m <= 0 || k <= 0 || n <= 0) return t;
  if (a.dataflow == Dataflow::WeightStationary) {
    const int64_t kt = ceil_div(k, R * pack), nt = ceil_div(n, C);
    const int64_t step = std::max(m, R);
    // The busiest array holds ceil(nt / count) n-tiles.
    const int64_t tiles = kt * ceil_div(nt, a.count);
    t.latency = R + (tiles - 1) * step + m + R + C - 2;
    t.occupancy = tiles * step;
  } else {
    const int64_t ks = ceil_div(k, pack);
    const int64_t blocks = ceil_div(ceil_div(m, R) * ceil_div(n, C), a.count);
    const int64_t step = std::max(ks, R);
    t.latency = (blocks - 1) * step + ks + (R - 1) + (C - 1) + R;
    t.occupancy = blocks * step;
  }
  return t;
}

int64_t array_pack(const SystolicParams& s, std::string_view cls) {
  return int64_t(s.macs_per_cycle.at(cls)) / (s.rows * s.cols);
}

MatmulTiming matmul_timing(const SystolicParams& s, std::string_view cls, int64_t m, int64_t k, int64_t n) {
  return matmul_timing(ArrayShape{s.rows, s.cols, s.count, s.dataflow}, array_pack(s, cls), m, k, n);
}

}  // namespace tessera::arch
