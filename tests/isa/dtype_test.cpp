// Number formats against values from the OCP FP8 and MX v1.0 specifications and exhaustive
// checks against an independent decoder written here from the format definitions.
#include "isa/dtype.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

namespace tessera::isa {
namespace {

// Independent decoder: sign, exponent, mantissa from the definition of the format.
double reference_decode(unsigned code, int ebits, int mbits, int bias) {
  const int sign = (code >> (ebits + mbits)) & 1;
  const int e = (code >> mbits) & ((1 << ebits) - 1);
  const int m = code & ((1 << mbits) - 1);
  double v = e == 0 ? std::ldexp(double(m) / (1 << mbits), 1 - bias)
                    : std::ldexp(1.0 + double(m) / (1 << mbits), e - bias);
  return sign ? -v : v;
}

TEST(Dtype, Bf16KnownValues) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  // 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even): rounds up.
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(bf16_to_float(float_to_bf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
}

TEST(Dtype, Fp8E4M3FromTheSpec) {
  EXPECT_EQ(float_to_fp8e4m3(1.0f), 0x38);
  EXPECT_EQ(float_to_fp8e4m3(448.0f), 0x7E);           // largest normal
  EXPECT_EQ(float_to_fp8e4m3(1e6f), 0x7E);             // saturates
  EXPECT_EQ(float_to_fp8e4m3(-1e6f), 0xFE);
  EXPECT_EQ(float_to_fp8e4m3(std::ldexp(1.0f, -9)), 0x01);  // smallest subnormal
  EXPECT_EQ(fp8e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(fp8e4m3_to_float(0x7F)));
  EXPECT_EQ(fp8e4m3_to_float(0x7E), 448.0f);
}

TEST(Dtype, Fp8E5M2FromTheSpec) {
  EXPECT_EQ(float_to_fp8e5m2(1.0f), 0x3C);
  EXPECT_EQ(float_to_fp8e5m2(57344.0f), 0x7B);
  EXPECT_EQ(fp8e5m2_to_float(0x7C), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp8e5m2_to_float(0x7F)));
  EXPECT_EQ(float_to_fp8e5m2(1e9f), 0x7B);  // saturating conversion
}

TEST(Dtype, MinifloatsDecodeLikeTheReferenceAndRoundTrip) {
  struct F {
    int ebits, mbits, bias;
    float (*decode)(uint8_t);
    uint8_t (*encode)(float);
    unsigned nan_code;  // a code that is NaN or inf (skipped), or 0x100 for none
  };
  for (const F& f : {F{4, 3, 7, fp8e4m3_to_float, float_to_fp8e4m3, 0x7F},
                     F{5, 2, 15, fp8e5m2_to_float, float_to_fp8e5m2, 0x7C},
                     F{2, 3, 1, fp6e2m3_to_float, float_to_fp6e2m3, 0x100},
                     F{2, 1, 1, fp4e2m1_to_float, float_to_fp4e2m1, 0x100}}) {
    const unsigned codes = 1u << (1 + f.ebits + f.mbits);
    for (unsigned c = 0; c < codes; ++c) {
      const unsigned magnitude = c & (codes / 2 - 1);
      if (f.nan_code != 0x100 && magnitude >= (f.nan_code & (codes / 2 - 1))) continue;
      const float v = f.decode(static_cast<uint8_t>(c));
      EXPECT_EQ(double(v), reference_decode(c, f.ebits, f.mbits, f.bias)) << "code " << c;
      if (magnitude != 0) {  // -0 may encode as +0
        EXPECT_EQ(f.encode(v), c) << "code " << c;
      }
    }
  }
}

TEST(Dtype, MinifloatRoundingIsNearestEven) {
  // e4m3 values near 1: steps of 1/8. 1 + 1/16 is a tie between 1 (even) and 1.125.
  EXPECT_EQ(fp8e4m3_to_float(float_to_fp8e4m3(1.0625f)), 1.0f);
  EXPECT_EQ(fp8e4m3_to_float(float_to_fp8e4m3(1.1875f)), 1.25f);  // tie 1.125/1.25 -> even 1.25
  EXPECT_EQ(fp8e4m3_to_float(float_to_fp8e4m3(1.07f)), 1.125f);
}

TEST(Dtype, Int8RoundsAndSaturates) {
  EXPECT_EQ(float_to_int8(2.5f), 2);
  EXPECT_EQ(float_to_int8(3.5f), 4);
  EXPECT_EQ(float_to_int8(-1000.f), -128);
  EXPECT_EQ(float_to_int8(1000.f), 127);
}

TEST(Dtype, MxBlockQuantisation) {
  // OCP MX: shared exponent = floor(log2(amax)) - emax(elem). For mxfp8 (e4m3, emax 8) and a
  // block whose largest magnitude is 3.0: floor(log2 3) = 1, scale = 2^(1-8) = 2^-7.
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = (i % 2 ? -1.0f : 1.0f) * (0.25f + i * 0.0859375f);  // up to 2.914
  x[31] = 3.0f;
  uint8_t elems[32] = {};
  const uint8_t scale = mx_quantize_block(Dtype::MxFp8, x, 32, elems, 0);
  EXPECT_EQ(scale, 127 - 7);
  for (int i = 0; i < 32; ++i) {
    const float back = mx_element(Dtype::MxFp8, elems, size_t(i), scale);
    EXPECT_NEAR(back, x[i], std::fabs(x[i]) * 0.0625f + 1e-6f) << i;  // e4m3 keeps 3 mantissa bits
  }
  // mxfp4 packs two elements per byte; values exactly representable survive.
  float y[4] = {6.0f, -1.5f, 0.5f, 4.0f};
  uint8_t packed[2] = {};
  const uint8_t s4 = mx_quantize_block(Dtype::MxFp4, y, 4, packed, 0);
  EXPECT_EQ(s4, 127);  // floor(log2 6) - 2 = 0
  for (int i = 0; i < 4; ++i) EXPECT_EQ(mx_element(Dtype::MxFp4, packed, size_t(i), s4), y[i]);
}

TEST(Dtype, PackedElementsDoNotDisturbNeighbours) {
  uint8_t buf[6] = {};
  for (int i = 0; i < 8; ++i) store_element(Dtype::MxFp6, buf, size_t(i), float(i) * 0.5f);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(load_element(Dtype::MxFp6, buf, size_t(i)), float(i) * 0.5f);
}

TEST(Dtype, NamesAndSizes) {
  for (int i = 0; i < kDtypeCount; ++i) {
    const auto d = static_cast<Dtype>(i);
    EXPECT_EQ(dtype_from_name(dtype_name(d)), d);
  }
  EXPECT_EQ(dtype_bytes(Dtype::MxFp6, 32), 24u);
  EXPECT_EQ(dtype_bytes(Dtype::MxFp4, 3), 2u);
  EXPECT_EQ(array_dtype_class(Dtype::Fp8E5M2), "fp8");
  EXPECT_EQ(accumulator_dtype(Dtype::Int8), Dtype::Int32);
}

}  // namespace
}  // namespace tessera::isa
