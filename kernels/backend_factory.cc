#include "kernels/backend_factory.h"

#include <string>

#include "kernels/cpu/cpu_backend.h"

#ifdef KILN_WITH_CUDA
#include "kernels/cuda/cuda_backend.h"
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

std::vector<AcceleratorInfo> ListCudaDevices(std::string* note) {
  std::vector<AcceleratorInfo> out;
  std::string why;
#ifdef KILN_WITH_CUDA
  const int count = cuda::DeviceCount(&why);
  for (int i = 0; i < count; ++i) {
    cuda::DeviceInfo info;
    std::string error;
    if (!cuda::QueryDevice(i, &info, &error)) {
      why += (why.empty() ? "" : "; ") + ("cuda:" + std::to_string(i) + " skipped: " + error);
      continue;
    }
    out.push_back(AcceleratorInfo{.index = i,
                                  .name = info.name,
                                  .compute_major = info.compute_major,
                                  .compute_minor = info.compute_minor,
                                  .free_bytes = static_cast<int64_t>(info.free_bytes),
                                  .total_bytes = static_cast<int64_t>(info.total_bytes)});
  }
  if (count == 0 && why.empty()) why = "no CUDA device visible";
#else
  why = "kiln was built without CUDA";
#endif
  if (note != nullptr) *note = why;
  return out;
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
