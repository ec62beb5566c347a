// Needs a GPU: skipped (and never counted as evidence) when none is visible.
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_blas.h"
#include "kernels/cuda/cuda_device.h"

namespace kiln::kernels::cuda {
namespace {

int VisibleDevices() {
  std::string error;
  return DeviceCount(&error);
}

TEST(CudaDeviceTest, QueryReportsNameAndMemory) {
  if (VisibleDevices() == 0) GTEST_SKIP() << "no CUDA device";
  DeviceInfo info;
  std::string error;
  ASSERT_TRUE(QueryDevice(0, &info, &error)) << error;
  EXPECT_FALSE(info.name.empty());
  EXPECT_GE(info.compute_major, 8);
  EXPECT_GT(info.total_bytes, 0u);
  EXPECT_LE(info.free_bytes, info.total_bytes);
}

TEST(CudaDeviceTest, CublasLtGemmMatchesHostLoop) {
  if (VisibleDevices() == 0) GTEST_SKIP() << "no CUDA device";
  std::string error;
  for (int m : {1, 7, 64}) {
    EXPECT_TRUE(GemmSelfTest(0, m, 33, 127, &error)) << error;
  }
}

TEST(CudaDeviceTest, BadDeviceIndexIsAnError) {
  DeviceInfo info;
  std::string error;
  EXPECT_FALSE(QueryDevice(1 << 20, &info, &error));
  EXPECT_FALSE(error.empty());
}

}  // namespace
}  // namespace kiln::kernels::cuda
