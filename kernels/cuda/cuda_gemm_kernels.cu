// Dense GEMV for decode (m <= kGemvMaxRows) and the small conversion/bias kernels around the
// cuBLASLt path. Why a GEMV of our own: at batch 1 a Linear is a pure weight stream, and
// cuBLASLt's small-m kernels do not reach the bandwidth floor; this kernel reads each weight
// once with 16-byte loads, keeps x in shared memory and reduces with warp shuffles.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_gemm_device.h"
#include "kernels/cuda/cuda_gemm_launch.h"

namespace kiln::kernels::cuda {
namespace {

using gemm_device::LoadFloat;
using gemm_device::RoundTo;
using gemm_device::WarpSum;

constexpr int kGemvWarps = 8;                    // warps (output columns) per block
constexpr int kGemvThreads = kGemvWarps * 32;
constexpr int64_t kSmemXMaxBytes = 48 * 1024;     // x stays in shared memory up to this size

// 16 bytes of weights as fp32: 4 floats, or 8 halves / bfloat16s.
template <typename WT>
struct Vec;
template <>
struct Vec<float> {
  static constexpr int kElems = 4;
  __device__ static void Unpack(const uint4& raw, float* f) {
    f[0] = __uint_as_float(raw.x);
    f[1] = __uint_as_float(raw.y);
    f[2] = __uint_as_float(raw.z);
    f[3] = __uint_as_float(raw.w);
  }
  __device__ static float One(const float* p, int64_t i) { return p[i]; }
};
template <>
struct Vec<__half> {
  static constexpr int kElems = 8;
  __device__ static void Unpack(const uint4& raw, float* f) {
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h;
      memcpy(&h, &words[i], 4);
      const float2 v = __half22float2(h);
      f[2 * i] = v.x;
      f[2 * i + 1] = v.y;
    }
  }
  __device__ static float One(const __half* p, int64_t i) { return __half2float(p[i]); }
};
template <>
struct Vec<__nv_bfloat16> {
  static constexpr int kElems = 8;
  __device__ static void Unpack(const uint4& raw, float* f) {
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __uint_as_float(words[i] << 16);              // low half: element 2i
      f[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);  // high half: element 2i + 1
    }
  }
  __device__ static float One(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
};

// One warp per output column j; all warps of a block share x (in shared memory when kSmemX).
// kVec: w rows are 16-byte aligned (base aligned, k * sizeof(WT) % 16 == 0).
template <typename WT, bool kVec, bool kSmemX>
__global__ void __launch_bounds__(kGemvThreads)
    GemvKernel(const float* __restrict__ x,  // [m, k]
               const WT* __restrict__ w,     // [n, k]
               const void* __restrict__ bias, GemmDType bt,
               float* __restrict__ out,      // [m, n]
               int m, int64_t n, int64_t k) {
  extern __shared__ float4 gemv_smem[];  // [m, k] fp32 when kSmemX
  const float* xp = x;
  if constexpr (kSmemX) {
    float* xs = reinterpret_cast<float*>(gemv_smem);
    const int64_t total = static_cast<int64_t>(m) * k;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) xs[i] = x[i];
    __syncthreads();
    xp = xs;
  }
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp;
  if (j >= n) return;  // no barrier below
  const WT* wr = w + j * k;
  float acc[kGemvMaxRows];
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = 0.0f;
  if constexpr (kVec) {
    constexpr int kE = Vec<WT>::kElems;
    const int64_t nvec = k / kE;
    const uint4* wv = reinterpret_cast<const uint4*>(wr);
#pragma unroll 4
    for (int64_t v = lane; v < nvec; v += 32) {
      const uint4 raw = __ldg(wv + v);
      float wf[kE];
      Vec<WT>::Unpack(raw, wf);
      const int64_t k0 = v * kE;
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < m) {
          const float* xr = xp + r * k + k0;
#pragma unroll
          for (int e = 0; e < kE; ++e) acc[r] += xr[e] * wf[e];
        }
      }
    }
  } else {
    for (int64_t i = lane; i < k; i += 32) {
      const float wf = Vec<WT>::One(wr, i);
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < m) acc[r] += xp[r * k + i] * wf;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = WarpSum(acc[r]);
  if (lane == 0) {
    const float b = bias != nullptr ? LoadFloat(bias, bt, j) : 0.0f;
    for (int r = 0; r < m; ++r) out[r * n + j] = acc[r] + b;
  }
}

