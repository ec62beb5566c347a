#include "kernels/backend_factory.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"

#ifdef KILN_WITH_CUDA
#include "kernels/cuda/cuda_device.h"
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
      std::string error;
      const int count = cuda::DeviceCount(&error);
      if (options.device_index < 0 || options.device_index >= count) {
        return absl::NotFoundError(absl::StrCat("cuda device ", options.device_index, " not found (",
                                                count, " visible", error.empty() ? "" : ": ", error, ")"));
      }
      return absl::UnimplementedError("the CUDA backend's ops are not implemented yet");
#else
      return absl::UnimplementedError("kiln was built without CUDA (no nvcc at configure time)");
#endif
    }
  }
  return absl::InvalidArgumentError("unknown backend kind");
}

}  // namespace kiln::kernels
