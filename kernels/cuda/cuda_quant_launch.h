// Launchers of the quantized matmul kernels (cuda_quant_kernels.cu) over a plain description of
// the weight, so the .cu side needs no absl (toolchain.md §7). cuda_quant.cc validates with the
// shared checks, fills QuantKernelParams from the QuantizedMatrix and carves the workspace.
// Every launcher only enqueues on `stream` and returns cudaGetLastError().
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/cuda_gemm_launch.h"

namespace kiln::kernels::cuda {

enum class QuantKind : uint8_t { kBnb4, kInt8, kGptq, kAwq };

// Device pointers and shape of one QuantizedMatrix (layouts in kernels/quant/quant_matrix.h).
struct QuantKernelParams {
  QuantKind kind = QuantKind::kBnb4;
  int64_t rows = 0;  // out_features (n)
  int64_t cols = 0;  // in_features (k)
  GemmDType compute = GemmDType::kF32;
  // kBnb4
  const uint8_t* packed = nullptr;  // [ceil(rows*cols/2)]
  const float* absmax = nullptr;    // [ceil(rows*cols/blocksize)]
  float code[16] = {};
  int64_t blocksize = 64;
  // kInt8
  const int8_t* weight = nullptr;  // [rows, cols]
  const float* scb = nullptr;      // [rows]
  float threshold = 0.0f;
  // kGptq / kAwq
  const int32_t* qweight = nullptr;  // GPTQ [cols*bits/32, rows]; AWQ [cols, rows/8]
  const int32_t* qzeros = nullptr;   // GPTQ [groups, rows*bits/32]; AWQ [groups, rows/8]
  const void* scales = nullptr;      // [groups, rows]
  bool scales_f16 = true;            // else F32
  const int32_t* g_idx = nullptr;    // GPTQ [cols], entries in [0, groups) (validated at load)
  int bits = 4;                      // GPTQ 2/4/8; AWQ 4
  int zero_offset = 1;               // GPTQ
  int64_t groups = 0;
  int64_t group_size = 128;  // AWQ
};

// xr[i] = x[i] rounded to p.compute (the reference's x.to(compute_dtype)).
cudaError_t LaunchRoundToCompute(const float* x,  // [count]
                                 float* xr,       // [count]
                                 GemmDType compute, int64_t count, cudaStream_t stream);

// Fused dequantize-in-the-dot for kBnb4/kGptq/kAwq, m <= kGemvMaxRows:
// out[r, j] = round(sum_k xr[r, k] * round(W[j, k]) + round(bias[j])), round = to p.compute,
// fp32 accumulation; W is never expanded.
cudaError_t LaunchQuantGemv(const QuantKernelParams& p,
                            const float* xr,    // [m, cols], already rounded to p.compute
                            const void* bias,   // [rows] bt, or null
                            GemmDType bt,
                            float* out,         // [m, rows]
                            int64_t m, cudaStream_t stream);

// dst[j - row0, k] = W[j, k] rounded to p.compute, stored as p.compute (exact), for rows
// [row0, row0 + num_rows) of a kBnb4/kGptq/kAwq weight.
cudaError_t LaunchDequantRows(const QuantKernelParams& p, int64_t row0, int64_t num_rows,
                              void* dst,  // [num_rows, cols] p.compute
                              cudaStream_t stream);

// LLM.int8 (cpu_quant.cc's algorithm, step for step). Workspace pieces:
struct Int8Scratch {
  float* xr = nullptr;            // [m, cols] x rounded to compute
  int8_t* ca = nullptr;           // [m, cols] row-quantized x, outlier columns zeroed
  float* sca = nullptr;           // [m] row absmax (outliers excluded)
  uint8_t* is_outlier = nullptr;  // [cols]
  int32_t* outliers = nullptr;    // [cols] outlier columns in increasing order
  int32_t* num_outliers = nullptr;  // [1]
};
// Rounds x, finds the outlier columns (|fp16(x)| >= fp16(threshold), threshold > 0), row stats
// and CA; then the int32 product, int8_mm_dequant, bias and the outlier columns in higher
// precision: out[m, rows].
cudaError_t LaunchInt8Matmul(const QuantKernelParams& p,
                             const float* x,    // [m, cols]
                             const Int8Scratch& scratch,
                             const void* bias,  // [rows] bt, or null
                             GemmDType bt,
                             float* out,        // [m, rows]
                             int64_t m, cudaStream_t stream);

}  // namespace kiln::kernels::cuda
