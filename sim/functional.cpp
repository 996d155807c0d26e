#include "sim/functional.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "isa/operands.hpp"

namespace tessera::sim {
namespace {

using isa::Dtype;
using isa::Opcode;

int64_t stride_or_packed(int64_t ld, Dtype d, int64_t cols) {
  return ld != 0 ? ld : int64_t(isa::dtype_bytes(d, size_t(cols)));
}

// A rows x cols block read into floats.
std::vector<float> load_matrix(const Memory& m, Dtype d, uint64_t base, int64_t ld, int64_t rows, int64_t cols) {
  const int64_t stride = stride_or_packed(ld, d, cols);
  const uint64_t row_bytes = isa::dtype_bytes(d, size_t(cols));
  std::vector<float> out(size_t(rows * cols));
  std::vector<uint8_t> buf(row_bytes);
  for (int64_t r = 0; r < rows; ++r) {
    m.read(base + uint64_t(r * stride), buf);
    for (int64_t c = 0; c < cols; ++c) out[size_t(r * cols + c)] = isa::load_element(d, buf.data(), size_t(c));
  }
  return out;
}

void store_matrix(Memory& m, Dtype d, uint64_t base, int64_t ld, int64_t rows, int64_t cols, const float* x) {
  const int64_t stride = stride_or_packed(ld, d, cols);
  const uint64_t row_bytes = isa::dtype_bytes(d, size_t(cols));
  std::vector<uint8_t> buf(row_bytes);
  for (int64_t r = 0; r < rows; ++r) {
    if (isa::dtype_bits(d) % 8 != 0) m.read(base + uint64_t(r * stride), buf);  // keep neighbouring nibbles
    for (int64_t c = 0; c < cols; ++c) isa::store_element(d, buf.data(), size_t(c), x[r * cols + c]);
    m.write(base + uint64_t(r * stride), buf);
  }
}

// Applies the E8M0 block scales to an MX operand held as rows x cols floats, blocks of 32
// running along the reduction dimension: along columns when `along_cols`, else along rows.
void apply_mx_scales(const Memory& m, uint64_t scales, std::vector<float>& x, int64_t rows, int64_t cols,
                     bool along_cols) {
  if (along_cols) {
    const int64_t per_row = (cols + isa::kMxBlock - 1) / isa::kMxBlock;
    std::vector<uint8_t> s(size_t(rows * per_row));
    m.read(scales, s);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) x[size_t(r * cols + c)] *= isa::e8m0_to_float(s[size_t(r * per_row + c / isa::kMxBlock)]);
  } else {
    const int64_t block_rows = (rows + isa::kMxBlock - 1) / isa::kMxBlock;
    std::vector<uint8_t> s(size_t(block_rows * cols));
    m.read(scales, s);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) x[size_t(r * cols + c)] *= isa::e8m0_to_float(s[size_t((r / isa::kMxBlock) * cols + c)]);
  }
}

float activate(isa::Act a, float x) {
  switch (a) {
    case isa::Act::None: return x;
    case isa::Act::Relu: return std::max(x, 0.0f);
    case isa::Act::Gelu: return 0.5f * x * (1.0f + std::erf(x / std::sqrt(2.0f)));
    case isa::Act::Silu: return x / (1.0f + std::exp(-x));
  }
  return x;
}

}  // namespace

