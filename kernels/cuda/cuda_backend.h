// CudaBackend: the Backend (kernels/backend.h) for one CUDA device. It owns the device's work
// stream (cudaStreamNonBlocking), the MetadataStager (cuda_stager.h), the GemmEngine (cuBLASLt,
// cuda_ops.h) and the CudaContext that lends them to the op functions of cuda_ops.h, to which
// every op forwards; validation lives there (kernels/checks, shared with the CPU reference).
//
// Usage (engine code goes through kernels/backend_factory.h instead):
//   KILN_ASSIGN_OR_RETURN(std::unique_ptr<Backend> gpu, cuda::CreateCudaBackend(0));
//
// Ordering: every op and copy is enqueued on the one stream. Ops return once enqueued (their
// launch errors come back at once; a fault inside a kernel surfaces on a later call as a
// DeviceLostError). CopyFromHost/CopyToHost synchronize the stream before returning, so the
// host pointer may be pageable and reused right after, and a CopyToHost sees every earlier op.
//
// Views: the elementwise ops check that every view is labelled with this device (else
// INVALID_ARGUMENT) and trust the label; only the copies also ask the driver that the pointer is
// this device's memory (too slow per op), so never label host memory as a cuda view.
//
// Memory: Allocate is cudaMalloc (256-byte aligned; size 0 gives an empty buffer) and
// RESOURCE_EXHAUSTED naming the bytes and the device when the device is out of memory; Free is
// cudaFree (which waits for the device). Buffers must be freed before the backend is destroyed.
//
// Thread-safety: one std::mutex serializes every method that touches the device (ops, copies,
// Allocate, Free), and each sets the calling thread's current device first, so several threads
// (and several backends on different devices) may share a process.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {

class CudaBackend final : public Backend {
 public:
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  BackendKind kind() const override { return BackendKind::kCuda; }
  Device device() const override { return ctx_.device; }
  std::string Describe() const override { return description_; }  // "cuda:0 (NVIDIA H200, sm_90, 139.8 GiB)"

  void Free(void* data, size_t bytes) override;
  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) override;
  absl::Status CopyFromHost(const void* src, TensorView dst) override;
  absl::Status CopyToHost(TensorView src, void* dst) override;
  absl::Status Convert(TensorView src, TensorView dst) override;

  absl::Status Embedding(TensorView table, std::span<const int32_t> ids, TensorView out) override;
  absl::Status Matmul(TensorView x, TensorView w, TensorView bias, TensorView out,
                      TensorView workspace) override;
  size_t MatmulWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType w) const override;
  absl::Status QuantMatmul(TensorView x, const QuantizedMatrix& w, TensorView bias, TensorView out,
                           TensorView workspace) override;
  size_t QuantMatmulWorkspaceBytes(int64_t m, const QuantizedMatrix& w) const override;
  absl::Status LoraApply(TensorView x, std::span<const LoraPair> pairs,
                         const LoraSegments& segments, TensorView out,
                         TensorView workspace) override;
  size_t LoraWorkspaceBytes(int64_t m, int64_t max_rank) const override;
  absl::Status RmsNorm(TensorView x, TensorView weight, float eps, TensorView out) override;
  absl::Status AddRmsNorm(TensorView residual, TensorView x, TensorView weight, float eps,
                          TensorView out) override;
  absl::Status LayerNorm(TensorView x, TensorView weight, TensorView bias, float eps,
                         TensorView out) override;
  absl::Status Rope(TensorView x, std::span<const int32_t> positions,
                    std::span<const float> inv_freq, float attention_scaling) override;
  absl::Status Add(TensorView a, TensorView b, TensorView out) override;
  absl::Status SiluMul(TensorView gate, TensorView up, TensorView out) override;
  absl::Status Gelu(TensorView x, GeluKind kind, TensorView out) override;
  absl::Status GatherRows(TensorView src, std::span<const int32_t> rows, TensorView out) override;
  absl::Status KvWrite(TensorView k, TensorView v, std::span<const int32_t> slots,
                       const PagedKvLayer& cache) override;
  absl::Status PagedAttention(TensorView q, const PagedKvLayer& cache,
                              const AttentionParams& params, TensorView out,
                              TensorView workspace) override;
  size_t AttentionWorkspaceBytes(int64_t max_kv_len) const override;

 private:
  friend absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device_index);
  explicit CudaBackend(int device_index);
  // Locks mu_ and makes this backend's device current; the op runs while the lock is held.
  template <typename Fn>
  absl::Status Locked(Fn&& fn);

  std::mutex mu_;
  CudaContext ctx_;  // stream, stager and gemm point at the members below
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<MetadataStager> stager_;
  GemmEnginePtr gemm_;
  std::string description_;
};

// NOT_FOUND naming the index and the visible device count when device_index is not a visible
// device (always, on a machine without a usable driver); otherwise CudaCheck statuses from
// creating the stream, stager or GEMM engine.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device_index);

}  // namespace kiln::kernels::cuda
