// CpuBackend: memory, conversions, embedding, norms, RoPE and elementwise ops. Matmul lives in
// cpu_gemm.cc, KV write and attention in cpu_attention.cc.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/checks/elementwise_checks.h"
#include "kernels/cpu/cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kiln::kernels::cpu {
namespace {

constexpr size_t kAlignment = 64;
constexpr int64_t kRowsPerChunk = 8;         // norm/embedding rows per parallel chunk (min)
constexpr int64_t kElemsPerChunk = 1 << 14;  // elementwise ops: elements per chunk (min)

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) void HalfRowF16c(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  }
  for (; i < n; ++i) d[i] = HalfToFloat(s[i]);
}
#endif

}  // namespace

bool CpuHasAvx2FmaF16c() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

void ToFloat(const void* src, DType dtype, float* dst, int64_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16: {
      const auto* s = static_cast<const uint16_t*>(src);
#if defined(__x86_64__)
      if (CpuHasAvx2FmaF16c()) {
        HalfRowF16c(s, dst, n);
        return;
      }
#endif
      for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(s[i]);
      return;
    }
    case DType::kBF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t bits = static_cast<uint32_t>(s[i]) << 16;
        std::memcpy(dst + i, &bits, 4);
      }
      return;
    }
    case DType::kF64: case DType::kI8: case DType::kU8: case DType::kI16: case DType::kI32:
    case DType::kI64: case DType::kBool:
      break;
  }
  std::fprintf(stderr, "kiln cpu ToFloat: unsupported dtype\n");  // callers check dtypes
  std::abort();
}

