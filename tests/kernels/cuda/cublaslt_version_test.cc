// Proves libcublasLt loads and answers without a GPU (toolchain.md §7).
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_blas.h"
#include "kernels/cuda/cuda_device.h"

namespace kiln::kernels::cuda {
namespace {

TEST(CublasLtTest, VersionLoadsWithoutADevice) {
  // CUDA 13's cuBLASLt reports 130000 + minor * 100 + patch.
  EXPECT_GE(CublasLtVersion(), 120000u);
}

}  // namespace
}  // namespace kiln::kernels::cuda
