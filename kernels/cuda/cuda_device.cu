// Device query (CUDA runtime only). The cuBLASLt self-test lives in cuda_blas.cu so that a
// process that only queries devices does not load the 700 MB libcublasLt.
// History: with civetweb (prometheus-cpp's exposer) in the daemon, any CUDA runtime in the
// process crashed /metrics scrapes and libcublasLt stopped civetweb from starting; kilnd now
// serves /metrics itself (server/metrics_http.h).
#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda/cuda_device.h"

namespace kiln::kernels::cuda {
namespace {

bool Ok(cudaError_t e, const char* what, std::string* error) {
  if (e == cudaSuccess) return true;
  *error = std::string(what) + ": " + cudaGetErrorString(e);
  return false;
}

}  // namespace

int DeviceCount(std::string* error) {
  int n = 0;
  if (!Ok(cudaGetDeviceCount(&n), "cudaGetDeviceCount", error)) return 0;
  return n;
}

bool QueryDevice(int index, DeviceInfo* info, std::string* error) {
  cudaDeviceProp prop{};
  if (!Ok(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties", error)) return false;
  if (!Ok(cudaSetDevice(index), "cudaSetDevice", error)) return false;
  size_t free_bytes = 0, total_bytes = 0;
  if (!Ok(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo", error)) return false;
  info->index = index;
  info->name = prop.name;
  info->compute_major = prop.major;
  info->compute_minor = prop.minor;
  info->free_bytes = free_bytes;
  info->total_bytes = total_bytes;
  return true;
}

}  // namespace kiln::kernels::cuda
