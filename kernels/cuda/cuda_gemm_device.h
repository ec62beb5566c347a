// Device helpers shared by the gemm group's .cu files (dense GEMV, quantized kernels, LoRA).
// Include only from .cu files: it needs nvcc (cuda_fp16.h / cuda_bf16.h intrinsics).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_gemm_launch.h"

namespace kiln::kernels::cuda::gemm_device {

inline constexpr unsigned kFullMask = 0xffffffffu;
// int8_mm_dequant's 1/(127*127) as bitsandbytes writes it, and int8_vectorwise_dequant's 1/127.
inline constexpr float kMmDequantScale = 6.200124e-05f;
inline constexpr float kInv127 = 7.874015718698502e-3f;

__device__ __forceinline__ float Fp16(float v) { return __half2float(__float2half_rn(v)); }

// v rounded to t (round to nearest even, as the CPU reference's FloatToHalf/FloatToBFloat16).
__device__ __forceinline__ float RoundTo(float v, GemmDType t) {
  switch (t) {
    case GemmDType::kF16: return __half2float(__float2half_rn(v));
    case GemmDType::kBF16: return __bfloat162float(__float2bfloat16_rn(v));
    case GemmDType::kF32: return v;
  }
  return v;
}

// Element i of a F32/F16/BF16 array.
__device__ __forceinline__ float LoadFloat(const void* p, GemmDType t, int64_t i) {
  switch (t) {
    case GemmDType::kF16: return __half2float(static_cast<const __half*>(p)[i]);
    case GemmDType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case GemmDType::kF32: return static_cast<const float*>(p)[i];
  }
  return 0.0f;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ int WarpSumInt(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// Grid size for a grid-stride loop over `count` elements with `threads` per block.
inline unsigned GridFor(int64_t count, int threads) {
  int64_t blocks = (count + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > 65535 * 16) blocks = 65535 * 16;  // grid-stride loops cover the rest
  return static_cast<unsigned>(blocks);
}

}  // namespace kiln::kernels::cuda::gemm_device
