// CpuBackend::LoraApply. Placeholder until the LoRA forward lands.
#include "kernels/cpu/cpu_internal.h"

namespace kiln::kernels::cpu {

size_t CpuBackend::LoraWorkspaceBytes(int64_t, int64_t) const { return 0; }

absl::Status CpuBackend::LoraApply(TensorView, std::span<const LoraPair>, const LoraSegments&, TensorView,
                                   TensorView) {
  return absl::UnimplementedError("LoraApply: not supported by the CPU backend yet");
}

}  // namespace kiln::kernels::cpu
