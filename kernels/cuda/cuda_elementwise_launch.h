// Launchers for the elementwise kernels (cuda_elementwise.cu), behind a plain header so the .cc
// side (absl, validation) and the .cu side (kernels) stay apart (toolchain.md §7). Callers
// (cuda_elementwise.cc) have validated every argument: shapes fit, pointers are device memory
// of the stream's device, indices are in range. Launchers only enqueue on `stream` and return
// the launch error (cudaGetLastError); a count of 0 enqueues nothing and returns cudaSuccess.
//
// Arithmetic follows the CPU reference (kernels/cpu/cpu_backend.cc): weights are read in their
// dtype and widened to fp32, activations are fp32, reductions accumulate in fp32.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kiln::kernels::cuda {

// The float element types a kernel reads or writes.
enum class FloatType : int { kF32, kF16, kBF16 };

// dst[i] = src[i] converted (round-to-nearest-even when narrowing), n elements.
cudaError_t LaunchConvert(cudaStream_t stream, const void* src, FloatType src_type, void* dst,
                          FloatType dst_type, int64_t n);

// out[i, :] = table[ids[i], :] widened to fp32. Also GatherRows (an F32 table).
cudaError_t LaunchGatherRows(cudaStream_t stream,
                             const void* table,     // [rows, dim] table_type
                             FloatType table_type,
                             const int32_t* ids,    // [n] device, each in [0, rows)
                             float* out,            // [n, dim]
                             int64_t n, int64_t dim);

// out = x / sqrt(mean(x^2) + eps) * weight per row; with `residual` non-null first
// residual += x and the norm is taken of the updated residual (AddRmsNorm). out may alias x.
cudaError_t LaunchRmsNorm(cudaStream_t stream,
                          float* residual,       // [m, d] or nullptr
                          const float* x,        // [m, d]
                          const void* weight,    // [d] weight_type
                          FloatType weight_type, float eps,
                          float* out,            // [m, d]
                          int64_t m, int64_t d);

// out = (x - mean) / sqrt(var + eps) * weight + bias (biased variance). out may alias x.
cudaError_t LaunchLayerNorm(cudaStream_t stream,
                            const float* x,        // [m, d]
                            const void* weight,    // [d] weight_type
                            FloatType weight_type,
                            const void* bias,      // [d] bias_type, or nullptr
                            FloatType bias_type, float eps,
                            float* out,            // [m, d]
                            int64_t m, int64_t d);

// In place rotate_half RoPE over the first 2 * half dims of every head.
cudaError_t LaunchRope(cudaStream_t stream,
                       float* x,                  // [t, heads, head_dim]
                       const int32_t* positions,  // [t] device
                       const float* inv_freq,     // [half] device
                       float attention_scaling, int64_t t, int64_t heads, int64_t head_dim,
                       int64_t half);

enum class BinaryOp : int { kAdd, kSiluMul, kGeluErf, kGeluTanh };
// out[i] = op(a[i], b[i]) over n elements (the Gelu ops ignore b). out may alias a or b.
cudaError_t LaunchBinary(cudaStream_t stream, BinaryOp op,
                         const float* a,   // [n]
                         const float* b,   // [n]
                         float* out,       // [n]
                         int64_t n);

}  // namespace kiln::kernels::cuda
