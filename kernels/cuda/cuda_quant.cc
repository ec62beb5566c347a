// CUDA QuantMatmul: out[m, rows] = x[m, cols] · W^T (+ bias) for a QuantizedMatrix W, with the
// CPU reference's roundings (cpu_quant.cc): x, the dequantized weight, the bias and the output
// rounded to compute_dtype, fp32 accumulation.
//
// Paths:
//  - kBnb4/kGptq/kAwq, m <= kGemvMaxRows (decode): fused dequantize-in-the-dot kernels over x
//    rounded into the workspace; W is read once in its packed form and never expanded.
//  - kBnb4/kGptq/kAwq, larger m (prefill): W is dequantized tile by tile into the workspace in
//    compute_dtype and multiplied by cuBLASLt (fp32 compute and output). The dequantized values
//    and x are already rounded to compute_dtype, so storing them in it is exact: the product is
//    the reference's up to summation order. Then bias and the output rounding.
//  - kInt8: LLM.int8 for any m (cuda_quant_kernels.cu), structured exactly as the CPU's.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/checks/gemm_checks.h"
#include "kernels/cuda/cuda_gemm_internal.h"
#include "kernels/cuda/cuda_quant_launch.h"

namespace kiln::kernels::cuda {
namespace {

constexpr size_t kTileBytes = size_t{64} << 20;  // one dequantized W tile (compute dtype)

size_t Bytes(int64_t a, int64_t b, size_t elem) {
  return static_cast<size_t>(a) * static_cast<size_t>(b) * elem;
}

int64_t TileRows(int64_t n, int64_t k, size_t elem) {
  const auto rows = static_cast<int64_t>(kTileBytes / std::max<size_t>(1, Bytes(1, k, elem)));
  return std::min(n, std::max<int64_t>(16, rows / 16 * 16));
}

size_t Int8Bytes(int64_t m, int64_t k) {
  return kWorkspaceAlign + AlignUp(Bytes(m, k, 4)) + AlignUp(Bytes(m, k, 1)) + AlignUp(Bytes(m, 1, 4)) +
         AlignUp(Bytes(k, 1, 1)) + AlignUp(Bytes(k, 1, 4)) + AlignUp(4);
}

QuantKernelParams ParamsOf(const QuantizedMatrix& w) {
  QuantKernelParams p;
  p.rows = w.rows;
  p.cols = w.cols;
  p.compute = ToGemmDType(w.compute_dtype);
  switch (w.format) {
    case QuantFormat::kBnb4:
      p.kind = QuantKind::kBnb4;
      p.packed = w.bnb4.packed.as<const uint8_t>();
      p.absmax = w.bnb4.absmax.as<const float>();
      std::memcpy(p.code, w.bnb4.code.data(), sizeof(p.code));
      p.blocksize = w.bnb4.blocksize;
      break;
    case QuantFormat::kInt8:
      p.kind = QuantKind::kInt8;
      p.weight = w.int8.weight.as<const int8_t>();
      p.scb = w.int8.scb.as<const float>();
      p.threshold = w.int8.threshold;
      break;
    case QuantFormat::kGptq:
      p.kind = QuantKind::kGptq;
      p.qweight = w.gptq.qweight.as<const int32_t>();
      p.qzeros = w.gptq.qzeros.as<const int32_t>();
      p.scales = w.gptq.scales.data();
      p.scales_f16 = w.gptq.scales.dtype() == DType::kF16;
      p.g_idx = w.gptq.g_idx.as<const int32_t>();
      p.bits = w.gptq.bits;
      p.zero_offset = w.gptq.zero_offset;
      p.groups = w.gptq.groups;
      break;
    case QuantFormat::kAwq:
      p.kind = QuantKind::kAwq;
      p.qweight = w.awq.qweight.as<const int32_t>();
      p.qzeros = w.awq.qzeros.as<const int32_t>();
      p.scales = w.awq.scales.data();
      p.scales_f16 = w.awq.scales.dtype() == DType::kF16;
      p.bits = 4;
      p.group_size = w.awq.group_size;
      p.groups = w.cols / std::max<int64_t>(1, w.awq.group_size);
      break;
  }
  return p;
}

// The fused GEMV over rows in chunks of kGemvMaxRows, each chunk's x rounded into `scratch`
// (kLtWorkspaceBytes, unused by cuBLASLt here): the prefill path's fallback when cuBLASLt has no
// algorithm for a shape (`why`), slower but exact.
absl::Status GemvRows(CudaContext& ctx, const QuantKernelParams& p, const float* x, const void* bias, GemmDType bt,
                      float* out, int64_t m, void* scratch, const absl::Status& why) {
  const int64_t n = p.rows, k = p.cols;
  if (Bytes(kGemvMaxRows, k, 4) > kLtWorkspaceBytes) return why;
  auto* xr = static_cast<float*>(scratch);  // [kGemvMaxRows, k]
  for (int64_t r0 = 0; r0 < m; r0 += kGemvMaxRows) {
    const int64_t rows = std::min<int64_t>(kGemvMaxRows, m - r0);
    if (auto s = CudaCheck(LaunchRoundToCompute(x + r0 * k, xr, p.compute, rows * k, ctx.stream),
                           "launch RoundToCompute(QuantMatmul)");
        !s.ok()) {
      return s;
    }
    if (auto s = CudaCheck(LaunchQuantGemv(p, xr, bias, bt, out + r0 * n, rows, ctx.stream), "launch QuantGemv");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// Prefill: dequantize W tile by tile in compute_dtype, multiply with cuBLASLt, then bias and
// the rounding of the output.
absl::Status DequantGemm(CudaContext& ctx, const QuantKernelParams& p, const float* x, const void* bias,
                         GemmDType bt, float* out, int64_t m, void* workspace) {
  if (ctx.gemm == nullptr) return absl::InternalError("QuantMatmul: the CUDA context has no GemmEngine");
  const int64_t n = p.rows, k = p.cols;
  const size_t elem = static_cast<size_t>(GemmDTypeSize(p.compute));
  WorkspaceCarver carve(workspace);
  void* lt_ws = carve.Take(kLtWorkspaceBytes);
  const int64_t tile = TileRows(n, k, elem);
  void* w_tile = carve.Take(Bytes(tile, k, elem));  // [tile, k] compute dtype
  const void* xc = x;
  if (p.compute != GemmDType::kF32) {
    void* xbuf = carve.Take(Bytes(m, k, elem));  // [m, k] compute dtype: x.to(compute_dtype)
    if (auto s = CudaCheck(LaunchConvertFromF32(x, xbuf, p.compute, m * k, ctx.stream), "launch Convert(QuantMatmul)");
        !s.ok()) {
      return s;
    }
    xc = xbuf;
  }
  for (int64_t j0 = 0; j0 < n; j0 += tile) {
    const int64_t nt = std::min(tile, n - j0);
    if (auto s = CudaCheck(LaunchDequantRows(p, j0, nt, w_tile, ctx.stream), "launch DequantRows(QuantMatmul)");
        !s.ok()) {
      return s;
    }
    LtGemmArgs args;
    args.m = m;
    args.n = nt;
    args.k = k;
    args.ab_type = p.compute;
    args.w = w_tile;
    args.x = xc;
    args.out = out + j0;
    args.ldo = n;
    args.lt_workspace = lt_ws;
    if (auto done = LtGemm(*ctx.gemm, args, ctx.stream); !done.ok()) {
      if (!absl::IsUnimplemented(done.status())) return done.status();
      return GemvRows(ctx, p, x, bias, bt, out, m, lt_ws, done.status());
    }
  }
  return CudaCheck(LaunchBiasRound(out, bias, bt, p.compute, m, n, ctx.stream), "launch BiasRound(QuantMatmul)");
}

}  // namespace

size_t QuantMatmulWorkspaceBytes(int64_t m, const QuantizedMatrix& w) {
  if (m <= 0) return 0;
  const int64_t k = w.cols;
  switch (w.format) {
    case QuantFormat::kInt8: return Int8Bytes(m, k);
    case QuantFormat::kBnb4:
    case QuantFormat::kGptq:
    case QuantFormat::kAwq: {
      if (m <= kGemvMaxRows) return kWorkspaceAlign + AlignUp(Bytes(m, k, 4));
      const size_t elem = static_cast<size_t>(GemmDTypeSize(ToGemmDType(w.compute_dtype)));
      size_t bytes = kWorkspaceAlign + kLtWorkspaceBytes + AlignUp(Bytes(TileRows(w.rows, k, elem), k, elem));
      if (w.compute_dtype != DType::kF32) bytes += AlignUp(Bytes(m, k, elem));
      return bytes;
    }
  }
  return 0;
}

absl::Status QuantMatmul(CudaContext& ctx, TensorView x, const QuantizedMatrix& w, TensorView bias, TensorView out,
                         TensorView workspace) {
  if (auto s = checks::CheckQuantMatmul(x, w, bias, out, DeviceKind::kCuda); !s.ok()) return s;
  const int64_t m = x.dim(0), k = w.cols;
  const size_t need = QuantMatmulWorkspaceBytes(m, w);
  if (auto s = checks::CheckWorkspaceBytes("QuantMatmul", workspace, need); !s.ok()) return s;
  if (need > 0 && workspace.device().kind != DeviceKind::kCuda) {
    return absl::InvalidArgumentError(absl::StrCat("QuantMatmul: workspace is on ", DeviceName(workspace.device()),
                                                   ", expected ", DeviceName(ctx.device)));
  }
  if (m == 0) return absl::OkStatus();
  const QuantKernelParams p = ParamsOf(w);
  const void* pb = bias.empty() ? nullptr : bias.data();
  const GemmDType bt = ToGemmDType(bias.dtype());
  float* po = out.as<float>();
  if (w.format == QuantFormat::kInt8) {
    WorkspaceCarver carve(workspace.data());
    Int8Scratch s;
    s.xr = static_cast<float*>(carve.Take(Bytes(m, k, 4)));
    s.ca = static_cast<int8_t*>(carve.Take(Bytes(m, k, 1)));
    s.sca = static_cast<float*>(carve.Take(Bytes(m, 1, 4)));
    s.is_outlier = static_cast<uint8_t*>(carve.Take(Bytes(k, 1, 1)));
    s.outliers = static_cast<int32_t*>(carve.Take(Bytes(k, 1, 4)));
    s.num_outliers = static_cast<int32_t*>(carve.Take(4));
    return CudaCheck(LaunchInt8Matmul(p, x.as<float>(), s, pb, bt, po, m, ctx.stream), "launch Int8Matmul");
  }
  if (m > kGemvMaxRows) return DequantGemm(ctx, p, x.as<float>(), pb, bt, po, m, workspace.data());
  WorkspaceCarver carve(workspace.data());
  auto* xr = static_cast<float*>(carve.Take(Bytes(m, k, 4)));  // [m, k] x rounded to compute_dtype
  if (auto s = CudaCheck(LaunchRoundToCompute(x.as<float>(), xr, p.compute, m * k, ctx.stream),
                         "launch RoundToCompute(QuantMatmul)");
      !s.ok()) {
    return s;
  }
  return CudaCheck(LaunchQuantGemv(p, xr, pb, bt, po, m, ctx.stream),
                   absl::StrCat("launch QuantGemv(", QuantFormatName(w.format), ")"));
}

}  // namespace kiln::kernels::cuda
