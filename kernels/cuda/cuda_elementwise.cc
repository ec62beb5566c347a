// The elementwise group of cuda_ops.h: validate with the checks the CPU reference uses
// (kernels/checks/elementwise_checks.h, device kind kCuda) plus the exact device (a view on
// another GPU would be an illegal address, a sticky error), stage host metadata, launch.
#include <cstdint>
#include <initializer_list>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/checks/elementwise_checks.h"
#include "kernels/cuda/cuda_elementwise_launch.h"
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {
namespace {

using NamedView = std::pair<const char*, const TensorView*>;

absl::Status OnDevice(const CudaContext& ctx, const char* op,
                      std::initializer_list<NamedView> views) {
  for (const auto& [name, view] : views) {
    if (auto s = checks::CheckOnDevice(op, name, *view, ctx.device); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Callers have checked the dtype is F32/F16/BF16 (checks::IsFloat3).
FloatType ToFloatType(DType dtype) {
  switch (dtype) {
    case DType::kF16: return FloatType::kF16;
    case DType::kBF16: return FloatType::kBF16;
    case DType::kF32: case DType::kF64: case DType::kI8: case DType::kU8: case DType::kI16:
    case DType::kI32: case DType::kI64: case DType::kBool:
      break;
  }
  return FloatType::kF32;
}

// Stages one int32 array; *device receives its device copy (nullptr when empty).
absl::Status StageInts(CudaContext& ctx, std::span<const int32_t> values, const int32_t** device) {
  const HostArray arrays[] = {{values.data(), values.size_bytes()}};
  const void* ptrs[1] = {nullptr};
  if (auto s = ctx.stager->Stage(arrays, ptrs); !s.ok()) return s;
  *device = static_cast<const int32_t*>(ptrs[0]);
  return absl::OkStatus();
}

absl::Status Launched(cudaError_t error, const char* kernel) {
  return CudaCheck(error, absl::StrCat("launch ", kernel));
}

absl::Status Binary(CudaContext& ctx, const char* op, BinaryOp kind, const TensorView& a,
                    const TensorView& b, const TensorView& out) {
  if (auto s = checks::CheckElementwise2(op, a, b, out, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = OnDevice(ctx, op, {{"a", &a}, {"b", &b}, {"out", &out}}); !s.ok()) return s;
  return Launched(LaunchBinary(ctx.stream, kind, a.as<const float>(), b.as<const float>(),
                               out.as<float>(), a.numel()),
                  op);
}

}  // namespace

absl::Status Convert(CudaContext& ctx, TensorView src, TensorView dst) {
  if (auto s = checks::CheckConvert(src, dst, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = OnDevice(ctx, "Convert", {{"src", &src}, {"dst", &dst}}); !s.ok()) return s;
  if (src.numel() == 0) return absl::OkStatus();
  if (src.dtype() == dst.dtype()) {
    return CudaCheck(cudaMemcpyAsync(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToDevice,
                                     ctx.stream),
                     "cudaMemcpyAsync(Convert)");
  }
  return Launched(LaunchConvert(ctx.stream, src.data(), ToFloatType(src.dtype()), dst.data(),
                                ToFloatType(dst.dtype()), src.numel()),
                  "Convert");
}

absl::Status Embedding(CudaContext& ctx, TensorView table, std::span<const int32_t> ids,
                       TensorView out) {
  if (auto s = checks::CheckEmbedding(table, ids, out, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = OnDevice(ctx, "Embedding", {{"table", &table}, {"out", &out}}); !s.ok()) return s;
  if (ids.empty() || table.dim(1) == 0) return absl::OkStatus();
  const int32_t* device_ids = nullptr;
  if (auto s = StageInts(ctx, ids, &device_ids); !s.ok()) return s;
  return Launched(LaunchGatherRows(ctx.stream, table.data(), ToFloatType(table.dtype()), device_ids,
                                   out.as<float>(), static_cast<int64_t>(ids.size()), table.dim(1)),
                  "Embedding");
}

absl::Status GatherRows(CudaContext& ctx, TensorView src, std::span<const int32_t> rows,
                        TensorView out) {
  if (auto s = checks::CheckGatherRows(src, rows, out, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = OnDevice(ctx, "GatherRows", {{"src", &src}, {"out", &out}}); !s.ok()) return s;
  if (rows.empty() || src.dim(1) == 0) return absl::OkStatus();
  const int32_t* device_rows = nullptr;
  if (auto s = StageInts(ctx, rows, &device_rows); !s.ok()) return s;
  return Launched(LaunchGatherRows(ctx.stream, src.data(), FloatType::kF32, device_rows,
                                   out.as<float>(), static_cast<int64_t>(rows.size()), src.dim(1)),
                  "GatherRows");
}

absl::Status RmsNorm(CudaContext& ctx, TensorView x, TensorView weight, float eps,
                     TensorView out) {
  if (auto s = checks::CheckNorm("RmsNorm", x, weight, out, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = OnDevice(ctx, "RmsNorm", {{"x", &x}, {"weight", &weight}, {"out", &out}}); !s.ok()) {
    return s;
  }
  return Launched(LaunchRmsNorm(ctx.stream, nullptr, x.as<const float>(), weight.data(),
                                ToFloatType(weight.dtype()), eps, out.as<float>(), x.dim(0),
                                x.dim(1)),
                  "RmsNorm");
}

absl::Status AddRmsNorm(CudaContext& ctx, TensorView residual, TensorView x, TensorView weight,
                        float eps, TensorView out) {
  if (auto s = checks::CheckAddRmsNorm(residual, x, weight, out, DeviceKind::kCuda); !s.ok()) {
    return s;
  }
  if (auto s = OnDevice(ctx, "AddRmsNorm",
                        {{"residual", &residual}, {"x", &x}, {"weight", &weight}, {"out", &out}});
      !s.ok()) {
    return s;
  }
  return Launched(LaunchRmsNorm(ctx.stream, residual.as<float>(), x.as<const float>(),
                                weight.data(), ToFloatType(weight.dtype()), eps, out.as<float>(),
                                x.dim(0), x.dim(1)),
                  "AddRmsNorm");
}

absl::Status LayerNorm(CudaContext& ctx, TensorView x, TensorView weight, TensorView bias,
                       float eps, TensorView out) {
  if (auto s = checks::CheckLayerNorm(x, weight, bias, out, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = OnDevice(ctx, "LayerNorm",
                        {{"x", &x}, {"weight", &weight}, {"bias", &bias}, {"out", &out}});
      !s.ok()) {
    return s;
  }
  return Launched(LaunchLayerNorm(ctx.stream, x.as<const float>(), weight.data(),
                                  ToFloatType(weight.dtype()), bias.empty() ? nullptr : bias.data(),
                                  ToFloatType(bias.dtype()), eps, out.as<float>(), x.dim(0),
                                  x.dim(1)),
                  "LayerNorm");
}

absl::Status Rope(CudaContext& ctx, TensorView x, std::span<const int32_t> positions,
                  std::span<const float> inv_freq, float attention_scaling) {
  if (auto s = checks::CheckRope(x, positions, inv_freq, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = OnDevice(ctx, "Rope", {{"x", &x}}); !s.ok()) return s;
  if (x.numel() == 0) return absl::OkStatus();
  const HostArray arrays[] = {{positions.data(), positions.size_bytes()},
                              {inv_freq.data(), inv_freq.size_bytes()}};
  const void* ptrs[2] = {nullptr, nullptr};
  if (auto s = ctx.stager->Stage(arrays, ptrs); !s.ok()) return s;
  return Launched(LaunchRope(ctx.stream, x.as<float>(), static_cast<const int32_t*>(ptrs[0]),
                             static_cast<const float*>(ptrs[1]), attention_scaling, x.dim(0),
                             x.dim(1), x.dim(2), static_cast<int64_t>(inv_freq.size())),
                  "Rope");
}

absl::Status Add(CudaContext& ctx, TensorView a, TensorView b, TensorView out) {
  return Binary(ctx, "Add", BinaryOp::kAdd, a, b, out);
}

absl::Status SiluMul(CudaContext& ctx, TensorView gate, TensorView up, TensorView out) {
  return Binary(ctx, "SiluMul", BinaryOp::kSiluMul, gate, up, out);
}

absl::Status Gelu(CudaContext& ctx, TensorView x, GeluKind kind, TensorView out) {
  switch (kind) {
    case GeluKind::kErf: return Binary(ctx, "Gelu", BinaryOp::kGeluErf, x, x, out);
    case GeluKind::kTanh: return Binary(ctx, "Gelu", BinaryOp::kGeluTanh, x, x, out);
  }
  return absl::InvalidArgumentError("Gelu: unknown kind");
}

}  // namespace kiln::kernels::cuda
