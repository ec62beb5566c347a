// CpuBackend::QuantMatmul. Placeholder until the quantized forward lands.
#include "kernels/cpu/cpu_internal.h"

namespace kiln::kernels::cpu {

size_t CpuBackend::QuantMatmulWorkspaceBytes(int64_t, const QuantizedMatrix&) const { return 0; }

absl::Status CpuBackend::QuantMatmul(TensorView, const QuantizedMatrix& w, TensorView, TensorView, TensorView) {
  return absl::UnimplementedError(
      absl::StrCat("QuantMatmul: ", QuantFormatName(w.format), " weights are not supported by the CPU backend yet"));
}

}  // namespace kiln::kernels::cpu
