// CudaContext: what every CUDA op needs besides its tensors: the device, the stream all of the
// backend's work is ordered on, the metadata stager and the GEMM engine. Owned by CudaBackend
// (cuda_backend.h); the op functions in cuda_ops.h borrow it.
//
// Threading: a backend's ops are serialized by CudaBackend (one mutex), so a context is never
// used by two threads at once. Everything is enqueued on `stream`; ops do not synchronize
// except where they must read a device result on the host (none of the Backend ops do).
//
// Error handling (DESIGN.md §5): CudaCheck turns a cudaError_t into a Status. Sticky errors
// (the context is corrupt: illegal address, launch failure, ECC, ...) become DeviceLostError
// (kernels/backend.h), which the engine treats as fatal; the rest (out of memory, invalid
// value) are ordinary errors.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "kernels/tensor.h"

namespace kiln::kernels::cuda {

class GemmEngine;      // cuda_ops.h: cuBLASLt handle + plan cache (owned by CudaBackend)
class MetadataStager;  // below

struct CudaContext {
  int device_index = 0;
  Device device{DeviceKind::kCuda, 0};
  cudaStream_t stream = nullptr;
  MetadataStager* stager = nullptr;
  GemmEngine* gemm = nullptr;
};

// OK for cudaSuccess; DeviceLostError for sticky errors; INTERNAL (RESOURCE_EXHAUSTED for
// cudaErrorMemoryAllocation) otherwise. `what` names the call ("cudaMemcpyAsync(KvWrite)").
absl::Status CudaCheck(cudaError_t error, std::string_view what);
// True for the errors after which the CUDA context cannot be used again.
bool IsStickyCudaError(cudaError_t error);
// CudaCheck(cudaGetLastError()) after a kernel launch.
absl::Status CheckLaunch(std::string_view kernel);

// One host array for StageMetadata.
struct HostArray {
  const void* data = nullptr;
  size_t bytes = 0;
};

// Copies small host metadata (token ids, positions, slots, block tables, segment bounds...)
// to device memory on the context's stream, all arrays in one transfer through pinned memory.
// The device copies are 256-byte aligned and stay valid until the next Stage call on the same
// stager (stream order makes that safe for kernels enqueued in between). Grows (allocates)
// only when a call needs more room than any before, so a warmed-up step loop never allocates.
class MetadataStager {
 public:
  virtual ~MetadataStager() = default;
  // device_ptrs[i] receives the device address of arrays[i] (nullptr for an empty array).
  virtual absl::Status Stage(std::span<const HostArray> arrays,
                             std::span<const void*> device_ptrs) = 0;
};

}  // namespace kiln::kernels::cuda