void functional_matmul(Memory& sram, const isa::Instr& in, const int64_t* v) {
  constexpr Opcode M = Opcode::Matmul;
  const Dtype dt = in.dtype(isa::field_index(M, "dtype"));
  const int64_t m = v[isa::field_index(M, "m")], k = v[isa::field_index(M, "k")], n = v[isa::field_index(M, "n")];
  const bool tb = v[isa::field_index(M, "tb")] != 0;
  std::vector<float> a = load_matrix(sram, dt, uint64_t(v[isa::field_index(M, "a")]), v[isa::field_index(M, "lda")], m, k);
  std::vector<float> b = tb ? load_matrix(sram, dt, uint64_t(v[isa::field_index(M, "b")]), v[isa::field_index(M, "ldb")], n, k)
                            : load_matrix(sram, dt, uint64_t(v[isa::field_index(M, "b")]), v[isa::field_index(M, "ldb")], k, n);
  if (isa::is_mx(dt)) {
    apply_mx_scales(sram, uint64_t(v[isa::field_index(M, "as")]), a, m, k, true);
    apply_mx_scales(sram, uint64_t(v[isa::field_index(M, "bs")]), b, tb ? n : k, tb ? k : n, tb);
  }
  const Dtype acc_dt = isa::accumulator_dtype(dt);
  const uint64_t acc = uint64_t(v[isa::field_index(M, "acc")]);
  const int64_t ldc = v[isa::field_index(M, "ldc")];
  std::vector<float> c = v[isa::field_index(M, "accumulate")] ? load_matrix(sram, acc_dt, acc, ldc, m, n)
                                                              : std::vector<float>(size_t(m * n), 0.0f);
  if (acc_dt == Dtype::Int32) {
    // Integer inputs accumulate exactly.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int64_t s = int64_t(c[size_t(i * n + j)]);
        for (int64_t q = 0; q < k; ++q)
          s += int64_t(a[size_t(i * k + q)]) * int64_t(tb ? b[size_t(j * k + q)] : b[size_t(q * n + j)]);
        c[size_t(i * n + j)] = float(s);
      }
  } else {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float s = c[size_t(i * n + j)];
        for (int64_t q = 0; q < k; ++q) s += a[size_t(i * k + q)] * (tb ? b[size_t(j * k + q)] : b[size_t(q * n + j)]);
        c[size_t(i * n + j)] = s;
      }
  }
  store_matrix(sram, acc_dt, acc, ldc, m, n, c.data());
  const Dtype odt = in.dtype(isa::field_index(M, "odt"));
  if (odt == Dtype::None) return;
  std::vector<float> bias(size_t(n), 0.0f);
  if (v[isa::field_index(M, "has_bias")]) bias = load_matrix(sram, Dtype::Fp32, uint64_t(v[isa::field_index(M, "bias")]), 0, 1, n);
  const auto act = static_cast<isa::Act>(v[isa::field_index(M, "act")]);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[size_t(i * n + j)] = activate(act, c[size_t(i * n + j)] + bias[size_t(j)]);
  store_matrix(sram, odt, uint64_t(v[isa::field_index(M, "out")]), v[isa::field_index(M, "ldo")], m, n, c.data());
}

