#include "kernels/cpu/cpu_softmax.h"

#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kiln::kernels::cpu {
namespace {

float ExpShiftedSumScalar(float* x, int64_t n, float shift) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - shift));
  return sum;
}

#if defined(__x86_64__)
// exp of eight lanes: k = round(x / ln 2), r = x - k ln 2 (ln 2 in two parts, so r is exact),
// exp(r) by the degree-6 minimax polynomial of Cephes' expf, times 2^k built in the exponent.
__attribute__((target("avx2,fma"))) inline __m256 Exp8(__m256 x) {
  const __m256 max_x = _mm256_set1_ps(88.72283935546875f);   // exp overflows above
  const __m256 min_x = _mm256_set1_ps(-87.33654022216797f);  // exp(x) < 2^-126 below
  const __m256 clamped = _mm256_max_ps(_mm256_min_ps(x, max_x), min_x);
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(clamped, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), clamped);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i pow2k =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(pow2k));
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, min_x, _CMP_LT_OQ));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(std::numeric_limits<float>::infinity()),
                       _mm256_cmp_ps(x, max_x, _CMP_GT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));  // NaN in, NaN out
}

__attribute__((target("avx2,fma"))) float ExpShiftedSumAvx2(float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 y = Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, y);
    acc = _mm256_add_ps(acc, y);
  }
  if (i < n) {  // the tail through the same lanes, padded with -inf (exp = 0)
    alignas(32) float tail[8];
    for (int l = 0; l < 8; ++l) tail[l] = i + l < n ? x[i + l] : -std::numeric_limits<float>::infinity();
    const __m256 y = Exp8(_mm256_sub_ps(_mm256_load_ps(tail), s));
    _mm256_store_ps(tail, y);
    for (int64_t l = 0; i + l < n; ++l) x[i + l] = tail[l];
    acc = _mm256_add_ps(acc, y);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
}
#endif

}  // namespace

float ExpShiftedSum(float* x, int64_t n, float shift) {
#if defined(__x86_64__)
  if (CpuHasAvx2FmaF16c()) return ExpShiftedSumAvx2(x, n, shift);
#endif
  return ExpShiftedSumScalar(x, n, shift);
}

}  // namespace kiln::kernels::cpu
