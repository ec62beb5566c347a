// Placeholder until the gemm group lands: every op answers UNIMPLEMENTED.
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {

class GemmEngine {};
void GemmEngineDeleter::operator()(GemmEngine* engine) const { delete engine; }
absl::StatusOr<GemmEnginePtr> CreateGemmEngine(int) { return GemmEnginePtr(new GemmEngine); }

absl::Status Matmul(CudaContext&, TensorView, TensorView, TensorView, TensorView, TensorView) {
  return absl::UnimplementedError("cuda Matmul");
}
size_t MatmulWorkspaceBytes(int64_t, int64_t, int64_t, DType) { return 0; }
absl::Status QuantMatmul(CudaContext&, TensorView, const QuantizedMatrix&, TensorView, TensorView,
                         TensorView) {
  return absl::UnimplementedError("cuda QuantMatmul");
}
size_t QuantMatmulWorkspaceBytes(int64_t, const QuantizedMatrix&) { return 0; }
absl::Status LoraApply(CudaContext&, TensorView, std::span<const LoraPair>, const LoraSegments&,
                       TensorView, TensorView) {
  return absl::UnimplementedError("cuda LoraApply");
}
size_t LoraWorkspaceBytes(int64_t, int64_t) { return 0; }

}  // namespace kiln::kernels::cuda