void functional_vector(Memory& sram, const isa::Instr& in, const int64_t* v) {
  constexpr Opcode A = Opcode::VAdd;  // vector instructions share their leading fields
  const int64_t rows = v[isa::field_index(A, "rows")], cols = v[isa::field_index(A, "cols")];
  const Dtype ddt = in.dtype(isa::field_index(A, "ddt"));
  const uint64_t dst = uint64_t(v[isa::field_index(A, "dst")]);
  const int64_t ldd = v[isa::field_index(A, "ldd")];
  if (in.op == Opcode::VFill) {
    const float value = in.f32(isa::field_index(Opcode::VFill, "value"));
    std::vector<float> x(size_t(rows * cols), value);
    store_matrix(sram, ddt, dst, ldd, rows, cols, x.data());
    return;
  }
  const std::vector<float> x = load_matrix(sram, in.dtype(isa::field_index(A, "s0dt")),
                                           uint64_t(v[isa::field_index(A, "src0")]), v[isa::field_index(A, "lds0")], rows, cols);
  std::vector<float> y(size_t(rows * cols));
  switch (in.op) {
    case Opcode::VAdd:
    case Opcode::VSub:
    case Opcode::VMul:
    case Opcode::VMax: {
      const auto bc = static_cast<isa::Bcast>(v[isa::field_index(A, "bcast")]);
      const float imm = in.f32(isa::field_index(A, "imm"));
      const int64_t r1 = bc == isa::Bcast::Row ? 1 : rows, c1 = bc == isa::Bcast::Col ? 1 : cols;
      std::vector<float> s1 = bc == isa::Bcast::Scalar
                                  ? std::vector<float>{}
                                  : load_matrix(sram, in.dtype(isa::field_index(A, "s1dt")), uint64_t(v[isa::field_index(A, "src1")]),
                                                v[isa::field_index(A, "lds1")], r1, c1);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const float p = x[size_t(r * cols + c)];
          const float q = bc == isa::Bcast::Scalar ? imm
                          : bc == isa::Bcast::Row  ? s1[size_t(c)]
                          : bc == isa::Bcast::Col  ? s1[size_t(r)]
                                                   : s1[size_t(r * cols + c)];
          float o = 0;
          switch (in.op) {
            case Opcode::VAdd: o = p + q; break;
            case Opcode::VSub: o = p - q; break;
            case Opcode::VMul: o = p * q; break;
            default: o = std::max(p, q); break;
          }
          y[size_t(r * cols + c)] = o;
        }
      break;
    }
    case Opcode::VExp: std::transform(x.begin(), x.end(), y.begin(), [](float p) { return std::exp(p); }); break;
    case Opcode::VSilu: std::transform(x.begin(), x.end(), y.begin(), [](float p) { return activate(isa::Act::Silu, p); }); break;
    case Opcode::VGelu: std::transform(x.begin(), x.end(), y.begin(), [](float p) { return activate(isa::Act::Gelu, p); }); break;
    case Opcode::VRsqrt: std::transform(x.begin(), x.end(), y.begin(), [](float p) { return 1.0f / std::sqrt(p); }); break;
    case Opcode::VRecip: std::transform(x.begin(), x.end(), y.begin(), [](float p) { return 1.0f / p; }); break;
    case Opcode::VCast: y = x; break;
    case Opcode::VScale: {
      const float scale = in.f32(isa::field_index(Opcode::VScale, "scale"));
      const float shift = in.f32(isa::field_index(Opcode::VScale, "shift"));
      std::transform(x.begin(), x.end(), y.begin(), [&](float p) { return p * scale + shift; });
      break;
    }
    case Opcode::VRsum:
    case Opcode::VRmax: {
      const float scale = in.f32(isa::field_index(Opcode::VRsum, "scale"));
      std::vector<float> red(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {
        float acc = in.op == Opcode::VRsum ? 0.0f : -std::numeric_limits<float>::infinity();
        for (int64_t c = 0; c < cols; ++c) {
          const float p = x[size_t(r * cols + c)];
          acc = in.op == Opcode::VRsum ? acc + p : std::max(acc, p);
        }
        red[size_t(r)] = acc * scale;
      }
      store_matrix(sram, ddt, dst, ldd, rows, 1, red.data());
      return;
    }
    case Opcode::VMask: {
      const int64_t diag = v[isa::field_index(Opcode::VMask, "diag")];
      const float value = in.f32(isa::field_index(Opcode::VMask, "value"));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) y[size_t(r * cols + c)] = c <= r + diag ? x[size_t(r * cols + c)] : value;
      break;
    }
    default: return;
  }
  store_matrix(sram, ddt, dst, ldd, rows, cols, y.data());
}

namespace {
template <class T>
void store_array(Memory& m, int64_t addr, const std::vector<T>& x) {
  m.write(uint64_t(addr), std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(x.data()), x.size() * sizeof(T)));
}
}  // namespace

// A moe.route's fields.
struct Route {
  int64_t rows, experts, k, e0, ne, cap, block;
  int64_t stride() const { return (cap + block - 1) / block * block; }  // of the dispatch table
  explicit Route(const int64_t* v) {
    constexpr Opcode R = Opcode::MoeRoute;
    rows = v[isa::field_index(R, "rows")], experts = v[isa::field_index(R, "cols")];
    k = v[isa::field_index(R, "k")], e0 = v[isa::field_index(R, "e0")];
    ne = v[isa::field_index(R, "ne")] ? v[isa::field_index(R, "ne")] : experts;
    cap = v[isa::field_index(R, "cap")], block = std::max<int64_t>(1, v[isa::field_index(R, "block")]);
  }
  // cnt: each of this chip's experts' blocks of slots, from the tokens routed to it.
  std::vector<int32_t> counts(const std::vector<int64_t>& routed) const {
    std::vector<int32_t> cnt(routed.size());
    for (size_t i = 0; i < routed.size(); ++i) cnt[i] = int32_t((std::min(routed[i], cap) + block - 1) / block);
    return cnt;
  }
};

