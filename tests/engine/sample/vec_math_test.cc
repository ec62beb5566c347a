// vec_math: FastExp accuracy against libm, the vectorized reductions against scalar loops.
#include "engine/sample/vec_math.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace kiln::engine::sample {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(VecMathTest, FastExpMatchesLibm) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.000731f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(FastExp(x) - want) / want);
  }
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(FastExp(0.0f), 1.0f);
  EXPECT_EQ(FastExp(-kInf), 0.0f);
  EXPECT_EQ(FastExp(-100.0f), 0.0f);
  EXPECT_EQ(FastExp(std::nanf("")), 0.0f);
}

TEST(VecMathTest, SumExpShiftedMatchesADoubleLoop) {
  for (const size_t n : {0u, 1u, 7u, 64u, 65u, 1000u, 128003u}) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::sin(0.7 * i) * 9.0);
    if (n > 3) x[3] = -kInf;
    double want = 0;
    for (const float v : x) want += std::exp(static_cast<double>(v) - 9.0);
    EXPECT_NEAR(SumExpShifted(x, 9.0f), want, 1e-6 * std::max(1.0, want)) << n;
  }
}

TEST(VecMathTest, MaxAndArgMax) {
  std::vector<float> x(1037, -kInf);
  EXPECT_EQ(ArgMax(x), -1);
  EXPECT_EQ(MaxValue(x), -kInf);
  x[1030] = 2.0f;  // in the scalar tail
  EXPECT_EQ(ArgMax(x), 1030);
  x[517] = 2.0f;   // a tie in the vector body: the lower index wins
  x[900] = 2.0f;
  EXPECT_EQ(ArgMax(x), 517);
  EXPECT_EQ(MaxValue(x), 2.0f);
  EXPECT_EQ(ArgMax(std::vector<float>{}), -1);
}

TEST(VecMathTest, FindNanOrPosInf) {
  std::vector<float> x(1001, 0.5f);
  x[10] = -kInf;  // allowed
  EXPECT_EQ(FindNanOrPosInf(x), -1);
  x[1000] = kInf;  // tail
  EXPECT_EQ(FindNanOrPosInf(x), 1000);
  x[77] = std::nanf("");
  EXPECT_EQ(FindNanOrPosInf(x), 77);
  x[77] = -std::nanf("");  // negative NaN too
  EXPECT_EQ(FindNanOrPosInf(x), 77);
}

}  // namespace
}  // namespace kiln::engine::sample
