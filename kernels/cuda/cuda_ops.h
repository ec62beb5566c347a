// The CUDA implementations of the Backend ops, as free functions over a CudaContext.
// CudaBackend (cuda_backend.h) validates nothing itself: it locks, then forwards each Backend
// method here. Every function validates its arguments with the shared checks
// (kernels/checks/*_checks.h, device kind kCuda) before enqueuing anything, so the CUDA backend
// rejects exactly what the CPU reference rejects; host metadata (ids, slots, tables, segments)
// is validated on the host, then staged with ctx.stager.
//
// Semantics are those of kernels/backend.h, op for op; the CPU backend is the numeric
// reference that tests/gpu compares against. Activations stay F32 (as on the CPU); weights
// may be F32/F16/BF16 and are read in their dtype; accumulation is fp32.
//
// Files (each group has one owner; keep .cu files behind plain headers, toolchain.md §7):
//   elementwise: cuda_backend.{h,cc}, cuda_stager.cc, cuda_elementwise*.{cc,cu} — Embedding …
//                GatherRows, Convert
//   gemm:        cuda_gemm*.{cc,cu}, cuda_quant*.{cc,cu}, cuda_lora*.{cc,cu}
//   attention:   cuda_attention*.{cc,cu} — KvWrite, PagedAttention
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_context.h"

namespace kiln::kernels::cuda {

// ---- elementwise ------------------------------------------------------------------------
absl::Status Convert(CudaContext& ctx, TensorView src, TensorView dst);
absl::Status Embedding(CudaContext& ctx, TensorView table, std::span<const int32_t> ids,
                       TensorView out);
absl::Status RmsNorm(CudaContext& ctx, TensorView x, TensorView weight, float eps, TensorView out);
absl::Status AddRmsNorm(CudaContext& ctx, TensorView residual, TensorView x, TensorView weight,
                        float eps, TensorView out);
absl::Status LayerNorm(CudaContext& ctx, TensorView x, TensorView weight, TensorView bias,
                       float eps, TensorView out);
absl::Status Rope(CudaContext& ctx, TensorView x, std::span<const int32_t> positions,
                  std::span<const float> inv_freq, float attention_scaling);
absl::Status Add(CudaContext& ctx, TensorView a, TensorView b, TensorView out);
absl::Status SiluMul(CudaContext& ctx, TensorView gate, TensorView up, TensorView out);
absl::Status Gelu(CudaContext& ctx, TensorView x, GeluKind kind, TensorView out);
absl::Status GatherRows(CudaContext& ctx, TensorView src, std::span<const int32_t> rows,
                        TensorView out);

// ---- gemm: dense (cuBLASLt), quantized, LoRA ---------------------------------------------
// The cuBLASLt handle and a plan cache keyed by shape and dtypes; one per backend.
struct GemmEngineDeleter {
  void operator()(GemmEngine* engine) const;
};
using GemmEnginePtr = std::unique_ptr<GemmEngine, GemmEngineDeleter>;
absl::StatusOr<GemmEnginePtr> CreateGemmEngine(int device_index);

absl::Status Matmul(CudaContext& ctx, TensorView x, TensorView w, TensorView bias, TensorView out,
                    TensorView workspace);
size_t MatmulWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType w);
absl::Status QuantMatmul(CudaContext& ctx, TensorView x, const QuantizedMatrix& w, TensorView bias,
                         TensorView out, TensorView workspace);
size_t QuantMatmulWorkspaceBytes(int64_t m, const QuantizedMatrix& w);
absl::Status LoraApply(CudaContext& ctx, TensorView x, std::span<const LoraPair> pairs,
                       const LoraSegments& segments, TensorView out, TensorView workspace);
size_t LoraWorkspaceBytes(int64_t m, int64_t max_rank);

// ---- attention ---------------------------------------------------------------------------
absl::Status KvWrite(CudaContext& ctx, TensorView k, TensorView v, std::span<const int32_t> slots,
                     const PagedKvLayer& cache);
absl::Status PagedAttention(CudaContext& ctx, TensorView q, const PagedKvLayer& cache,
                            const AttentionParams& params, TensorView out, TensorView workspace);
size_t AttentionWorkspaceBytes(int64_t max_kv_len);

}  // namespace kiln::kernels::cuda
