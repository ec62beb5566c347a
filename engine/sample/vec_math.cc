#include "engine/sample/vec_math.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace kiln::engine::sample {
namespace {
// Lanes processed together: fixed-size inner loops that the compiler vectorizes without
// reassociating anything (each lane keeps its own accumulator; lanes are summed in order).
constexpr size_t kLanes = 8;
}  // namespace

float MaxValue(std::span<const float> x) {
  float lane[kLanes];
  std::fill(lane, lane + kLanes, -std::numeric_limits<float>::infinity());
  size_t i = 0;
  for (; i + kLanes <= x.size(); i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
  }
  float m = -std::numeric_limits<float>::infinity();
  for (size_t j = 0; j < kLanes; ++j) m = std::max(m, lane[j]);
  for (; i < x.size(); ++i) m = std::max(m, x[i]);
  return m;
}

int64_t ArgMax(std::span<const float> x) {
  const float m = MaxValue(x);
  if (m == -std::numeric_limits<float>::infinity()) return -1;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == m) return static_cast<int64_t>(i);
  }
  return -1;  // unreachable without NaN
}

int64_t FindNanOrPosInf(std::span<const float> x) {
  // Integer tests on the bit patterns vectorize; the scalar search runs only on bad input.
  constexpr uint32_t kPosInf = 0x7F800000u;
  uint32_t bad = 0;
  size_t i = 0;
  for (; i + kLanes <= x.size(); i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      const uint32_t b = std::bit_cast<uint32_t>(x[i + j]);
      bad |= static_cast<uint32_t>((b & 0x7FFFFFFFu) > kPosInf) |  // NaN
             static_cast<uint32_t>(b == kPosInf);
    }
  }
  for (; i < x.size(); ++i) bad |= static_cast<uint32_t>(std::isnan(x[i]) || x[i] == HUGE_VALF);
  if (bad == 0) return -1;
  for (size_t k = 0; k < x.size(); ++k) {
    if (std::isnan(x[k]) || x[k] == HUGE_VALF) return static_cast<int64_t>(k);
  }
  return -1;
}

double SumExpShifted(std::span<const float> x, float shift) {
  // Float partial sums over short blocks (exact enough: at most 64 terms <= 1 each), folded
  // into double lane sums.
  constexpr size_t kBlock = 64;
  double total[kLanes] = {};
  size_t i = 0;
  for (; i + kBlock <= x.size(); i += kBlock) {
    float lane[kLanes] = {};
    for (size_t b = 0; b < kBlock; b += kLanes) {
      for (size_t j = 0; j < kLanes; ++j) lane[j] += FastExp(x[i + b + j] - shift);
    }
    for (size_t j = 0; j < kLanes; ++j) total[j] += lane[j];
  }
  double sum = 0;
  for (size_t j = 0; j < kLanes; ++j) sum += total[j];
  for (; i < x.size(); ++i) sum += FastExp(x[i] - shift);
  return sum;
}

}  // namespace kiln::engine::sample
