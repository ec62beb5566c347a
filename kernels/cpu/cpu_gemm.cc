// CpuBackend::Matmul: out[m, n] = x[m, k] · w[n, k]^T (+ bias), fp32 accumulation.
// m <= kSmallM (decode), any weight dtype: SmallMMatmul, a dot-product kernel that streams
// each W row once for all m rows of x. Decode is bound by reading W, and this kernel reads at
// the machine's read bandwidth (bench/cpu/decode_gemv_bench: fp32 at m = 1 is 1.2x OpenBLAS's
// sgemv on the same runner, at ~100% of the read bandwidth measured in the same run).
// Larger m (prefill, big batches), compute-bound: F32 weights go to OpenBLAS split over the
// backend's threads (ParallelSgemmNT); F16/BF16 weights are converted to fp32 tile by tile
// into the workspace and multiplied with sgemm.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "kernels/checks/gemm_checks.h"
#include "kernels/cpu/cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kiln::kernels::cpu {
namespace {

constexpr int64_t kTileBytes = 1 << 20;  // fp32 bytes of one converted W tile

int64_t TileRows(int64_t n, int64_t k) {
  const int64_t rows = std::max<int64_t>(16, kTileBytes / std::max<int64_t>(1, 4 * k)) / 16 * 16;
  return std::min(n, rows);
}

// Scalar path for m <= kSmallM (CPUs without AVX2).
void SmallMScalar(const float* x, int64_t m, int64_t k, const void* w, DType wt, int64_t j0,
                  int64_t j1, float* out, int64_t n) {
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t j = j0; j < j1; ++j) {
    ToFloat(static_cast<const char*>(w) + j * k * static_cast<int64_t>(DTypeSize(wt)), wt, row.data(), k);
    for (int64_t r = 0; r < m; ++r) {
      float acc = 0;
      for (int64_t i = 0; i < k; ++i) acc += x[r * k + i] * row[static_cast<size_t>(i)];
      out[r * n + j] = acc;
    }
  }
}

#if defined(__x86_64__)
// Eight weights as fp32, from fp32, bf16 or fp16 storage.
template <DType kW, typename T>
__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8(const T* p) {
  if constexpr (kW == DType::kF32) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (kW == DType::kBF16) {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_cvtph_ps(h);
    }
  }
}

template <DType kW, typename T>
inline float LoadOne(const T* p) {
  if constexpr (kW == DType::kF32) {
    return *p;
  } else if constexpr (kW == DType::kBF16) {
    return BFloat16ToFloat(*p);
  } else {
    return HalfToFloat(*p);
  }
}

__attribute__((target("avx2,fma"))) inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Each row of x gets the same two-accumulator dot product whatever m is, so a token's
// output does not depend on how many other tokens share its step (m <= kSmallM). M is a
// template parameter so the 2*M accumulators live in registers: with a run-time m they were
// kept on the stack and m = 4 ran at half the bandwidth.
template <DType kW, int M, typename T>
__attribute__((target("avx2,fma,f16c"))) void SmallMAvx2(const float* x, int64_t k, const T* w,
                                                          int64_t j0, int64_t j1, float* out,
                                                          int64_t n) {
  for (int64_t j = j0; j < j1; ++j) {
    const T* wr = w + j * k;
    __m256 acc[M][2];
    for (int r = 0; r < M; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      const __m256 w0 = Load8<kW>(wr + i), w1 = Load8<kW>(wr + i + 8);
      for (int r = 0; r < M; ++r) {
        acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * k + i), w0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * k + i + 8), w1, acc[r][1]);
      }
    }
    for (int r = 0; r < M; ++r) {
      float s = HSum(_mm256_add_ps(acc[r][0], acc[r][1]));
      for (int64_t t = i; t < k; ++t) s += x[r * k + t] * LoadOne<kW>(wr + t);
      out[r * n + j] = s;
    }
  }
}

template <DType kW, typename T>
void SmallMAvx2ForM(const float* x, int64_t m, int64_t k, const T* w, int64_t j0, int64_t j1,
                    float* out, int64_t n) {
  static_assert(kSmallM == 4, "one instance per m");
  switch (m) {
    case 1: return SmallMAvx2<kW, 1>(x, k, w, j0, j1, out, n);
    case 2: return SmallMAvx2<kW, 2>(x, k, w, j0, j1, out, n);
    case 3: return SmallMAvx2<kW, 3>(x, k, w, j0, j1, out, n);
    default: return SmallMAvx2<kW, 4>(x, k, w, j0, j1, out, n);
  }
}
#endif

