#include "kernels/backend_factory.h"

#include <string>

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
  if (!CudaBuilt()) {
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_NE(b.status().message().find("without CUDA"), std::string::npos);
    return;
  }
  if (b.ok()) {  // a machine with a GPU
    EXPECT_EQ((*b)->kind(), BackendKind::kCuda);
    EXPECT_EQ((*b)->Describe().rfind("cuda:0 (", 0), 0u) << (*b)->Describe();
  } else {  // built with CUDA, no device (or no driver): device 0 does not exist
    EXPECT_EQ(b.status().code(), absl::StatusCode::kNotFound) << b.status();
    EXPECT_NE(b.status().message().find("cuda device 0 not found"), std::string::npos) << b.status();
  }
  // An index no machine has is NOT_FOUND everywhere, naming the index.
  auto missing = CreateBackend({.kind = BackendKind::kCuda, .device_index = 1 << 20});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_NE(missing.status().message().find(std::to_string(1 << 20)), std::string::npos)
      << missing.status();
}

}  // namespace
}  // namespace kiln::kernels
