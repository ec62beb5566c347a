#include "kernels/cuda/cuda_backend.h"

#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/checks/elementwise_checks.h"
#include "kernels/cuda/cuda_stager.h"

namespace kiln::kernels::cuda {
namespace {

// INVALID_ARGUMENT unless `data` is device memory of `device_index` (a host pointer wrapped in a
// cuda view would otherwise reach cudaMemcpy as a device address).
absl::Status CheckDevicePointer(const char* op, const char* arg, const void* data,
                                int device_index) {
  cudaPointerAttributes attributes{};
  const cudaError_t error = cudaPointerGetAttributes(&attributes, data);
  if (error != cudaSuccess) {
    cudaGetLastError();  // a bad pointer is our caller's error, not the next launch's
    if (IsStickyCudaError(error)) return CudaCheck(error, op);
  }
  if (error != cudaSuccess || attributes.type != cudaMemoryTypeDevice ||
      attributes.device != device_index) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", arg, " is not device memory of cuda:", device_index));
  }
  return absl::OkStatus();
}

}  // namespace

CudaBackend::CudaBackend(int device_index) {
  ctx_.device_index = device_index;
  ctx_.device = Device{DeviceKind::kCuda, device_index};
}

CudaBackend::~CudaBackend() {
  std::lock_guard<std::mutex> lock(mu_);
  cudaSetDevice(ctx_.device_index);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  gemm_.reset();
  stager_.reset();  // synchronizes and frees its pinned buffers and arena
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

template <typename Fn>
absl::Status CudaBackend::Locked(Fn&& fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto s = CudaCheck(cudaSetDevice(ctx_.device_index), "cudaSetDevice"); !s.ok()) return s;
  // Launch checks read cudaGetLastError, so an error left by an earlier call (already reported,
  // or ignored as in Free) must not be blamed on this op. A sticky one means the device is gone.
  if (const cudaError_t stale = cudaGetLastError(); IsStickyCudaError(stale)) {
    return CudaCheck(stale, "earlier work on this device");
  }
  return fn();
}

absl::StatusOr<DeviceBuffer> CudaBackend::Allocate(size_t bytes) {
  if (bytes == 0) return DeviceBuffer(nullptr, 0, ctx_.device, this);
  void* data = nullptr;
  const absl::Status status = Locked([&] {
    const cudaError_t error = cudaMalloc(&data, bytes);
    if (error == cudaErrorMemoryAllocation) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cuda: cannot allocate ", bytes, " bytes on ", DeviceName(ctx_.device)));
    }
    return CudaCheck(error, absl::StrCat("cudaMalloc(", bytes, " bytes)"));
  });
  if (!status.ok()) return status;
  return DeviceBuffer(data, bytes, ctx_.device, this);
}

