#include "kernels/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"

namespace kiln::kernels {
namespace {

TEST(DTypeTest, SafetensorsNamesRoundTrip) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64, DType::kI8, DType::kU8,
                  DType::kI16, DType::kI32, DType::kI64, DType::kBool}) {
    auto parsed = DTypeFromSafetensorsName(DTypeName(t));
    ASSERT_TRUE(parsed.has_value()) << DTypeName(t);
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_FALSE(DTypeFromSafetensorsName("F8_E4M3").has_value());
  EXPECT_FALSE(DTypeFromSafetensorsName("f32").has_value());
}

// Every half bit pattern survives half → float → half unchanged (NaNs stay NaN).
TEST(DTypeTest, HalfRoundTripsExhaustively) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f))));
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << "h=" << h;
  }
}

TEST(DTypeTest, HalfRoundsToNearestEven) {
  // 1 + 2^-11 lies exactly between 1 and the next half (1 + 2^-10): ties to even → 1.
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // Slightly above the tie rounds up.
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // overflows to Inf
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);  // largest finite
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
}

TEST(DTypeTest, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  uint32_t bits = 0x3f808000u;  // exactly halfway between 0x3f80 and 0x3f81: stays even
  float f;
  std::memcpy(&f, &bits, 4);
  EXPECT_EQ(FloatToBFloat16(f), 0x3f80);
  bits = 0x3f818000u;  // halfway between 0x3f81 and 0x3f82: rounds to even 0x3f82
  std::memcpy(&f, &bits, 4);
  EXPECT_EQ(FloatToBFloat16(f), 0x3f82);
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(BFloat16ToFloat(0x4049), 3.140625f);
}

}  // namespace
}  // namespace kiln::kernels
