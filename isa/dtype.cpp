#include "isa/dtype.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace tessera::isa {
namespace {

struct DtypeInfo {
  Dtype d;
  std::string_view name;
  int bits;
  std::string_view array_class;
};

constexpr std::array<DtypeInfo, kDtypeCount> kDtypes = {{
    {Dtype::None, "none", 0, ""},
    {Dtype::Fp32, "fp32", 32, ""},
    {Dtype::Bf16, "bf16", 16, "bf16"},
    {Dtype::Fp8E4M3, "fp8e4m3", 8, "fp8"},
    {Dtype::Fp8E5M2, "fp8e5m2", 8, "fp8"},
    {Dtype::Int8, "int8", 8, "int8"},
    {Dtype::Int32, "int32", 32, ""},
    {Dtype::MxFp8, "mxfp8", 8, "mxfp8"},
    {Dtype::MxFp6, "mxfp6", 6, "mxfp6"},
    {Dtype::MxFp4, "mxfp4", 4, "mxfp4"},
    {Dtype::MxInt8, "mxint8", 8, "mxint8"},
}};

const DtypeInfo& info(Dtype d) { return kDtypes[static_cast<size_t>(d)]; }

// A small floating-point format: sign, `ebits` exponent bits, `mbits` mantissa bits.
struct Minifloat {
  int ebits;
  int mbits;
  int bias;
  bool ieee_special;  // top exponent encodes inf/NaN (e5m2); else only e4m3's S.1111.111 is NaN
  bool has_nan;
  float max;
};

constexpr Minifloat kE4M3{4, 3, 7, false, true, 448.0f};
constexpr Minifloat kE5M2{5, 2, 15, true, true, 57344.0f};
constexpr Minifloat kE2M3{2, 3, 1, false, false, 7.5f};
constexpr Minifloat kE2M1{2, 1, 1, false, false, 6.0f};

uint32_t encode_magnitude(float a, const Minifloat& f) {
  // a is finite, >= 0 and <= f.max after rounding.
  if (a == 0.0f) return 0;
  int e = std::ilogb(a);
  const int emin = 1 - f.bias;
  if (e < emin) {  // subnormal
    const float quantum = std::ldexp(1.0f, emin - f.mbits);
    return static_cast<uint32_t>(std::rint(a / quantum));  // may round up into the first normal
  }
  const uint32_t mant = static_cast<uint32_t>(std::rint(std::ldexp(a, f.mbits - e)));
  // mant in [2^m, 2^(m+1)]; rounding up to 2^(m+1) moves to the next exponent.
  return (static_cast<uint32_t>(e + f.bias) << f.mbits) + (mant - (1u << f.mbits));
}

uint8_t encode_minifloat(float x, const Minifloat& f) {
  const uint32_t sign = std::signbit(x) ? 1u << (f.ebits + f.mbits) : 0u;
  const uint32_t all = (1u << (f.ebits + f.mbits)) - 1;
  if (std::isnan(x)) {
    if (f.has_nan) return static_cast<uint8_t>(sign | all);  // S.111..1
    return static_cast<uint8_t>(sign | encode_magnitude(f.max, f));
  }
  float a = std::fabs(x);
  if (a > f.max) a = f.max;  // saturate (also infinities)
  uint32_t code = encode_magnitude(a, f);
  const uint32_t max_code = encode_magnitude(f.max, f);
  if (code > max_code) code = max_code;
  return static_cast<uint8_t>(sign | code);
}

float decode_minifloat(uint32_t bits, const Minifloat& f) {
  const uint32_t mmask = (1u << f.mbits) - 1;
  const uint32_t emask = (1u << f.ebits) - 1;
  const bool neg = (bits >> (f.ebits + f.mbits)) & 1;
  const uint32_t e = (bits >> f.mbits) & emask;
  const uint32_t m = bits & mmask;
  float v;
  if (f.ieee_special && e == emask) {
    v = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else if (!f.ieee_special && f.has_nan && e == emask && m == mmask) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), 1 - f.bias - f.mbits);
  } else {
    v = std::ldexp(static_cast<float>(m + (1u << f.mbits)), static_cast<int>(e) - f.bias - f.mbits);
  }
  return neg ? -v : v;
}

uint32_t get_bits(const uint8_t* base, size_t bit, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i, ++bit) v |= static_cast<uint32_t>((base[bit / 8] >> (bit % 8)) & 1) << i;
  return v;
}

void set_bits(uint8_t* base, size_t bit, int n, uint32_t v) {
  for (int i = 0; i < n; ++i, ++bit) {
    const uint8_t mask = static_cast<uint8_t>(1u << (bit % 8));
    base[bit / 8] = static_cast<uint8_t>(((v >> i) & 1) ? (base[bit / 8] | mask) : (base[bit / 8] & ~mask));
  }
}

// Largest power-of-two exponent of the element format (OCP MX "emax_elem").
int mx_emax(Dtype d) {
  switch (d) {
    case Dtype::MxFp8: return 8;
    case Dtype::MxFp6: return 2;
    case Dtype::MxFp4: return 2;
    case Dtype::MxInt8: return 0;
    default: return 0;
  }
}

// Unscaled value of a raw MX element.
float mx_raw(Dtype d, uint32_t raw) {
  switch (d) {
    case Dtype::MxFp8: return decode_minifloat(raw, kE4M3);
    case Dtype::MxFp6: return decode_minifloat(raw, kE2M3);
    case Dtype::MxFp4: return decode_minifloat(raw, kE2M1);
    case Dtype::MxInt8: return std::ldexp(static_cast<float>(static_cast<int8_t>(raw)), -6);
    default: return 0;
  }
}