void CudaBackend::Free(void* data, size_t /*bytes*/) {
  if (data == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  cudaSetDevice(ctx_.device_index);
  // cudaFree waits for the device, so no enqueued op still uses the memory. Its error (only
  // possible once the device is lost) has nowhere to go; the next op reports it.
  cudaFree(data);
}

absl::Status CudaBackend::CopyFromHost(const void* src, TensorView dst) {
  if (auto s = checks::CheckHostCopy("CopyFromHost", "dst", dst, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = checks::CheckOnDevice("CopyFromHost", "dst", dst, ctx_.device); !s.ok()) return s;
  if (dst.bytes() == 0) return absl::OkStatus();
  if (src == nullptr) return absl::InvalidArgumentError("CopyFromHost: src has no data");
  return Locked([&]() -> absl::Status {
    if (auto s = CheckDevicePointer("CopyFromHost", "dst", dst.data(), ctx_.device_index); !s.ok()) {
      return s;
    }
    if (auto s = CudaCheck(cudaMemcpyAsync(dst.data(), src, dst.bytes(), cudaMemcpyHostToDevice,
                                           ctx_.stream),
                           "cudaMemcpyAsync(CopyFromHost)");
        !s.ok()) {
      return s;
    }
    // `src` may be pageable and freed as soon as we return.
    return CudaCheck(cudaStreamSynchronize(ctx_.stream), "cudaStreamSynchronize(CopyFromHost)");
  });
}

absl::Status CudaBackend::CopyToHost(TensorView src, void* dst) {
  if (auto s = checks::CheckHostCopy("CopyToHost", "src", src, DeviceKind::kCuda); !s.ok()) return s;
  if (auto s = checks::CheckOnDevice("CopyToHost", "src", src, ctx_.device); !s.ok()) return s;
  if (src.bytes() == 0) return absl::OkStatus();
  if (dst == nullptr) return absl::InvalidArgumentError("CopyToHost: dst has no data");
  return Locked([&]() -> absl::Status {
    if (auto s = CheckDevicePointer("CopyToHost", "src", src.data(), ctx_.device_index); !s.ok()) {
      return s;
    }
    if (auto s = CudaCheck(cudaMemcpyAsync(dst, src.data(), src.bytes(), cudaMemcpyDeviceToHost,
                                           ctx_.stream),
                           "cudaMemcpyAsync(CopyToHost)");
        !s.ok()) {
      return s;
    }
    return CudaCheck(cudaStreamSynchronize(ctx_.stream), "cudaStreamSynchronize(CopyToHost)");
  });
}

absl::Status CudaBackend::Convert(TensorView src, TensorView dst) {
  return Locked([&] { return cuda::Convert(ctx_, src, dst); });
}

absl::Status CudaBackend::Embedding(TensorView table, std::span<const int32_t> ids,
                                    TensorView out) {
  return Locked([&] { return cuda::Embedding(ctx_, table, ids, out); });
}

absl::Status CudaBackend::Matmul(TensorView x, TensorView w, TensorView bias, TensorView out,
                                 TensorView workspace) {
  return Locked([&] { return cuda::Matmul(ctx_, x, w, bias, out, workspace); });
}

size_t CudaBackend::MatmulWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType w) const {
  return cuda::MatmulWorkspaceBytes(m, n, k, w);
}

absl::Status CudaBackend::QuantMatmul(TensorView x, const QuantizedMatrix& w, TensorView bias,
                                      TensorView out, TensorView workspace) {
  return Locked([&] { return cuda::QuantMatmul(ctx_, x, w, bias, out, workspace); });
}

size_t CudaBackend::QuantMatmulWorkspaceBytes(int64_t m, const QuantizedMatrix& w) const {
  return cuda::QuantMatmulWorkspaceBytes(m, w);
}

absl::Status CudaBackend::LoraApply(TensorView x, std::span<const LoraPair> pairs,
                                    const LoraSegments& segments, TensorView out,
                                    TensorView workspace) {
  return Locked([&] { return cuda::LoraApply(ctx_, x, pairs, segments, out, workspace); });
}

size_t CudaBackend::LoraWorkspaceBytes(int64_t m, int64_t max_rank) const {
  return cuda::LoraWorkspaceBytes(m, max_rank);
}

absl::Status CudaBackend::RmsNorm(TensorView x, TensorView weight, float eps, TensorView out) {
  return Locked([&] { return cuda::RmsNorm(ctx_, x, weight, eps, out); });
}

absl::Status CudaBackend::AddRmsNorm(TensorView residual, TensorView x, TensorView weight,
                                     float eps, TensorView out) {
  return Locked([&] { return cuda::AddRmsNorm(ctx_, residual, x, weight, eps, out); });
}

absl::Status CudaBackend::LayerNorm(TensorView x, TensorView weight, TensorView bias, float eps,
                                    TensorView out) {
  return Locked([&] { return cuda::LayerNorm(ctx_, x, weight, bias, eps, out); });
}

absl::Status CudaBackend::Rope(TensorView x, std::span<const int32_t> positions,
                               std::span<const float> inv_freq, float attention_scaling) {
  return Locked([&] { return cuda::Rope(ctx_, x, positions, inv_freq, attention_scaling); });
}

absl::Status CudaBackend::Add(TensorView a, TensorView b, TensorView out) {
  return Locked([&] { return cuda::Add(ctx_, a, b, out); });
}

absl::Status CudaBackend::SiluMul(TensorView gate, TensorView up, TensorView out) {
  return Locked([&] { return cuda::SiluMul(ctx_, gate, up, out); });
}

absl::Status CudaBackend::Gelu(TensorView x, GeluKind kind, TensorView out) {
  return Locked([&] { return cuda::Gelu(ctx_, x, kind, out); });
}

absl::Status CudaBackend::GatherRows(TensorView src, std::span<const int32_t> rows,
                                     TensorView out) {
  return Locked([&] { return cuda::GatherRows(ctx_, src, rows, out); });
}

absl::Status CudaBackend::KvWrite(TensorView k, TensorView v, std::span<const int32_t> slots,
                                  const PagedKvLayer& cache) {
  return Locked([&] { return cuda::KvWrite(ctx_, k, v, slots, cache); });
}

absl::Status CudaBackend::PagedAttention(TensorView q, const PagedKvLayer& cache,
                                         const AttentionParams& params, TensorView out,
                                         TensorView workspace) {
  return Locked([&] { return cuda::PagedAttention(ctx_, q, cache, params, out, workspace); });
}

size_t CudaBackend::AttentionWorkspaceBytes(int64_t max_kv_len) const {
  return cuda::AttentionWorkspaceBytes(max_kv_len);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device_index) {
  int count = 0;
  const cudaError_t count_error = cudaGetDeviceCount(&count);
  if (count_error != cudaSuccess) {
    cudaGetLastError();  // "no driver" and friends are not sticky; leave no error behind
    count = 0;
  }
  if (device_index < 0 || device_index >= count) {
    return absl::NotFoundError(absl::StrCat(
        "cuda device ", device_index, " not found (", count, " visible",
        count_error == cudaSuccess ? "" : absl::StrCat(": ", cudaGetErrorString(count_error)), ")"));
  }
  if (auto s = CudaCheck(cudaSetDevice(device_index), "cudaSetDevice"); !s.ok()) return s;
  cudaDeviceProp prop{};
  if (auto s = CudaCheck(cudaGetDeviceProperties(&prop, device_index), "cudaGetDeviceProperties");
      !s.ok()) {
    return s;
  }
  std::unique_ptr<CudaBackend> backend(new CudaBackend(device_index));
  char gib[32];
  std::snprintf(gib, sizeof(gib), "%.1f",
                static_cast<double>(prop.totalGlobalMem) / static_cast<double>(size_t{1} << 30));
  backend->description_ = absl::StrCat("cuda:", device_index, " (", prop.name, ", sm_", prop.major,
                                       prop.minor, ", ", gib, " GiB)");
  if (auto s = CudaCheck(cudaStreamCreateWithFlags(&backend->stream_, cudaStreamNonBlocking),
                         "cudaStreamCreateWithFlags");
      !s.ok()) {
    return s;
  }
  auto stager = CreateMetadataStager(device_index, backend->stream_);
  if (!stager.ok()) return stager.status();
  backend->stager_ = std::move(*stager);
  auto gemm = CreateGemmEngine(device_index);
  if (!gemm.ok()) return gemm.status();
  backend->gemm_ = std::move(*gemm);
  backend->ctx_.stream = backend->stream_;
  backend->ctx_.stager = backend->stager_.get();
  backend->ctx_.gemm = backend->gemm_.get();
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace kiln::kernels::cuda
