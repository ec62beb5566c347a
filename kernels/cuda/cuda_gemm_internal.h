// Internal to the gemm group (cuda_gemm.cc, cuda_quant.cc): the GemmEngine's cuBLASLt entry
// point and the workspace helpers. Not for other groups: they call the ops in cuda_ops.h.
#pragma once

#include <cuda_runtime_api.h>
#include <library_types.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_gemm_launch.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/dtype.h"

namespace kiln::kernels::cuda {

// cuBLASLt's workspace inside the caller's workspace (NVIDIA recommends 32 MiB on Hopper).
inline constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;
// Every carved workspace piece starts on this boundary (cuBLASLt and 16-byte vector loads).
inline constexpr size_t kWorkspaceAlign = 256;

inline size_t AlignUp(size_t n) { return (n + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign; }

// Hands out aligned pieces of a workspace view. The sizes a caller carves must have been
// counted by the matching *WorkspaceBytes function, which adds kWorkspaceAlign of slack for the
// base alignment.
class WorkspaceCarver {
 public:
  explicit WorkspaceCarver(void* base)
      : next_((reinterpret_cast<uintptr_t>(base) + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign) {}
  void* Take(size_t bytes) {
    void* p = reinterpret_cast<void*>(next_);
    next_ += AlignUp(bytes);
    return p;
  }

 private:
  uintptr_t next_;
};

// GemmDType of a F32/F16/BF16 DType (others never reach here: the checks refuse them).
inline GemmDType ToGemmDType(DType t) {
  return t == DType::kF16 ? GemmDType::kF16 : t == DType::kBF16 ? GemmDType::kBF16 : GemmDType::kF32;
}

// out[m, n] (row stride ldo) = x[m, k] · w[n, k]^T through cuBLASLt: w and x both of ab_type,
// CUBLAS_COMPUTE_32F (no TF32), fp32 output. Computed as out^T = w · x^T in cuBLAS's
// column-major terms. `bias` ([n] F32, or null) is added through the epilogue when cuBLASLt
// offers one for the shape; the result says whether it was (false: the caller adds it).
struct LtGemmArgs {
  int64_t m = 0, n = 0, k = 0;  // all > 0
  GemmDType ab_type = GemmDType::kF32;
  const void* w = nullptr;  // [n, k]
  const void* x = nullptr;  // [m, k]
  float* out = nullptr;     // [m, ldo], columns [0, n) written
  int64_t ldo = 0;
  const float* bias = nullptr;  // [n] or null
  void* lt_workspace = nullptr;  // kLtWorkspaceBytes, 256-byte aligned
};
absl::StatusOr<bool> LtGemm(GemmEngine& engine, const LtGemmArgs& args, cudaStream_t stream);

}  // namespace kiln::kernels::cuda