void functional_route(Memory& sram, const int64_t* v) {
  constexpr Opcode R = Opcode::MoeRoute;
  const Route rt(v);
  const int64_t rows = rt.rows, experts = rt.experts, k = rt.k, stride = rt.stride();
  std::vector<int32_t> chosen(size_t(rows * k));
  std::vector<float> weight(size_t(rows * k));
  const std::vector<float> logits = load_matrix(sram, Dtype::Fp32, uint64_t(v[isa::field_index(R, "src0")]),
                                                v[isa::field_index(R, "lds0")], rows, experts);
  const bool renorm = v[isa::field_index(R, "renorm")] != 0;
  std::vector<float> p(static_cast<size_t>(experts));
  std::vector<bool> taken(static_cast<size_t>(experts));
  for (int64_t r = 0; r < rows; ++r) {
    const float* l = &logits[size_t(r * experts)];
    const float mx = *std::max_element(l, l + experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < experts; ++e) sum += p[size_t(e)] = std::exp(l[e] - mx);
    std::fill(taken.begin(), taken.end(), false);
    float kept = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;  // the largest left; a tie keeps the lower expert
      for (int64_t e = 0; e < experts; ++e) {
        if (!taken[size_t(e)] && (best < 0 || p[size_t(e)] > p[size_t(best)])) best = e;
      }
      taken[size_t(best)] = true;
      chosen[size_t(r * k + j)] = int32_t(best);
      kept += weight[size_t(r * k + j)] = p[size_t(best)] / sum;
    }
    if (renorm) {
      for (int64_t j = 0; j < k; ++j) weight[size_t(r * k + j)] /= kept;
    }
  }
  std::vector<float> dense(size_t(rows * experts), 0.0f);
  std::vector<int64_t> routed(static_cast<size_t>(rt.ne), 0);
  std::vector<int32_t> disp(size_t(rt.ne * stride), -1), comb(size_t(k * rows), -1);
  std::vector<float> cw(size_t(k * rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = chosen[size_t(r * k + j)];
      const float w = weight[size_t(r * k + j)];
      dense[size_t(r * experts + e)] = w;
      const int64_t i = e - rt.e0;
      if (i < 0 || i >= rt.ne) continue;  // dispatched elsewhere
      const int64_t slot = routed[size_t(i)]++;
      if (slot >= rt.cap) {  // over capacity: dropped
        dense[size_t(r * experts + e)] = 0.0f;
        continue;
      }
      disp[size_t(i * stride + slot)] = int32_t(r);
      comb[size_t(j * rows + r)] = int32_t(i * stride + slot);
      cw[size_t(j * rows + r)] = w;
    }
  }
  store_matrix(sram, Dtype::Fp32, uint64_t(v[isa::field_index(R, "dst")]), v[isa::field_index(R, "ldd")], rows,
               experts, dense.data());
  store_array(sram, v[isa::field_index(R, "cnt")], rt.counts(routed));
  store_array(sram, v[isa::field_index(R, "disp")], disp);
  store_array(sram, v[isa::field_index(R, "comb")], comb);
  store_array(sram, v[isa::field_index(R, "cw")], cw);
}

void route_counts(Memory& store, const int64_t* v, const std::vector<int32_t>& drawn) {
  const Route rt(v);
  std::vector<int64_t> routed(static_cast<size_t>(rt.ne), 0);
  for (const int32_t e : drawn) {
    if (e >= rt.e0 && e < rt.e0 + rt.ne) ++routed[size_t(e - rt.e0)];
  }
  store_array(store, v[isa::field_index(Opcode::MoeRoute, "cnt")], rt.counts(routed));
}

