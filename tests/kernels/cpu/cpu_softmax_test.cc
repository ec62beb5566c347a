// ExpShiftedSum (the softmax exponentials of CPU attention) against std::exp in double:
// every length 0..40 (vector body and padded tail), the whole range the attention feeds it
// (score - max <= 0, down past exp's underflow) and a little above, NaN and -inf.
#include "kernels/cpu/cpu_softmax.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kiln::kernels::cpu {
namespace {

// exp(x) correctly rounded to float (double has 29 spare bits here).
float Exact(float x) { return static_cast<float>(std::exp(static_cast<double>(x))); }

TEST(ExpShiftedSumTest, WithinTwoUlpOfExpAndSumsWhatItWrote) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-95.0f, 5.0f);
  for (int64_t n = 0; n <= 40; ++n) {
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = dist(rng);
      const float shift = trial % 2 ? 0.0f : 3.25f;
      std::vector<float> y = x;
      const float sum = ExpShiftedSum(y.data(), n, shift);
      double want_sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float arg = x[static_cast<size_t>(i)] - shift;
        const float want = Exact(arg), got = y[static_cast<size_t>(i)];
        want_sum += got;
        if (want < std::numeric_limits<float>::min()) {  // below 2^-126: flushed to 0 or tiny
          EXPECT_LE(got, std::numeric_limits<float>::min()) << "exp(" << arg << ")";
          continue;
        }
        const float ulp = std::nextafter(want, INFINITY) - want;
        EXPECT_LE(std::fabs(got - want), 2 * ulp) << "exp(" << arg << ") = " << want << ", got " << got;
      }
      EXPECT_NEAR(sum, want_sum, 1e-6 * std::max(1.0, want_sum)) << "n=" << n;
    }
  }
}

TEST(ExpShiftedSumTest, EdgesNanInfinityAndUnderflow) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // Nine values: one full vector and a tail of one.
  std::vector<float> x = {0.0f, -inf, nan, -200.0f, 100.0f, 88.0f, -87.0f, 1.0f, nan};
  const float sum = ExpShiftedSum(x.data(), static_cast<int64_t>(x.size()), 0.0f);
  EXPECT_EQ(x[0], 1.0f);
  EXPECT_EQ(x[1], 0.0f);
  EXPECT_TRUE(std::isnan(x[2]));
  EXPECT_EQ(x[3], 0.0f);
  EXPECT_EQ(x[4], inf);
  EXPECT_NEAR(x[5], Exact(88.0f), 2 * (std::nextafter(Exact(88.0f), inf) - Exact(88.0f)));
  EXPECT_NEAR(x[6], Exact(-87.0f), 1e-44);
  EXPECT_NEAR(x[7], Exact(1.0f), 3e-7);
  EXPECT_TRUE(std::isnan(x[8]));
  EXPECT_TRUE(std::isnan(sum));  // a NaN score poisons the softmax, never vanishes from it
}

}  // namespace
}  // namespace kiln::kernels::cpu
