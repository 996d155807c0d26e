#include "isa/operands.hpp"

#include <algorithm>

namespace tessera::isa {
namespace {

// Field indices used below, checked against the table at compile time.
namespace dma {
constexpr int dst = field_index(Opcode::Dma, "dst"), src = field_index(Opcode::Dma, "src");
constexpr int dst_space = field_index(Opcode::Dma, "dst_space"), dst_tile = field_index(Opcode::Dma, "dst_tile");
constexpr int src_space = field_index(Opcode::Dma, "src_space"), src_tile = field_index(Opcode::Dma, "src_tile");
constexpr int d0 = field_index(Opcode::Dma, "d0"), d1 = field_index(Opcode::Dma, "d1");
constexpr int d2 = field_index(Opcode::Dma, "d2"), d3 = field_index(Opcode::Dma, "d3");
constexpr int ss1 = field_index(Opcode::Dma, "ss1"), ds1 = field_index(Opcode::Dma, "ds1");
constexpr int sdt = field_index(Opcode::Dma, "sdt"), ddt = field_index(Opcode::Dma, "ddt");
constexpr int transpose = field_index(Opcode::Dma, "transpose");
constexpr int gather = field_index(Opcode::Dma, "gather"), idx = field_index(Opcode::Dma, "idx");
}  // namespace dma
namespace route {
constexpr int k = field_index(Opcode::MoeRoute, "k"), ne = field_index(Opcode::MoeRoute, "ne");
constexpr int cap = field_index(Opcode::MoeRoute, "cap"), cnt = field_index(Opcode::MoeRoute, "cnt");
constexpr int block = field_index(Opcode::MoeRoute, "block");
constexpr int disp = field_index(Opcode::MoeRoute, "disp"), comb = field_index(Opcode::MoeRoute, "comb");
constexpr int cw = field_index(Opcode::MoeRoute, "cw");
}  // namespace route
namespace mm {
constexpr int acc = field_index(Opcode::Matmul, "acc"), a = field_index(Opcode::Matmul, "a");
constexpr int b = field_index(Opcode::Matmul, "b"), m = field_index(Opcode::Matmul, "m");
constexpr int k = field_index(Opcode::Matmul, "k"), n = field_index(Opcode::Matmul, "n");
constexpr int lda = field_index(Opcode::Matmul, "lda"), ldb = field_index(Opcode::Matmul, "ldb");
constexpr int ldc = field_index(Opcode::Matmul, "ldc"), dtype = field_index(Opcode::Matmul, "dtype");
constexpr int accumulate = field_index(Opcode::Matmul, "accumulate"), tb = field_index(Opcode::Matmul, "tb");
constexpr int as = field_index(Opcode::Matmul, "as"), bs = field_index(Opcode::Matmul, "bs");
constexpr int out = field_index(Opcode::Matmul, "out"), ldo = field_index(Opcode::Matmul, "ldo");
constexpr int odt = field_index(Opcode::Matmul, "odt"), bias = field_index(Opcode::Matmul, "bias");
constexpr int has_bias = field_index(Opcode::Matmul, "has_bias");
}  // namespace mm
namespace vec {
// Vector instructions share their leading fields (see the table): check on one of each shape.
constexpr int dst = field_index(Opcode::VAdd, "dst"), rows = field_index(Opcode::VAdd, "rows");
constexpr int cols = field_index(Opcode::VAdd, "cols"), ldd = field_index(Opcode::VAdd, "ldd");
constexpr int ddt = field_index(Opcode::VAdd, "ddt"), src0 = field_index(Opcode::VAdd, "src0");
constexpr int lds0 = field_index(Opcode::VAdd, "lds0"), s0dt = field_index(Opcode::VAdd, "s0dt");
constexpr int src1 = field_index(Opcode::VAdd, "src1"), lds1 = field_index(Opcode::VAdd, "lds1");
constexpr int s1dt = field_index(Opcode::VAdd, "s1dt"), bcast = field_index(Opcode::VAdd, "bcast");
static_assert(field_index(Opcode::VExp, "src0") == src0 && field_index(Opcode::VFill, "ddt") == ddt &&
              field_index(Opcode::VRsum, "s0dt") == s0dt && field_index(Opcode::VMask, "lds0") == lds0);
}  // namespace vec
namespace comm {
constexpr int src = field_index(Opcode::Send, "src"), src_space = field_index(Opcode::Send, "src_space");
constexpr int sbytes = field_index(Opcode::Send, "bytes");
constexpr int dst = field_index(Opcode::Recv, "dst"), dst_space = field_index(Opcode::Recv, "dst_space");
constexpr int rbytes = field_index(Opcode::Recv, "bytes");
}  // namespace comm

int64_t row_bytes(Dtype d, int64_t elements) { return int64_t(dtype_bytes(d, size_t(elements))); }

// `rows` rows of `bytes` each, `stride` apart (0: packed).
Access rows_access(Space space, int64_t base, int64_t rows, int64_t bytes, int64_t stride, int64_t align,
                   bool write, std::string_view name, int64_t tile = int64_t(kTileSelf)) {
  if (stride == 0) stride = bytes;
  Access a;
  a.space = space;
  a.tile = tile;
  a.begin = base;
  a.end = base + (std::max<int64_t>(rows, 1) - 1) * stride + bytes;
  a.align = align;
  a.write = write;
  a.operand = name;
  return a;
}

// A strided DMA pattern: a contiguous run of `run` bytes repeated over three strided dims.
Access pattern_access(Space space, int64_t tile, int64_t base, int64_t run, const int64_t dims[3],
                      const int64_t strides[3], int64_t align, bool write, std::string_view name) {
  int64_t lo = 0, hi = run;
  for (int k = 0; k < 3; ++k) {
    const int64_t span = (std::max<int64_t>(dims[k], 1) - 1) * strides[k];
    lo += std::min<int64_t>(0, span);
    hi += std::max<int64_t>(0, span);
  }
  Access a;
  a.space = space;
  a.tile = tile;
  a.begin = base + lo;
  a.end = base + hi;
  a.align = align;
  a.write = write;
  a.operand = name;
  return a;
}

}  // namespace

int64_t element_align(Dtype d) { return std::max(1, dtype_bits(d) / 8); }

Dtype dma_dst_dtype(const Instr& in) {
  const Dtype d = in.dtype(dma::ddt);
  return d == Dtype::None ? in.dtype(dma::sdt) : d;
}

bool dma_conversion_ok(Dtype from, Dtype to) {
  if (from == to) return true;
  auto wide = [](Dtype d) { return d == Dtype::Fp32 || d == Dtype::Bf16; };
  auto fp8 = [](Dtype d) { return d == Dtype::Fp8E4M3 || d == Dtype::Fp8E5M2; };
  return (wide(from) && wide(to)) || (wide(from) && fp8(to)) || (fp8(from) && wide(to));
}

void collect_accesses(const Instr& in, const int64_t* regs, std::vector<Access>& out) {
  switch (in.op) {
    case Opcode::Dma: {
      const Dtype sdt = in.dtype(dma::sdt), ddt = dma_dst_dtype(in);
      const int64_t d0 = in[dma::d0], d1 = in[dma::d1], d2 = in[dma::d2], d3 = in[dma::d3];
      const int64_t gather = in[dma::gather];
      // A gather may read any of its `gather` source rows.
      const int64_t sdims[3] = {gather > 0 ? gather : d1, d2, d3};
      const int64_t sstr[3] = {in[dma::ss1], in[dma::ss1 + 1], in[dma::ss1 + 2]};
      out.push_back(pattern_access(in.space(dma::src_space), in[dma::src_tile], resolve(in, dma::src, regs),
                                   row_bytes(sdt, d0), sdims, sstr, element_align(sdt), false, "src"));
      if (gather > 0) out.push_back(rows_access(Space::Sram, resolve(in, dma::idx, regs), 1, 4 * d1, 0, 4, false, "idx"));
      const bool t = in[dma::transpose] != 0;
      const int64_t ddims[3] = {t ? d0 : d1, d2, d3};
      const int64_t dstr[3] = {in[dma::ds1], in[dma::ds1 + 1], in[dma::ds1 + 2]};
      out.push_back(pattern_access(in.space(dma::dst_space), in[dma::dst_tile], resolve(in, dma::dst, regs),
                                   row_bytes(ddt, t ? d1 : d0), ddims, dstr, element_align(ddt), true, "dst"));
      return;
    }
    case Opcode::Matmul: {
      const Dtype dt = in.dtype(mm::dtype);
      const int64_t m = in[mm::m], k = in[mm::k], n = in[mm::n];
      const bool tb = in[mm::tb] != 0;
      const int64_t al = element_align(dt);
      out.push_back(rows_access(Space::Sram, resolve(in, mm::a, regs), m, row_bytes(dt, k), in[mm::lda], al, false, "a"));
      out.push_back(rows_access(Space::Sram, resolve(in, mm::b, regs), tb ? n : k, row_bytes(dt, tb ? k : n),
                                in[mm::ldb], al, false, "b"));
      out.push_back(rows_access(Space::Sram, resolve(in, mm::acc, regs), m, 4 * n, in[mm::ldc], 4, true, "acc"));
      if (in[mm::accumulate]) {
        Access r = out.back();
        r.write = false;
        out.push_back(r);
      }
      if (is_mx(dt)) {
        const int64_t kb = (k + kMxBlock - 1) / kMxBlock;
        out.push_back(rows_access(Space::Sram, resolve(in, mm::as, regs), m, kb, 0, 1, false, "as"));
        out.push_back(rows_access(Space::Sram, resolve(in, mm::bs, regs), tb ? n : kb, tb ? kb : n, 0, 1, false, "bs"));
      }
      const Dtype odt = in.dtype(mm::odt);
      if (odt != Dtype::None) {
        out.push_back(rows_access(Space::Sram, resolve(in, mm::out, regs), m, row_bytes(odt, n), in[mm::ldo],
                                  element_align(odt), true, "out"));
      }
      if (in[mm::has_bias]) out.push_back(rows_access(Space::Sram, resolve(in, mm::bias, regs), 1, 4 * n, 0, 4, false, "bias"));
      return;
    }
    case Opcode::Ld:
      out.push_back(rows_access(Space::Sram, resolve(in, 1, regs), 1, 4, 0, 4, false, "addr"));
      return;
    case Opcode::Send:
      out.push_back(rows_access(in.space(comm::src_space), resolve(in, comm::src, regs), 1, in[comm::sbytes], 0, 1,
                                false, "src"));
      return;
    case Opcode::Recv:
      out.push_back(rows_access(in.space(comm::dst_space), resolve(in, comm::dst, regs), 1, in[comm::rbytes], 0, 1,
                                true, "dst"));
      return;
    default: break;
  }
  if (in.def().cls != OpClass::Vector) return;
  const int64_t rows = in[vec::rows], cols = in[vec::cols];
  const bool reduce = in.op == Opcode::VRsum || in.op == Opcode::VRmax;
  const Dtype ddt = in.dtype(vec::ddt);
  out.push_back(rows_access(Space::Sram, resolve(in, vec::dst, regs), rows, row_bytes(ddt, reduce ? 1 : cols),
                            in[vec::ldd], element_align(ddt), true, "dst"));
  if (in.op == Opcode::VFill) return;
  const Dtype s0 = in.dtype(vec::s0dt);
  out.push_back(rows_access(Space::Sram, resolve(in, vec::src0, regs), rows, row_bytes(s0, cols), in[vec::lds0],
                            element_align(s0), false, "src0"));
  if (in.def().fields.size() > size_t(vec::bcast) && in.def().fields[size_t(vec::bcast)].name == "bcast") {
    const auto bc = static_cast<Bcast>(in[vec::bcast]);
    if (bc == Bcast::Scalar) return;
    const Dtype s1 = in.dtype(vec::s1dt);
    const int64_t r1 = bc == Bcast::Row ? 1 : rows;
    const int64_t c1 = bc == Bcast::Col ? 1 : cols;
    out.push_back(rows_access(Space::Sram, resolve(in, vec::src1, regs), r1, row_bytes(s1, c1), in[vec::lds1],
                              element_align(s1), false, "src1"));
  }
  if (in.op == Opcode::MoeRoute) {
    const int64_t ne = in[route::ne] ? in[route::ne] : cols, k = in[route::k];
    const int64_t block = std::max<int64_t>(1, in[route::block]);
    const int64_t cap = (in[route::cap] + block - 1) / block * block;
    out.push_back(rows_access(Space::Sram, resolve(in, route::cnt, regs), 1, 4 * ne, 0, 4, true, "cnt"));
    out.push_back(rows_access(Space::Sram, resolve(in, route::disp, regs), 1, 4 * ne * cap, 0, 4, true, "disp"));
    out.push_back(rows_access(Space::Sram, resolve(in, route::comb, regs), 1, 4 * k * rows, 0, 4, true, "comb"));
    out.push_back(rows_access(Space::Sram, resolve(in, route::cw, regs), 1, 4 * k * rows, 0, 4, true, "cw"));
  }
}

}  // namespace tessera::isa
