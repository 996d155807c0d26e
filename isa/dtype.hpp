// Data types of the instruction set and their bit-exact conversions to and from float.
//
// Minifloats follow the OCP 8-bit floating point and Microscaling (MX) v1.0 specifications:
//   fp8e4m3: bias 7, no infinities, max 448, NaN = S.1111.111
//   fp8e5m2: bias 15, IEEE-like with infinities, max 57344
//   MX formats: blocks of 32 elements along the reduction dimension share one E8M0 scale
//   (2^(e-127), 0xFF = NaN). Elements: mxfp8 = e4m3, mxfp6 = e2m3, mxfp4 = e2m1,
//   mxint8 = two's-complement int8 with an implicit 2^-6.
// Conversions to narrow formats round to nearest even and saturate to the largest finite value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tessera::isa {

enum class Dtype : uint8_t {
  None = 0,
  Fp32,
  Bf16,
  Fp8E4M3,
  Fp8E5M2,
  Int8,
  Int32,
  MxFp8,
  MxFp6,
  MxFp4,
  MxInt8,
};
inline constexpr int kDtypeCount = 11;
inline constexpr int kMxBlock = 32;

std::string_view dtype_name(Dtype d);                      // "bf16", "fp8e4m3", ...
std::optional<Dtype> dtype_from_name(std::string_view s);  // inverse of dtype_name
int dtype_bits(Dtype d);                                   // bits per element (0 for None)
bool is_mx(Dtype d);
bool is_float(Dtype d);  // fp32, bf16, fp8 and MX float formats
bool is_integer(Dtype d);
// Name of the matrix-unit dtype class in the architecture description ("bf16", "fp8",
// "int8", "mxfp8", ...), or empty when the dtype cannot be a MATMUL input.
std::string_view array_dtype_class(Dtype d);
// Accumulator dtype of a MATMUL on inputs of dtype d: int32 for integer inputs, else fp32.
Dtype accumulator_dtype(Dtype d);

// Bytes occupied by n contiguous elements (packed formats round up to whole bytes).
inline size_t dtype_bytes(Dtype d, size_t n) { return (n * size_t(dtype_bits(d)) + 7) / 8; }

// Scalar conversions.
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t b);
uint8_t float_to_fp8e4m3(float x);
float fp8e4m3_to_float(uint8_t b);
uint8_t float_to_fp8e5m2(float x);
float fp8e5m2_to_float(uint8_t b);
uint8_t float_to_fp6e2m3(float x);  // low 6 bits
float fp6e2m3_to_float(uint8_t b);
uint8_t float_to_fp4e2m1(float x);  // low 4 bits
float fp4e2m1_to_float(uint8_t b);
int8_t float_to_int8(float x);      // round to nearest even, saturate
int32_t float_to_int32(float x);
float e8m0_to_float(uint8_t e);     // 2^(e-127); NaN for 0xFF

// Element i of a packed array of dtype d (not MX scales: see mx_element) as float.
float load_element(Dtype d, const uint8_t* base, size_t i);
// Stores x into element i of a packed array of dtype d, converting with saturation.
void store_element(Dtype d, uint8_t* base, size_t i, float x);

// Value of element i of an MX block array, applying the block's E8M0 scale.
float mx_element(Dtype d, const uint8_t* elements, size_t i, uint8_t scale);
// Quantises a block of up to 32 floats to an MX dtype: writes the packed elements starting
// at element index `first` of `elements` and returns the shared E8M0 scale (OCP MX v1.0:
// scale = floor(log2(max |x|)) - emax of the element format).
uint8_t mx_quantize_block(Dtype d, const float* x, size_t n, uint8_t* elements, size_t first);

}  // namespace tessera::isa