std::vector<int32_t> draw_routing(int64_t rows, int64_t experts, int64_t k, double skew, uint64_t seed,
                                  uint64_t call) {
  std::mt19937_64 gen(seed * 0x9E3779B97F4A7C15ull + call);
  auto uniform = [&] { return double(gen() >> 11) * 0x1.0p-53; };  // the same on every platform
  std::vector<double> p(static_cast<size_t>(experts));
  std::vector<int64_t> rank(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) rank[size_t(e)] = e;
  for (int64_t e = experts - 1; e > 0; --e) std::swap(rank[size_t(e)], rank[size_t(gen() % uint64_t(e + 1))]);
  std::vector<double> base(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) base[size_t(e)] = std::pow(double(rank[size_t(e)] + 1), -skew);
  std::vector<int32_t> out(size_t(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    p = base;
    for (int64_t j = 0; j < k; ++j) {
      double total = 0.0;
      for (double q : p) total += q;
      double u = uniform() * total;
      int64_t e = 0;
      while (e + 1 < experts && (p[size_t(e)] == 0.0 || u >= p[size_t(e)])) u -= p[size_t(e++)];
      while (p[size_t(e)] == 0.0) --e;  // rounding ran past the last expert left
      out[size_t(r * k + j)] = int32_t(e);
      p[size_t(e)] = 0.0;
    }
  }
  return out;
}

void functional_dma(const Memory& src, Memory& dst, const Memory& idx, const isa::Instr& in, const int64_t* v,
                    uint64_t row, uint64_t rows, uint64_t offset, uint64_t bytes) {
  constexpr Opcode D = Opcode::Dma;
  const Dtype sdt = in.dtype(isa::field_index(D, "sdt")), ddt = isa::dma_dst_dtype(in);
  const int64_t d0 = v[isa::field_index(D, "d0")], d1 = v[isa::field_index(D, "d1")], d2 = v[isa::field_index(D, "d2")];
  const int64_t ss[3] = {v[isa::field_index(D, "ss1")], v[isa::field_index(D, "ss2")], v[isa::field_index(D, "ss3")]};
  const int64_t ds[3] = {v[isa::field_index(D, "ds1")], v[isa::field_index(D, "ds2")], v[isa::field_index(D, "ds3")]};
  const bool transpose = v[isa::field_index(D, "transpose")] != 0;
  const uint64_t s0 = uint64_t(v[isa::field_index(D, "src")]), t0 = uint64_t(v[isa::field_index(D, "dst")]);
  const size_t sbits = size_t(isa::dtype_bits(sdt)), dbits = size_t(isa::dtype_bits(ddt));
  const uint64_t src_row_bytes = isa::dtype_bytes(sdt, size_t(d0));
  if (rows > 1 || bytes == 0) offset = 0, bytes = src_row_bytes;
  const uint64_t e_begin = offset * 8 / sbits, e_end = (offset + bytes) * 8 / sbits;

  const int64_t gather = v[isa::field_index(D, "gather")];
  std::vector<uint8_t> in_row(src_row_bytes), out_row;
  for (uint64_t r = row; r < row + rows; ++r) {
    const int64_t i1 = int64_t(r) % d1, i2 = (int64_t(r) / d1) % d2, i3 = int64_t(r) / (d1 * d2);
    if (gather > 0) {
      uint8_t b[4];
      idx.read(uint64_t(v[isa::field_index(D, "idx")] + 4 * i1), b);
      int32_t src_row;
      std::memcpy(&src_row, b, 4);
      if (src_row >= gather) {
        throw std::runtime_error(fmt::format("dma gather: row {} names source row {} of {}", i1, src_row, gather));
      }
      if (src_row < 0) {
        std::fill(in_row.begin(), in_row.end(), uint8_t(0));
      } else {
        src.read(s0 + uint64_t(src_row * ss[0]), in_row);
      }
    } else {
      src.read(s0 + uint64_t(i1 * ss[0] + i2 * ss[1] + i3 * ss[2]), in_row);
    }
    if (!transpose) {
      const uint64_t da = t0 + uint64_t(i1 * ds[0] + i2 * ds[1] + i3 * ds[2]);
      if (sdt == ddt && sbits % 8 == 0) {
        dst.write(da + offset, std::span<const uint8_t>(in_row.data() + offset, bytes));
        continue;
      }
      out_row.assign(isa::dtype_bytes(ddt, size_t(d0)), 0);
      if (dbits % 8 != 0) dst.read(da, out_row);
      for (uint64_t e = e_begin; e < e_end; ++e) {
        isa::store_element(ddt, out_row.data(), e, isa::load_element(sdt, in_row.data(), e));
      }
      const uint64_t lo = e_begin * dbits / 8, hi = (e_end * dbits + 7) / 8;
      dst.write(da + lo, std::span<const uint8_t>(out_row.data() + lo, hi - lo));
    } else {
      // Element i0 of this source row lands in destination row i0, column i1.
      const uint64_t base = t0 + uint64_t(i2 * ds[1] + i3 * ds[2]);
      uint8_t cell[4] = {};
      for (uint64_t e = e_begin; e < e_end; ++e) {
        isa::store_element(ddt, cell, 0, isa::load_element(sdt, in_row.data(), e));
        dst.write(base + e * uint64_t(ds[0]) + uint64_t(i1) * dbits / 8, std::span<const uint8_t>(cell, dbits / 8));
      }
    }
  }
}

}  // namespace tessera::sim