void FromFloat(const float* src, DType dtype, void* dst, int64_t n) {
  if (dtype == DType::kF32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  auto* d = static_cast<uint16_t*>(dst);
  if (dtype == DType::kF16) {
    for (int64_t i = 0; i < n; ++i) d[i] = FloatToHalf(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = FloatToBFloat16(src[i]);
  }
}

float LoadFloat(const void* data, DType dtype, int64_t i) {
  if (dtype == DType::kF32) return static_cast<const float*>(data)[i];
  const uint16_t v = static_cast<const uint16_t*>(data)[i];
  return dtype == DType::kF16 ? HalfToFloat(v) : BFloat16ToFloat(v);
}

absl::Status CheckF32(const char* op, const char* arg, const TensorView& v, int rank) {
  return checks::CheckView(op, arg, v, rank, DeviceKind::kCpu, true);
}
absl::Status CheckFloat(const char* op, const char* arg, const TensorView& v,
                        int rank) {
  return checks::CheckView(op, arg, v, rank, DeviceKind::kCpu, false);
}

CpuBackend::CpuBackend(int num_threads, int logical_device)
    : runner_(num_threads), logical_device_(logical_device) {
  // One thread pool per process: ours (ParallelSgemmNT splits the GEMMs), with OpenBLAS
  // single-threaded inside it. Process-wide, and the same value from every backend.
  openblas_set_num_threads(1);
}

std::string CpuBackend::Describe() const {
  return absl::StrCat("cpu", logical_device_ == 0 ? "" : absl::StrCat(" logical device ", logical_device_),
                      " (", runner_.num_threads(), " threads, OpenBLAS ",
                      openblas_get_num_threads(), " threads)");
}

absl::StatusOr<DeviceBuffer> CpuBackend::Allocate(size_t bytes) {
  const size_t rounded = std::max<size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cpu: cannot allocate ", bytes, " bytes"));
  }
  return DeviceBuffer(p, bytes, device(), this);
}

void CpuBackend::Free(void* data, size_t /*bytes*/) { std::free(data); }

absl::Status CpuBackend::CopyFromHost(const void* src, TensorView dst) {
  if (auto s = checks::CheckHostCopy("CopyFromHost", "dst", dst, DeviceKind::kCpu); !s.ok()) return s;
  if (dst.bytes() > 0) std::memcpy(dst.data(), src, dst.bytes());
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyToHost(TensorView src, void* dst) {
  if (auto s = checks::CheckHostCopy("CopyToHost", "src", src, DeviceKind::kCpu); !s.ok()) return s;
  if (src.bytes() > 0) std::memcpy(dst, src.data(), src.bytes());
  return absl::OkStatus();
}

absl::Status CpuBackend::Convert(TensorView src, TensorView dst) {
  if (auto s = checks::CheckConvert(src, dst, DeviceKind::kCpu); !s.ok()) return s;
  if (src.dtype() == dst.dtype()) {
    if (src.bytes() > 0) std::memcpy(dst.data(), src.data(), src.bytes());
    return absl::OkStatus();
  }
  constexpr int64_t kChunk = 4096;
  runner_.For((src.numel() + kChunk - 1) / kChunk, 4, [&](int64_t b, int64_t e, int) {
    float tmp[kChunk];
    for (int64_t c = b; c < e; ++c) {
      const int64_t off = c * kChunk;
      const int64_t n = std::min(kChunk, src.numel() - off);
      ToFloat(static_cast<const char*>(src.data()) + off * DTypeSize(src.dtype()), src.dtype(), tmp, n);
      FromFloat(tmp, dst.dtype(), static_cast<char*>(dst.data()) + off * DTypeSize(dst.dtype()), n);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::Embedding(TensorView table, std::span<const int32_t> ids, TensorView out) {
  if (auto s = checks::CheckEmbedding(table, ids, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t dim = table.dim(1);
  const size_t row_bytes = static_cast<size_t>(dim) * DTypeSize(table.dtype());
  runner_.For(static_cast<int64_t>(ids.size()), kRowsPerChunk, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      ToFloat(static_cast<const char*>(table.data()) + static_cast<size_t>(ids[static_cast<size_t>(i)]) * row_bytes,
              table.dtype(), out.as<float>() + i * dim, dim);
    }
  });
  return absl::OkStatus();
}

namespace {

void RmsRow(const float* x, const TensorView& weight, float eps, float* out, int64_t d) {
  double sum = 0;
  for (int64_t j = 0; j < d; ++j) sum += static_cast<double>(x[j]) * x[j];
  const float var = static_cast<float>(sum / static_cast<double>(d));
  const float inv = 1.0f / std::sqrt(var + eps);
  for (int64_t j = 0; j < d; ++j) out[j] = LoadFloat(weight.data(), weight.dtype(), j) * (x[j] * inv);
}

}  // namespace

absl::Status CpuBackend::RmsNorm(TensorView x, TensorView weight, float eps, TensorView out) {
  if (auto s = checks::CheckNorm("RmsNorm", x, weight, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t d = x.dim(1);
  runner_.For(x.dim(0), kRowsPerChunk, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) RmsRow(x.as<float>() + i * d, weight, eps, out.as<float>() + i * d, d);
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::AddRmsNorm(TensorView residual, TensorView x, TensorView weight, float eps,
                                    TensorView out) {
  if (auto s = checks::CheckAddRmsNorm(residual, x, weight, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t d = x.dim(1);
  runner_.For(x.dim(0), kRowsPerChunk, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      float* r = residual.as<float>() + i * d;
      const float* xi = x.as<float>() + i * d;
      for (int64_t j = 0; j < d; ++j) r[j] += xi[j];
      RmsRow(r, weight, eps, out.as<float>() + i * d, d);
    }
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::LayerNorm(TensorView x, TensorView weight, TensorView bias, float eps,
                                   TensorView out) {
  if (auto s = checks::CheckLayerNorm(x, weight, bias, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t d = x.dim(1);
  runner_.For(x.dim(0), kRowsPerChunk, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const float* xi = x.as<float>() + i * d;
      double sum = 0;
      for (int64_t j = 0; j < d; ++j) sum += xi[j];
      const float mean = static_cast<float>(sum / static_cast<double>(d));
      double sq = 0;
      for (int64_t j = 0; j < d; ++j) sq += static_cast<double>(xi[j] - mean) * (xi[j] - mean);
      const float inv = 1.0f / std::sqrt(static_cast<float>(sq / static_cast<double>(d)) + eps);
      float* o = out.as<float>() + i * d;
      for (int64_t j = 0; j < d; ++j) {
        float v = (xi[j] - mean) * inv * LoadFloat(weight.data(), weight.dtype(), j);
        if (!bias.empty()) v += LoadFloat(bias.data(), bias.dtype(), j);
        o[j] = v;
      }
    }
  });
  return absl::OkStatus();
}

absl::Status CpuBackend::Rope(TensorView x, std::span<const int32_t> positions,
                              std::span<const float> inv_freq, float attention_scaling) {
  if (auto s = checks::CheckRope(x, positions, inv_freq, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t t = x.dim(0), heads = x.dim(1), hd = x.dim(2);
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  runner_.For(t, 4, [&](int64_t b, int64_t e, int) {
    std::vector<float> cs(static_cast<size_t>(2 * half));
    for (int64_t i = b; i < e; ++i) {
      const float pos = static_cast<float>(positions[static_cast<size_t>(i)]);
      for (int64_t j = 0; j < half; ++j) {
        const float f = pos * inv_freq[static_cast<size_t>(j)];
        cs[static_cast<size_t>(j)] = std::cos(f) * attention_scaling;
        cs[static_cast<size_t>(half + j)] = std::sin(f) * attention_scaling;
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x.as<float>() + (i * heads + h) * hd;
        for (int64_t j = 0; j < half; ++j) {
          const float a = v[j], c = v[j + half];
          const float cv = cs[static_cast<size_t>(j)], sv = cs[static_cast<size_t>(half + j)];
          v[j] = a * cv - c * sv;
          v[j + half] = c * cv + a * sv;
        }
      }
    }
  });
  return absl::OkStatus();
}

namespace {
template <typename Fn>
absl::Status Elementwise2(ParallelRunner& runner, const char* op, TensorView a, TensorView b,
                          TensorView out, Fn fn) {
  if (auto s = checks::CheckElementwise2(op, a, b, out, DeviceKind::kCpu); !s.ok()) return s;
  const float* pa = a.as<float>();
  const float* pb = b.as<float>();
  float* po = out.as<float>();
  runner.For(a.numel(), kElemsPerChunk, [&](int64_t s, int64_t e, int) {
    for (int64_t i = s; i < e; ++i) po[i] = fn(pa[i], pb[i]);
  });
  return absl::OkStatus();
}
}  // namespace

absl::Status CpuBackend::Add(TensorView a, TensorView b, TensorView out) {
  return Elementwise2(runner_, "Add", a, b, out, [](float x, float y) { return x + y; });
}

absl::Status CpuBackend::SiluMul(TensorView gate, TensorView up, TensorView out) {
  return Elementwise2(runner_, "SiluMul", gate, up, out,
                      [](float g, float u) { return g / (1.0f + std::exp(-g)) * u; });
}

absl::Status CpuBackend::Gelu(TensorView x, GeluKind kind, TensorView out) {
  switch (kind) {
    case GeluKind::kErf:
      return Elementwise2(runner_, "Gelu", x, x, out, [](float v, float) {
        return 0.5f * v * (1.0f + std::erf(v * static_cast<float>(M_SQRT1_2)));
      });
    case GeluKind::kTanh:
      return Elementwise2(runner_, "Gelu", x, x, out, [](float v, float) {
        const float k = static_cast<float>(std::sqrt(2.0 / M_PI));
        return 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * (v * v * v))));
      });
  }
  return absl::InvalidArgumentError("Gelu: unknown kind");
}

absl::Status CpuBackend::GatherRows(TensorView src, std::span<const int32_t> rows, TensorView out) {
  if (auto s = checks::CheckGatherRows(src, rows, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t d = src.dim(1);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(out.as<float>() + static_cast<int64_t>(i) * d, src.as<float>() + rows[i] * d,
                static_cast<size_t>(d) * 4);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options) {
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cpu backend: num_threads ", options.num_threads, " < 0"));
  }
  if (options.logical_device < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpu backend: logical_device ", options.logical_device, " < 0"));
  }
  int n = options.num_threads;
  if (n == 0) n = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  return std::unique_ptr<Backend>(new CpuBackend(n, options.logical_device));
}

}  // namespace kiln::kernels::cpu