template <typename WT>
cudaError_t LaunchGemvTyped(const float* x, const WT* w, const void* bias, GemmDType bt, float* out,
                            int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  const bool vec = k > 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0 &&
                   (k * static_cast<int64_t>(sizeof(WT))) % 16 == 0;
  const int64_t x_bytes = m * k * 4;
  const bool smem_x = x_bytes <= kSmemXMaxBytes;
  const dim3 grid(static_cast<unsigned>((n + kGemvWarps - 1) / kGemvWarps));
  const size_t smem = smem_x ? static_cast<size_t>(x_bytes) : 0;
  const int mi = static_cast<int>(m);
  if (vec && smem_x) {
    GemvKernel<WT, true, true><<<grid, kGemvThreads, smem, stream>>>(x, w, bias, bt, out, mi, n, k);
  } else if (vec) {
    GemvKernel<WT, true, false><<<grid, kGemvThreads, 0, stream>>>(x, w, bias, bt, out, mi, n, k);
  } else if (smem_x) {
    GemvKernel<WT, false, true><<<grid, kGemvThreads, smem, stream>>>(x, w, bias, bt, out, mi, n, k);
  } else {
    GemvKernel<WT, false, false><<<grid, kGemvThreads, 0, stream>>>(x, w, bias, bt, out, mi, n, k);
  }
  return cudaGetLastError();
}

__global__ void ConvertFromF32Kernel(const float* __restrict__ src, void* __restrict__ dst, GemmDType dt,
                                     int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    switch (dt) {
      case GemmDType::kF16: static_cast<__half*>(dst)[i] = __float2half_rn(src[i]); break;
      case GemmDType::kBF16: static_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(src[i]); break;
      case GemmDType::kF32: static_cast<float*>(dst)[i] = src[i]; break;
    }
  }
}

__global__ void BiasRoundKernel(float* __restrict__ out, const void* __restrict__ bias, GemmDType bt,
                                GemmDType round_to, int64_t m, int64_t n) {
  const int64_t total = m * n;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = out[i];
    if (bias != nullptr) v += RoundTo(LoadFloat(bias, bt, i % n), round_to);
    out[i] = RoundTo(v, round_to);
  }
}

}  // namespace

cudaError_t LaunchGemv(const float* x, const void* w, GemmDType wt, const void* bias, GemmDType bt,
                       float* out, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  if (m > kGemvMaxRows) return cudaErrorInvalidValue;
  switch (wt) {
    case GemmDType::kF32:
      return LaunchGemvTyped(x, static_cast<const float*>(w), bias, bt, out, m, n, k, stream);
    case GemmDType::kF16:
      return LaunchGemvTyped(x, static_cast<const __half*>(w), bias, bt, out, m, n, k, stream);
    case GemmDType::kBF16:
      return LaunchGemvTyped(x, static_cast<const __nv_bfloat16*>(w), bias, bt, out, m, n, k, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchConvertFromF32(const float* src, void* dst, GemmDType dt, int64_t count,
                                 cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  ConvertFromF32Kernel<<<gemm_device::GridFor(count, 256), 256, 0, stream>>>(src, dst, dt, count);
  return cudaGetLastError();
}

cudaError_t LaunchBiasRound(float* out, const void* bias, GemmDType bt, GemmDType round_to, int64_t m,
                            int64_t n, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  if (bias == nullptr && round_to == GemmDType::kF32) return cudaSuccess;
  BiasRoundKernel<<<gemm_device::GridFor(m * n, 256), 256, 0, stream>>>(out, bias, bt, round_to, m, n);
  return cudaGetLastError();
}

}  // namespace kiln::kernels::cuda
