#include "kernels/backend_factory.h"

#include "kernels/cpu/cpu_backend.h"

#ifdef KILN_WITH_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace kiln::kernels {

bool CudaBuilt() {
#ifdef KILN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const BackendOptions& options) {
  switch (options.kind) {
    case BackendKind::kCpu:
      return cpu::CreateCpuBackend(
          {.num_threads = options.num_threads, .logical_device = options.logical_device});
    case BackendKind::kCuda: {
#ifdef KILN_WITH_CUDA
      return cuda::CreateCudaBackend(options.device_index);
#else
      return absl::UnimplementedError("kiln was built without CUDA (no nvcc at configure time)");
#endif
    }
  }
  return absl::InvalidArgumentError("unknown backend kind");
}

}  // namespace kiln::kernels
