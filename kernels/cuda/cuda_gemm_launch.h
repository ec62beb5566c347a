// Launchers of the dense GEMM group's own kernels (cuda_gemm_kernels.cu), behind a plain header
// so the .cc side (absl, validation, cuBLASLt plans) and the .cu side (kernels only) stay apart
// (toolchain.md §7). Every launcher only enqueues on `stream` and returns cudaGetLastError();
// arguments are validated by the caller (cuda_gemm.cc, cuda_quant.cc).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kiln::kernels::cuda {

// The float dtypes the gemm kernels read or write (kernels::DType's F32/F16/BF16).
enum class GemmDType : uint8_t { kF32, kF16, kBF16 };

inline int GemmDTypeSize(GemmDType t) { return t == GemmDType::kF32 ? 4 : 2; }

// Rows the GEMV kernels handle at once (decode batches); larger m goes through cuBLASLt.
inline constexpr int64_t kGemvMaxRows = 8;

// out[m, n] = x[m, k] · w[n, k]^T (+ bias[j]) with fp32 accumulation, w read in its dtype
// (16-byte vector loads when w is 16-byte aligned and k * sizeof(w) % 16 == 0), one warp per
// output column j. m <= kGemvMaxRows; k may be 0 (out = bias or 0). bias may be null.
cudaError_t LaunchGemv(const float* x,     // [m, k]
                       const void* w,      // [n, k] wt
                       GemmDType wt,
                       const void* bias,   // [n] bt, or null
                       GemmDType bt,
                       float* out,         // [m, n]
                       int64_t m, int64_t n, int64_t k, cudaStream_t stream);

// dst[i] = src[i] rounded (to nearest even) to dt (kF32: a copy).
cudaError_t LaunchConvertFromF32(const float* src,  // [count]
                                 void* dst,         // [count] dt
                                 GemmDType dt, int64_t count, cudaStream_t stream);

// out[r, j] = round(out[r, j] + round(bias[j])) where round rounds to `round_to` (kF32: none);
// bias may be null (then only the rounding).
cudaError_t LaunchBiasRound(float* out,        // [m, n]
                            const void* bias,  // [n] bt, or null
                            GemmDType bt, GemmDType round_to, int64_t m, int64_t n,
                            cudaStream_t stream);

}  // namespace kiln::kernels::cuda
