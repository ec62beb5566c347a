#include "kernels/backend_factory.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"

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
      return cpu::CreateCpuBackend({.num_threads = options.num_threads});
    case BackendKind::kCuda: {
#ifdef KILN_WITH_CUDA
      // The CUDA module (kernels/cuda) is deliberately not linked into the engine yet: any
      // CUDA runtime in the daemon's process makes civetweb, the HTTP server under
      // prometheus-cpp's /metrics exposer, crash on a scrape (libcublasLt even stops it from
      // starting). The CUDA backend must land together with a /metrics server that does not
      // use civetweb; until then the daemon answers honestly.
      return absl::UnimplementedError(
          "the CUDA backend's ops are not implemented yet (kernels/cuda builds, the engine "
          "serves on cpu)");
#else
      return absl::UnimplementedError("kiln was built without CUDA (no nvcc at configure time)");
#endif
    }
  }
  return absl::InvalidArgumentError("unknown backend kind");
}

}  // namespace kiln::kernels