// Below this many W rows per thread a split costs more in wake-ups and repeated packing of x
// than it gains.
constexpr int64_t kMinSgemmColsPerThread = 64;
constexpr int64_t kMinSmallMRowsPerThread = 16;

}  // namespace

void ParallelSgemmNT(ParallelRunner& runner, int64_t m, int64_t n, int64_t k, float alpha,
                     const float* x, int64_t ldx, const float* w, int64_t ldw, float beta,
                     float* out, int64_t ldo) {
  if (m <= 0 || n <= 0) return;
  runner.For(n, kMinSgemmColsPerThread, [&](int64_t j0, int64_t j1, int) {
    const int cols = static_cast<int>(j1 - j0);
    if (m == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, cols, static_cast<int>(k), alpha, w + j0 * ldw,
                  static_cast<int>(ldw), x, 1, beta, out + j0, 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), cols,
                  static_cast<int>(k), alpha, x, static_cast<int>(ldx), w + j0 * ldw,
                  static_cast<int>(ldw), beta, out + j0, static_cast<int>(ldo));
    }
  });
}

void SmallMMatmul(ParallelRunner& runner, const float* x, int64_t m, int64_t k, const void* w,
                  DType wt, int64_t n, float* out) {
  if (m <= 0 || n <= 0) return;
  runner.For(n, kMinSmallMRowsPerThread, [&](int64_t j0, int64_t j1, int) {
#if defined(__x86_64__)
    if (CpuHasAvx2FmaF16c()) {
      switch (wt) {
        case DType::kF32:
          return SmallMAvx2ForM<DType::kF32>(x, m, k, static_cast<const float*>(w), j0, j1, out, n);
        case DType::kBF16:
          return SmallMAvx2ForM<DType::kBF16>(x, m, k, static_cast<const uint16_t*>(w), j0, j1, out, n);
        default:
          return SmallMAvx2ForM<DType::kF16>(x, m, k, static_cast<const uint16_t*>(w), j0, j1, out, n);
      }
    }
#endif
    SmallMScalar(x, m, k, w, wt, j0, j1, out, n);
  });
}

size_t CpuBackend::MatmulWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType w) const {
  if (w == DType::kF32 || m <= kSmallM) return 0;
  return static_cast<size_t>(TileRows(n, k) * k) * 4;
}

absl::Status CpuBackend::Matmul(TensorView x, TensorView w, TensorView bias, TensorView out,
                                TensorView workspace) {
  if (auto s = checks::CheckMatmul(x, w, bias, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  const size_t need = MatmulWorkspaceBytes(m, n, k, w.dtype());
  if (auto s = checks::CheckWorkspaceBytes("Matmul", workspace, need); !s.ok()) return s;
  if (m == 0 || n == 0) return absl::OkStatus();
  const float* px = x.as<float>();
  float* po = out.as<float>();

  if (m <= kSmallM) {
    SmallMMatmul(runner_, px, m, k, w.data(), w.dtype(), n, po);
  } else if (w.dtype() == DType::kF32) {
    ParallelSgemmNT(runner_, m, n, k, 1.0f, px, k, w.as<float>(), k, 0.0f, po, n);
  } else {
    const int64_t tile = TileRows(n, k);
    float* ws = workspace.as<float>();
    const size_t wsize = DTypeSize(w.dtype());
    for (int64_t j0 = 0; j0 < n; j0 += tile) {
      const int64_t nt = std::min(tile, n - j0);
      runner_.For(nt, 4, [&](int64_t b, int64_t e, int) {
        ToFloat(static_cast<const char*>(w.data()) + static_cast<size_t>((j0 + b) * k) * wsize,
                w.dtype(), ws + b * k, (e - b) * k);
      });
      ParallelSgemmNT(runner_, m, nt, k, 1.0f, px, k, ws, k, 0.0f, po + j0, n);
    }
  }
  if (!bias.empty()) {
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < n; ++j) po[r * n + j] += LoadFloat(bias.data(), bias.dtype(), j);
    }
  }
  return absl::OkStatus();
}

}  // namespace kiln::kernels::cpu
