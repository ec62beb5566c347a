// Argument checks for Convert, the host copies, Embedding, RmsNorm, AddRmsNorm, LayerNorm, Rope,
// Add, SiluMul, Gelu and GatherRows: shared by the CPU reference and the CUDA backend so both
// reject the same calls with the same messages (see check_util.h). Each takes the device kind
// the calling backend expects its views on.
//
// All return OK or a status naming the op, the argument and the shapes/values: INVALID_ARGUMENT
// for shapes, dtypes, devices and out-of-range indices, UNIMPLEMENTED for a Convert between
// dtypes no backend converts. None reads tensor data; the index checks read only the host spans,
// so a failed check means nothing was written. Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/checks/check_util.h"

namespace kiln::kernels::checks {

// CopyFromHost ("dst") / CopyToHost ("src"): `view` must be on a device of `kind`
// ("CopyFromHost: dst not on cpu").
absl::Status CheckHostCopy(const char* op, const char* arg, const TensorView& view,
                           DeviceKind kind);

// Convert: same numel; both views on `kind`; a dtype change only between F32/F16/BF16
// (UNIMPLEMENTED otherwise). Views with numel > 0 must have data.
absl::Status CheckConvert(const TensorView& src, const TensorView& dst, DeviceKind kind);

// Embedding: table [rows, dim] F32/F16/BF16, out [ids.size(), dim] F32, every id in [0, rows).
absl::Status CheckEmbedding(const TensorView& table, std::span<const int32_t> ids,
                            const TensorView& out, DeviceKind kind);

// RmsNorm / LayerNorm core ("RmsNorm", "AddRmsNorm", "LayerNorm"): x and out [m, d] F32 of the
// same shape, weight [d] F32/F16/BF16.
absl::Status CheckNorm(const char* op, const TensorView& x, const TensorView& weight,
                       const TensorView& out, DeviceKind kind);
// AddRmsNorm: CheckNorm plus residual [m, d] F32 shaped as x.
absl::Status CheckAddRmsNorm(const TensorView& residual, const TensorView& x,
                             const TensorView& weight, const TensorView& out, DeviceKind kind);
// LayerNorm: CheckNorm plus bias empty or [d] F32/F16/BF16.
absl::Status CheckLayerNorm(const TensorView& x, const TensorView& weight, const TensorView& bias,
                            const TensorView& out, DeviceKind kind);

// Rope: x [t, heads, head_dim] F32, positions.size() == t, 0 < 2 * inv_freq.size() <= head_dim.
absl::Status CheckRope(const TensorView& x, std::span<const int32_t> positions,
                       std::span<const float> inv_freq, DeviceKind kind);

// Add / SiluMul / Gelu (which passes x as both a and b): a, b, out F32 of one shape.
absl::Status CheckElementwise2(const char* op, const TensorView& a, const TensorView& b,
                               const TensorView& out, DeviceKind kind);

// GatherRows: src [m, d] F32, out [rows.size(), d] F32, every row in [0, m).
absl::Status CheckGatherRows(const TensorView& src, std::span<const int32_t> rows,
                             const TensorView& out, DeviceKind kind);

// For backends whose devices are separate address spaces (CUDA): a non-empty `view` must live
// on exactly `device` ("RmsNorm: x is on cuda:1, expected cuda:0"). The CPU backend does not
// call it (its logical devices share host memory).
absl::Status CheckOnDevice(const char* op, const char* arg, const TensorView& view,
                           const Device& device);

}  // namespace kiln::kernels::checks
