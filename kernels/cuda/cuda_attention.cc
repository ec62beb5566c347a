// Placeholder until the attention group lands: PagedAttention answers UNIMPLEMENTED.
#include <span>

#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {

absl::Status PagedAttention(CudaContext&, TensorView, const PagedKvLayer&, const AttentionParams&,
                            TensorView, TensorView) {
  return absl::UnimplementedError("cuda PagedAttention");
}
size_t AttentionWorkspaceBytes(int64_t) { return 0; }
absl::Status KvWrite(CudaContext&, TensorView, TensorView, std::span<const int32_t>,
                     const PagedKvLayer&) {
  return absl::UnimplementedError("cuda KvWrite");
}

}  // namespace kiln::kernels::cuda
