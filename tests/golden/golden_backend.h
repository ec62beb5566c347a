// The backend the golden tests run on. By default the CPU reference; the tests/gpu copies of the
// golden binaries are compiled with KILN_GOLDEN_ON_CUDA and run the very same tests, fixtures
// and tolerances on CUDA device 0 (issue #8: "whole-model golden tests on the GPU"). Without a
// visible device those copies skip every test (a global environment), proving nothing.
//
// Tests read device memory only through HostCopy, so they work on either backend.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"

namespace kiln::engine::golden {

inline std::unique_ptr<kernels::Backend> MakeGoldenBackend(int num_threads = 2) {
  kernels::BackendOptions options;
  options.num_threads = num_threads;  // the CPU's; the CUDA backend ignores it
#ifdef KILN_GOLDEN_ON_CUDA
  options.kind = kernels::BackendKind::kCuda;
  options.device_index = 0;
#else
  options.kind = kernels::BackendKind::kCpu;
#endif
  absl::StatusOr<std::unique_ptr<kernels::Backend>> backend = kernels::CreateBackend(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? *std::move(backend) : nullptr;
}

// The elements of `view` (on `backend`'s device) in host memory.
template <typename T>
std::vector<T> HostCopy(kernels::Backend& backend, const kernels::TensorView& view) {
  std::vector<T> out(view.bytes() / sizeof(T));
  if (!out.empty()) {
    const absl::Status s = backend.CopyToHost(view, out.data());
    EXPECT_TRUE(s.ok()) << s;
  }
  return out;
}

#ifdef KILN_GOLDEN_ON_CUDA
class CudaGoldenEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (kernels::ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device: golden-on-GPU tests skipped";
  }
};
inline const bool kCudaGoldenEnvironmentRegistered =
    (::testing::AddGlobalTestEnvironment(new CudaGoldenEnvironment), true);
#endif

}  // namespace kiln::engine::golden