uint32_t mx_encode(Dtype d, float v) {
  switch (d) {
    case Dtype::MxFp8: return encode_minifloat(v, kE4M3);
    case Dtype::MxFp6: return encode_minifloat(v, kE2M3);
    case Dtype::MxFp4: return encode_minifloat(v, kE2M1);
    case Dtype::MxInt8: return static_cast<uint8_t>(float_to_int8(std::ldexp(v, 6)));
    default: return 0;
  }
}

}  // namespace

std::string_view dtype_name(Dtype d) { return info(d).name; }

std::optional<Dtype> dtype_from_name(std::string_view s) {
  for (const DtypeInfo& i : kDtypes) {
    if (i.name == s) return i.d;
  }
  return std::nullopt;
}

int dtype_bits(Dtype d) { return info(d).bits; }

bool is_mx(Dtype d) {
  return d == Dtype::MxFp8 || d == Dtype::MxFp6 || d == Dtype::MxFp4 || d == Dtype::MxInt8;
}

bool is_integer(Dtype d) { return d == Dtype::Int8 || d == Dtype::Int32 || d == Dtype::MxInt8; }

bool is_float(Dtype d) { return d != Dtype::None && !is_integer(d); }

std::string_view array_dtype_class(Dtype d) { return info(d).array_class; }

Dtype accumulator_dtype(Dtype d) {
  return d == Dtype::Int8 ? Dtype::Int32 : Dtype::Fp32;  // MX int8 carries a float scale
}

uint16_t float_to_bf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x0040);  // quiet NaN
  u += 0x7FFF + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float bf16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint8_t float_to_fp8e4m3(float x) { return encode_minifloat(x, kE4M3); }
float fp8e4m3_to_float(uint8_t b) { return decode_minifloat(b, kE4M3); }
uint8_t float_to_fp8e5m2(float x) { return encode_minifloat(x, kE5M2); }
float fp8e5m2_to_float(uint8_t b) { return decode_minifloat(b, kE5M2); }
uint8_t float_to_fp6e2m3(float x) { return encode_minifloat(x, kE2M3); }
float fp6e2m3_to_float(uint8_t b) { return decode_minifloat(b & 0x3F, kE2M3); }
uint8_t float_to_fp4e2m1(float x) { return encode_minifloat(x, kE2M1); }
float fp4e2m1_to_float(uint8_t b) { return decode_minifloat(b & 0xF, kE2M1); }

int8_t float_to_int8(float x) {
  if (std::isnan(x)) return 0;
  return static_cast<int8_t>(std::clamp(std::rint(x), -128.0f, 127.0f));
}

int32_t float_to_int32(float x) {
  if (std::isnan(x)) return 0;
  const double r = std::rint(static_cast<double>(x));
  return static_cast<int32_t>(std::clamp(r, -2147483648.0, 2147483647.0));
}

float e8m0_to_float(uint8_t e) {
  if (e == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(e) - 127);
}

float load_element(Dtype d, const uint8_t* base, size_t i) {
  switch (d) {
    case Dtype::Fp32: {
      float v;
      std::memcpy(&v, base + 4 * i, 4);
      return v;
    }
    case Dtype::Bf16: {
      uint16_t v;
      std::memcpy(&v, base + 2 * i, 2);
      return bf16_to_float(v);
    }
    case Dtype::Fp8E4M3: return fp8e4m3_to_float(base[i]);
    case Dtype::Fp8E5M2: return fp8e5m2_to_float(base[i]);
    case Dtype::Int8: return static_cast<float>(static_cast<int8_t>(base[i]));
    case Dtype::Int32: {
      int32_t v;
      std::memcpy(&v, base + 4 * i, 4);
      return static_cast<float>(v);
    }
    case Dtype::MxFp8:
    case Dtype::MxFp6:
    case Dtype::MxFp4:
    case Dtype::MxInt8: return mx_raw(d, get_bits(base, i * size_t(dtype_bits(d)), dtype_bits(d)));
    case Dtype::None: break;
  }
  return 0;
}

void store_element(Dtype d, uint8_t* base, size_t i, float x) {
  switch (d) {
    case Dtype::Fp32: std::memcpy(base + 4 * i, &x, 4); return;
    case Dtype::Bf16: {
      const uint16_t v = float_to_bf16(x);
      std::memcpy(base + 2 * i, &v, 2);
      return;
    }
    case Dtype::Fp8E4M3: base[i] = float_to_fp8e4m3(x); return;
    case Dtype::Fp8E5M2: base[i] = float_to_fp8e5m2(x); return;
    case Dtype::Int8: base[i] = static_cast<uint8_t>(float_to_int8(x)); return;
    case Dtype::Int32: {
      const int32_t v = float_to_int32(x);
      std::memcpy(base + 4 * i, &v, 4);
      return;
    }
    case Dtype::MxFp8:
    case Dtype::MxFp6:
    case Dtype::MxFp4:
    case Dtype::MxInt8: set_bits(base, i * size_t(dtype_bits(d)), dtype_bits(d), mx_encode(d, x)); return;
    case Dtype::None: return;
  }
}

float mx_element(Dtype d, const uint8_t* elements, size_t i, uint8_t scale) {
  return load_element(d, elements, i) * e8m0_to_float(scale);
}

uint8_t mx_quantize_block(Dtype d, const float* x, size_t n, uint8_t* elements, size_t first) {
  float amax = 0;
  for (size_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  int shared = -127;
  if (amax > 0 && std::isfinite(amax)) shared = std::ilogb(amax) - mx_emax(d);
  shared = std::clamp(shared, -127, 127);
  const uint8_t scale = static_cast<uint8_t>(shared + 127);
  for (size_t i = 0; i < n; ++i) store_element(d, elements, first + i, std::ldexp(x[i], -shared));
  return scale;
}

}  // namespace tessera::isa
