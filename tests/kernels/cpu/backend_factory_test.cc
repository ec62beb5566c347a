#include "kernels/backend_factory.h"

#include "gtest/gtest.h"

namespace kiln::kernels {
namespace {

TEST(BackendFactoryTest, CpuAlwaysAvailable) {
  auto b = CreateBackend({.kind = BackendKind::kCpu, .num_threads = 2});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->kind(), BackendKind::kCpu);
  EXPECT_NE((*b)->Describe().find("2 threads"), std::string::npos) << (*b)->Describe();
}

TEST(BackendFactoryTest, CudaRequestIsAStatusNeverACrash) {
  auto b = CreateBackend({.kind = BackendKind::kCuda});
  ASSERT_FALSE(b.ok());
  if (!CudaBuilt()) {
    EXPECT_EQ(b.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(b.status().message().find("without CUDA"), std::string::npos);
  } else {
    EXPECT_TRUE(b.status().code() == absl::StatusCode::kUnimplemented ||
                b.status().code() == absl::StatusCode::kNotFound) << b.status();
  }
}

}  // namespace
}  // namespace kiln::kernels
