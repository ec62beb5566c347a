// CreateBackend: the one place that knows which backends were compiled in. Engine code asks
// for a BackendKind and never tests KILN_WITH_CUDA itself.
//
//   KILN_ASSIGN_OR_RETURN(std::unique_ptr<kernels::Backend> backend,
//                         kernels::CreateBackend({.kind = kernels::BackendKind::kCpu}));
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace kiln::kernels {

struct BackendOptions {
  BackendKind kind = BackendKind::kCpu;
  int num_threads = 0;   // CPU: worker and OpenBLAS threads; 0 = all cores
  int device_index = 0;  // CUDA: which device
  // CPU: which logical CPU device (kernels/cpu/cpu_backend.h CpuBackendOptions): backends with
  // different indices report different device() values, so the engine places models across
  // them as across GPUs. 0 = the host CPU (the default, unchanged behaviour).
  int logical_device = 0;
};

// True when this binary was built with the CUDA backend (nvcc found at configure time).
bool CudaBuilt();

// A visible accelerator, as the device inventory (engine/runtime/placement_glue.h) needs it.
struct AcceleratorInfo {
  int index = 0;            // the CUDA device index (BackendOptions::device_index)
  std::string name;         // "NVIDIA H200"
  int compute_major = 0;
  int compute_minor = 0;
  int64_t free_bytes = 0;   // cudaMemGetInfo at the time of the call
  int64_t total_bytes = 0;
};

// The CUDA devices this process can use, in index order. Empty when kiln was built without
// CUDA or when the driver/runtime is unusable (no libcuda, no device); *note (if given) then
// says why, for the startup log. A device whose query fails is skipped and named in *note.
std::vector<AcceleratorInfo> ListCudaDevices(std::string* note = nullptr);

// CPU: always available. CUDA (kernels/cuda/cuda_backend.h): UNIMPLEMENTED when kiln was built
// without CUDA; NOT_FOUND (naming the index and the visible count) when device_index does not
// name a visible device, which is every index on a machine without a usable driver; otherwise
// the CUDA backend, whose ops not yet written on the GPU (some of the gemm and attention groups
// while they land) answer UNIMPLEMENTED per call.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options);

}  // namespace kiln::kernels
