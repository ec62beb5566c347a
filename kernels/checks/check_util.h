// Argument checks shared by every Backend implementation, so the CPU reference and the CUDA
// backend reject exactly the same calls with exactly the same messages. The per-op checks
// (elementwise_checks.h, gemm_checks.h, attention_checks.h) build on these.
//
// Every check returns INVALID_ARGUMENT naming the op, the argument and the shapes; none reads
// tensor data (a device backend cannot), only host metadata (ids, slots, tables).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "kernels/tensor.h"

namespace kiln::kernels::checks {

inline bool IsFloat3(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

// "<op>: <arg> is <shape>, expected <want>".
absl::Status ShapeError(const char* op, const char* arg, const TensorView& v,
                        const std::string& want);

// INVALID_ARGUMENT unless v has rank `rank`, lives on a device of kind `kind`, is non-null
// when numel > 0, and is F32 (f32_only) or F32/F16/BF16.
absl::Status CheckView(const char* op, const char* arg, const TensorView& v, int rank,
                       DeviceKind kind, bool f32_only);

}  // namespace kiln::kernels::checks
