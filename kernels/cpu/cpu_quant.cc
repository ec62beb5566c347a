// CpuBackend::QuantMatmul: out[m, rows] = x[m, cols] · W^T (+ bias) for a QuantizedMatrix W.
//
// Two paths:
//  - kBnb4, kGptq, kAwq: W is expanded tile by tile (DequantizeRows, already rounded to
//    compute_dtype) into the workspace and multiplied with OpenBLAS, as the reference does
//    (bitsandbytes' portable CPU forward is dequantize_4bit then F.linear in compute_dtype). x is
//    rounded to compute_dtype first and the output after the bias, so bf16/fp16 compute sees the
//    reference's roundings; accumulation is fp32 either way.
//  - kInt8: bitsandbytes 0.50's MatMul8bitLt (eval mode) on CPU. x is rounded to fp16 and
//    quantized row-wise (int8_vectorwise_quant with the outlier threshold), multiplied exactly in
//    int32 against the int8 weight, rescaled as int8_mm_dequant does (with its own constant
//    6.200124e-05), and the outlier columns are added back in higher precision against the
//    dequantized weight columns (int8_mixed_scaled_mm).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/checks/gemm_checks.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/quant/quant_internal.h"

namespace kiln::kernels::cpu {
namespace {

constexpr int64_t kTileBytes = 1 << 20;  // fp32 bytes of one dequantized W tile
constexpr size_t kAlign = 64;
// int8_mm_dequant's scale: bitsandbytes writes 1/(127*127) as this literal (not exactly it).
constexpr float kMmDequantScale = 6.200124e-05f;
constexpr float kInv127 = 7.874015718698502e-3f;

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

int64_t TileRows(int64_t n, int64_t k) {
  const int64_t rows = std::max<int64_t>(16, kTileBytes / std::max<int64_t>(1, 4 * k)) / 16 * 16;
  return std::min(n, rows);
}

// Workspace layout of the int8 path, in order: x rounded [m, k] f32, CA [m, k] i8, SCA [m]
// f32, outlier column flags [k] u8, outlier column list [k] i32.
struct Int8Workspace {
  float* x;
  int8_t* ca;
  float* sca;
  uint8_t* is_outlier;
  int32_t* outliers;
};

size_t Int8WorkspaceBytes(int64_t m, int64_t k) {
  const size_t mk = static_cast<size_t>(m * k);
  return AlignUp(mk * 4) + AlignUp(mk) + AlignUp(static_cast<size_t>(m) * 4) + AlignUp(static_cast<size_t>(k)) +
         AlignUp(static_cast<size_t>(k) * 4);
}

Int8Workspace CarveInt8(void* base, int64_t m, int64_t k) {
  char* p = static_cast<char*>(base);
  const size_t mk = static_cast<size_t>(m * k);
  Int8Workspace w;
  w.x = reinterpret_cast<float*>(p);
  p += AlignUp(mk * 4);
  w.ca = reinterpret_cast<int8_t*>(p);
  p += AlignUp(mk);
  w.sca = reinterpret_cast<float*>(p);
  p += AlignUp(static_cast<size_t>(m) * 4);
  w.is_outlier = reinterpret_cast<uint8_t*>(p);
  p += AlignUp(static_cast<size_t>(k));
  w.outliers = reinterpret_cast<int32_t*>(p);
  return w;
}

size_t GenericWorkspaceBytes(int64_t m, const QuantizedMatrix& w) {
  size_t bytes = AlignUp(static_cast<size_t>(TileRows(w.rows, w.cols) * w.cols) * 4);
  if (w.compute_dtype != DType::kF32) bytes += AlignUp(static_cast<size_t>(m * w.cols) * 4);
  return bytes;
}

float Fp16(float v) { return HalfToFloat(FloatToHalf(v)); }

// torch.round (half to even) then .to(int8); NaN (an all-zero row: 0 * inf) becomes 0.
int8_t RoundToInt8(float v) {
  if (std::isnan(v)) return 0;
  const float r = std::nearbyint(v);  // default rounding mode: to nearest, ties to even
  return static_cast<int8_t>(std::clamp(r, -128.0f, 127.0f));
}

int32_t DotI8(const int8_t* a, const int8_t* b, int64_t k) {
  int32_t acc = 0;
  for (int64_t i = 0; i < k; ++i) acc += static_cast<int32_t>(a[i]) * static_cast<int32_t>(b[i]);
  return acc;
}

}  // namespace

size_t CpuBackend::QuantMatmulWorkspaceBytes(int64_t m, const QuantizedMatrix& w) const {
  switch (w.format) {
    case QuantFormat::kInt8: return Int8WorkspaceBytes(m, w.cols);
    case QuantFormat::kBnb4:
    case QuantFormat::kGptq:
    case QuantFormat::kAwq: return GenericWorkspaceBytes(m, w);
  }
  return 0;
}

absl::Status CpuBackend::QuantMatmul(TensorView x, const QuantizedMatrix& w, TensorView bias, TensorView out,
                                     TensorView workspace) {
  if (auto s = checks::CheckQuantMatmul(x, w, bias, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t m = x.dim(0), k = w.cols, n = w.rows;
  if (auto s = checks::CheckWorkspaceBytes("QuantMatmul", workspace, QuantMatmulWorkspaceBytes(m, w)); !s.ok()) {
    return s;
  }
  if (m == 0) return absl::OkStatus();
  float* po = out.as<float>();
  const DType cd = w.compute_dtype;
  auto bias_at = [&](int64_t j) {
    float b = LoadFloat(bias.data(), bias.dtype(), j);
    quant_internal::RoundTo(cd, &b, 1);  // bias.to(compute dtype)
    return b;
  };

  if (w.format != QuantFormat::kInt8) {
    // Dequantize-and-multiply; works for any format DequantizeRows understands.
    char* ws = static_cast<char*>(workspace.data());
    const float* px = x.as<float>();
    if (cd != DType::kF32) {
      float* xr = reinterpret_cast<float*>(ws + AlignUp(static_cast<size_t>(TileRows(n, k) * k) * 4));
      std::memcpy(xr, px, static_cast<size_t>(m * k) * 4);
      quant_internal::RoundTo(cd, xr, m * k);
      px = xr;
    }
    float* tile_ws = reinterpret_cast<float*>(ws);
    const int64_t tile = TileRows(n, k);
    for (int64_t j0 = 0; j0 < n; j0 += tile) {
      const int64_t nt = std::min(tile, n - j0);
      runner_.For(nt, 4, [&](int64_t b, int64_t e, int) { DequantizeRows(w, j0 + b, j0 + e, tile_ws + b * k); });
      ParallelSgemmNT(runner_, m, nt, k, 1.0f, px, k, tile_ws, k, 0.0f, po + j0, n);
    }
    for (int64_t r = 0; r < m; ++r) {
      float* row = po + r * n;
      if (!bias.empty()) {
        for (int64_t j = 0; j < n; ++j) row[j] += bias_at(j);
      }
      quant_internal::RoundTo(cd, row, n);
    }
    return absl::OkStatus();
  }

  // ---- LLM.int8 ----
  const Int8Workspace ws = CarveInt8(workspace.data(), m, k);
  const int8_t* cb = w.int8.weight.as<int8_t>();
  const float* scb = w.int8.scb.as<float>();
  // A in the model dtype (compute_dtype), then A.to(float16) for quantization.
  std::memcpy(ws.x, x.data(), static_cast<size_t>(m * k) * 4);
  quant_internal::RoundTo(cd, ws.x, m * k);
  // Outlier columns: any |A16| >= threshold (the threshold compared in fp16, as torch does).
  const bool decompose = w.int8.threshold > 0.0f;
  const float th = Fp16(w.int8.threshold);
  std::memset(ws.is_outlier, 0, static_cast<size_t>(k));
  int64_t num_outliers = 0;
  if (decompose) {
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < k; ++c) {
        if (std::fabs(Fp16(ws.x[r * k + c])) >= th) ws.is_outlier[c] = 1;
      }
    }
    for (int64_t c = 0; c < k; ++c) {
      if (ws.is_outlier[c]) ws.outliers[num_outliers++] = static_cast<int32_t>(c);
    }
  }
  // Row stats over the values that are not themselves outliers (outlier elements are zeroed
  // before the absmax; other elements of an outlier column still count), then CA with the
  // outlier columns zeroed.
  runner_.For(m, 1, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = ws.x + r * k;
      float amax = 0.0f;
      for (int64_t c = 0; c < k; ++c) {
        const float a = std::fabs(Fp16(xr[c]));
        if (!(decompose && a >= th)) amax = std::max(amax, a);
      }
      ws.sca[r] = amax;
      const float scale = (1.0f / amax) * 127.0f;  // torch: 127.0 / t == t.reciprocal() * 127
      int8_t* car = ws.ca + r * k;
      for (int64_t c = 0; c < k; ++c) {
        const float a16 = Fp16(xr[c]);
        const bool zeroed = decompose && std::fabs(a16) >= th;
        car[c] = ws.is_outlier[c] ? int8_t{0} : RoundToInt8((zeroed ? 0.0f : a16) * scale);
      }
    }
  });
  // int32 product, int8_mm_dequant, bias; then the outlier columns in higher precision.
  runner_.For(n, 8, [&](int64_t j0, int64_t j1, int) {
    for (int64_t j = j0; j < j1; ++j) {
      const int8_t* cbr = cb + j * k;
      const float b = bias.empty() ? 0.0f : bias_at(j);  // bias.to(A.dtype), added in fp32
      for (int64_t r = 0; r < m; ++r) {
        const int32_t acc = DotI8(ws.ca + r * k, cbr, k);
        float v = static_cast<float>(acc) * (ws.sca[r] * scb[j]) * kMmDequantScale;
        if (!bias.empty()) v += b;
        quant_internal::RoundTo(cd, &v, 1);
        if (num_outliers > 0) {
          float sub = 0.0f;
          for (int64_t o = 0; o < num_outliers; ++o) {
            const int32_t c = ws.outliers[o];
            float deq = static_cast<float>(cbr[c]) * scb[j] * kInv127;  // int8_vectorwise_dequant
            quant_internal::RoundTo(cd, &deq, 1);
            sub += ws.x[r * k + c] * deq;
          }
          v += sub;
          quant_internal::RoundTo(cd, &v, 1);
        }
        po[r * n + j] = v;
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace kiln::kernels::cpu
