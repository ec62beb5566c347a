// Argument checks for Matmul, QuantMatmul and LoraApply, shared by the CPU reference and the
// CUDA backend so both reject the same calls with the same messages (see check_util.h). Each
// takes the device kind the calling backend expects its views on. None reads tensor data.
//
// Every function returns OK or INVALID_ARGUMENT naming the op, the argument and the shapes
// (ValidateQuantizedMatrix may also answer UNIMPLEMENTED, e.g. 3-bit GPTQ).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/checks/check_util.h"

namespace kiln::kernels::checks {

// x [m, k] F32, w [n, k] F32/F16/BF16, out [m, n] F32, bias [n] F32/F16/BF16 or empty.
absl::Status CheckMatmul(const TensorView& x, const TensorView& w, const TensorView& bias,
                         const TensorView& out, DeviceKind kind);

// w valid for its format (ValidateQuantizedMatrix, named "QuantMatmul: w") with every tensor on
// `kind`; x [m, w.cols] F32, out [m, w.rows] F32, bias [w.rows] F32/F16/BF16 or empty.
absl::Status CheckQuantMatmul(const TensorView& x, const QuantizedMatrix& w, const TensorView& bias,
                              const TensorView& out, DeviceKind kind);

// "<op>: workspace has <bytes> bytes, needs <need>" unless workspace.bytes() >= need.
absl::Status CheckWorkspaceBytes(const char* op, const TensorView& workspace, size_t need);

// x [m, in] F32, out [m, out] F32, every pair ([r, in] / [out, r] F32, 1 <= r, finite scale) and
// the segments (seg_start[0] == 0, non-decreasing, within m rows; slots < pairs.size()).
// Dimensions are limited to INT_MAX (BLAS takes int). Returns the largest rank of `pairs`
// (0 without pairs).
absl::StatusOr<int64_t> CheckLoraApply(const TensorView& x, std::span<const LoraPair> pairs,
                                       const LoraSegments& segments, const TensorView& out,
                                       DeviceKind kind);

// The LoRA workspace: at least `need` bytes (need = LoraWorkspaceBytes(m, max_rank)) and, when
// need > 0, non-null and on `kind`.
absl::Status CheckLoraWorkspace(const TensorView& workspace, size_t need, int64_t m,
                                int64_t max_rank, DeviceKind kind);

}  // namespace kiln::kernels::checks
