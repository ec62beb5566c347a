// Internal to kernels/cpu: the CpuBackend class, split over cpu_backend.cc (memory, norms,
// elementwise), cpu_gemm.cc (Matmul) and cpu_attention.cc (KvWrite, PagedAttention).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/checks/check_util.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace kiln::kernels::cpu {

// Matmuls with at most this many rows of x use SmallMMatmul (W read once), any weight dtype.
inline constexpr int64_t kSmallM = 4;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int num_threads, int logical_device = 0);

  BackendKind kind() const override { return BackendKind::kCpu; }
  Device device() const override { return Device{DeviceKind::kCpu, logical_device_}; }
  std::string Describe() const override;

  void Free(void* data, size_t bytes) override;
  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) override;
  absl::Status CopyFromHost(const void* src, TensorView dst) override;
  absl::Status CopyToHost(TensorView src, void* dst) override;
  absl::Status Convert(TensorView src, TensorView dst) override;

  absl::Status Embedding(TensorView table, std::span<const int32_t> ids,
                         TensorView out) override;
  absl::Status Matmul(TensorView x, TensorView w, TensorView bias, TensorView out,
                      TensorView workspace) override;
  size_t MatmulWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType w) const override;
  absl::Status QuantMatmul(TensorView x, const QuantizedMatrix& w, TensorView bias, TensorView out,
                           TensorView workspace) override;  // cpu_quant.cc
  size_t QuantMatmulWorkspaceBytes(int64_t m, const QuantizedMatrix& w) const override;
  absl::Status LoraApply(TensorView x, std::span<const LoraPair> pairs, const LoraSegments& segments,
                         TensorView out, TensorView workspace) override;  // cpu_lora.cc
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
  absl::Status GatherRows(TensorView src, std::span<const int32_t> rows,
                          TensorView out) override;
  absl::Status KvWrite(TensorView k, TensorView v, std::span<const int32_t> slots,
                       const PagedKvLayer& cache) override;
  absl::Status PagedAttention(TensorView q, const PagedKvLayer& cache,
                              const AttentionParams& params, TensorView out,
                              TensorView workspace) override;
  size_t AttentionWorkspaceBytes(int64_t max_kv_len) const override;

  ParallelRunner& runner() { return runner_; }

 private:
  ParallelRunner runner_;
  int logical_device_ = 0;  // CpuBackendOptions::logical_device
};

// ---- helpers shared by the .cc files ----------------------------------------------------
using checks::IsFloat3;
using checks::ShapeError;

// Converts n elements of src (F32/F16/BF16) to fp32.
void ToFloat(const void* src, DType dtype, float* dst, int64_t n);
// Converts n fp32 values to dst's dtype (F32/F16/BF16; round-to-nearest-even).
void FromFloat(const float* src, DType dtype, void* dst, int64_t n);
// Element i of a F32/F16/BF16 array as float.
float LoadFloat(const void* data, DType dtype, int64_t i);

// Whether this CPU runs the AVX2 + FMA + F16C kernels (every x86-64-v3 CPU); false off x86.
// The vector kernels of gemm, attention, softmax and conversions dispatch on it at run time.
bool CpuHasAvx2FmaF16c();

// out[m, n] (row stride ldo) = alpha · x[m, k] · w[n, k]^T + beta · out, split over the
// runner's threads by contiguous slices of W's rows, each a single-threaded OpenBLAS call.
// The process keeps one pool: OpenBLAS runs with one thread (see the CpuBackend constructor),
// because its own workers spin in sched_yield between calls and, beside ours on the same
// cores, took a quarter of the CPU time of a batch-32 decode step.
void ParallelSgemmNT(ParallelRunner& runner, int64_t m, int64_t n, int64_t k, float alpha,
                     const float* x, int64_t ldx, const float* w, int64_t ldw, float beta,
                     float* out, int64_t ldo);

// out[m, n] = x[m, k] · w[n, k]^T for m <= kSmallM (decode), w F32/F16/BF16 in row-major
// [n, k]: each W row is streamed once for all m rows of x, split over the runner's threads
// by contiguous slices of W's rows. A row of out is bitwise the same for any m <= kSmallM
// and any thread count.
void SmallMMatmul(ParallelRunner& runner, const float* x, int64_t m, int64_t k, const void* w,
                  DType wt, int64_t n, float* out);

// INVALID_ARGUMENT unless v is rank `rank`, on the CPU, non-null (when numel > 0) and F32.
absl::Status CheckF32(const char* op, const char* arg, const TensorView& v, int rank);
// Same for a F32/F16/BF16 tensor.
absl::Status CheckFloat(const char* op, const char* arg, const TensorView& v, int rank);

}  // namespace kiln::kernels::cpu
