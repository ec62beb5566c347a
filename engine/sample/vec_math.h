// Vectorizable float exp for the sampler's probability sums.
//
// FastExp is a branch-free Cephes-style expf (range reduction by ln 2, degree-6 polynomial,
// exponent by bit arithmetic): relative error below 2e-7 on [-87, 88], exactly 0 for
// x < -87 (including -inf: masked tokens weigh nothing). The compiler turns loops over it
// into SIMD code, which glibc's expf calls prevent; a 128k-token pass costs a fraction of
// the scalar libm version. Weights only decide membership near top_p / min_p thresholds and
// sampling probabilities, where 1e-7 relative differences are far below what torch's own
// float32 softmax rounding produces.
//
// Thread-safety: pure functions.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace kiln::engine::sample {

inline float FastExp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  // Branch-free so that loops over it vectorize: clamp, then zero the underflow lanes.
  const float keep = static_cast<float>(x >= -87.0f);  // 0 for x < -87, -inf and NaN
  const float xc = std::min(88.0f, std::max(-87.0f, x));  // NaN -> -87 (then zeroed)
  const float t = xc * kLog2e + kRound;
  const float n = t - kRound;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kRound);
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>((ni + 127) << 23);
  return p * scale * keep;
}

// The maximum of `x` (-inf when empty or all -inf; NaN must have been excluded).
float MaxValue(std::span<const float> x);

// The index of the first maximum of `x` (ties: lowest index, as torch.argmax), or -1 when
// `x` is empty or all -inf. `x` must hold no NaN.
int64_t ArgMax(std::span<const float> x);

// The index of the first NaN or +inf in `x`, or -1 (-inf is allowed: it masks a token).
int64_t FindNanOrPosInf(std::span<const float> x);

// Sum over i of FastExp(x[i] - shift), accumulated in double in a fixed order (the same on
// every run and platform).
double SumExpShifted(std::span<const float> x, float shift);

}  // namespace kiln::engine::sample
