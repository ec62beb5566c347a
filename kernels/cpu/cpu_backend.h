// CpuBackend: the numeric reference implementation of kernels::Backend.
//
// Choices (documented because the CUDA backend will differ):
//  - Activations, KV cache and accumulation are fp32.
//  - GEMM: F32 weights go straight to OpenBLAS cblas_sgemm (sgemv for one row). F16/BF16
//    weights stay in their dtype in memory (half the bytes of an fp32 copy, and decode is
//    memory-bound); for up to kSmallM rows a fused convert-and-dot kernel reads them directly,
//    and for more rows tiles of W are converted to fp32 into the caller's workspace and fed to
//    sgemm, so no fp32 copy of a weight ever exists outside the workspace.
//  - Threads: every op, GEMMs included, runs on the backend's ParallelRunner of num_threads;
//    a GEMM is split by slices of W's rows into single-threaded OpenBLAS calls (OpenBLAS's
//    own pool stays at one thread: its workers spin in sched_yield and fought ours for the
//    cores; and its thread count is process-global, which logical devices cannot share).
//    Work splitting never changes the arithmetic of an element, so outputs do not depend on
//    num_threads or on which other sequences share the batch (the matmul kernel choice depends
//    on the row count, which moves results by float rounding only).
#pragma once

#include <memory>

#include "kernels/backend.h"

namespace kiln::kernels::cpu {

struct CpuBackendOptions {
  int num_threads = 0;  // 0: std::thread::hardware_concurrency()
  // Which logical CPU device this backend is: device() reports {kCpu, logical_device} and
  // every buffer it allocates carries that device. 0 (the default) is the host CPU as it has
  // always been. Distinct indices let one process hold several CPU backends that the engine
  // treats as separate devices (multi-device placement tested without GPUs, issue #7); the
  // memory is host memory all the same.
  int logical_device = 0;
};

// Never fails for valid options; INVALID_ARGUMENT for num_threads < 0 or logical_device < 0.
absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options);

}  // namespace kiln::kernels::cpu
