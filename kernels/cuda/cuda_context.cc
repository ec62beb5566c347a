#include "kernels/cuda/cuda_context.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/backend.h"

namespace kiln::kernels::cuda {

bool IsStickyCudaError(cudaError_t error) {
  switch (error) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorECCUncorrectable:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorContextIsDestroyed:
      return true;
    default:
      return false;
  }
}

absl::Status CudaCheck(cudaError_t error, std::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat(std::string(what), ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  if (IsStickyCudaError(error)) return DeviceLostError(message);
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

absl::Status CheckLaunch(std::string_view kernel) {
  return CudaCheck(cudaGetLastError(), absl::StrCat("launch ", std::string(kernel)));
}

}  // namespace kiln::kernels::cuda
