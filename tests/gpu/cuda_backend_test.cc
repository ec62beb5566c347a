// CudaBackend itself on a real device: memory and copies, OOM, rejected indices leave outputs
// untouched, the metadata stager across many calls of different sizes (directly and through
// ops enqueued back to back), concurrent callers, Describe. Skips without a device.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_stager.h"
#include "tests/gpu/gpu_test_util.h"

namespace kiln::kernels::gpu_test {
namespace {

using CudaBackendTest = GpuParityTest;

TEST_F(CudaBackendTest, IdentifiesItself) {
  EXPECT_EQ(gpu().kind(), BackendKind::kCuda);
  EXPECT_EQ(gpu().device(), (Device{DeviceKind::kCuda, 0}));
  const std::string description = gpu().Describe();
  EXPECT_EQ(description.rfind("cuda:0 (", 0), 0u) << description;
  EXPECT_NE(description.find(", sm_"), std::string::npos) << description;
  EXPECT_NE(description.find(" GiB)"), std::string::npos) << description;
}

TEST_F(CudaBackendTest, AllocateAndCopyRoundTrip) {
  std::mt19937 rng(std::random_device{}());
  for (size_t bytes : {size_t{1}, size_t{3}, size_t{64}, size_t{4097}, size_t{1} << 22}) {
    auto buffer = gpu().Allocate(bytes);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    EXPECT_EQ(buffer->bytes(), bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer->data()) % 64, 0u);
    std::vector<uint8_t> host(bytes), back(bytes, 0);
    for (uint8_t& b : host) b = static_cast<uint8_t>(rng());
    const TensorView view = buffer->View(DType::kU8, {static_cast<int64_t>(bytes)});
    const std::vector<uint8_t> original = host;
    ASSERT_TRUE(gpu().CopyFromHost(host.data(), view).ok());
    host.assign(bytes, 0);  // the source may be reused as soon as the copy returns
    ASSERT_TRUE(gpu().CopyToHost(view, back.data()).ok());
    EXPECT_EQ(back, original) << bytes << " bytes";
  }
  auto empty = gpu().Allocate(0);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->bytes(), 0u);
}

TEST_F(CudaBackendTest, CopiesRejectWrongDevicesAndHostPointers) {
  std::vector<float> host(8, 1.0f);
  const absl::Status cpu_view = gpu().CopyFromHost(host.data(), TensorView(host.data(), DType::kF32, {8}));
  EXPECT_EQ(cpu_view.code(), absl::StatusCode::kInvalidArgument) << cpu_view;
  // A host pointer labelled as cuda:0 memory never reaches cudaMemcpy as a device address.
  const TensorView lying(host.data(), DType::kF32, {8}, gpu().device());
  const absl::Status s = gpu().CopyToHost(lying, host.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("not device memory of cuda:0"), std::string::npos) << s;
}

TEST_F(CudaBackendTest, OutOfMemoryIsResourceExhaustedAndTheBackendStillWorks) {
  const size_t absurd = size_t{1} << 50;  // 1 PiB
  auto buffer = gpu().Allocate(absurd);
  ASSERT_FALSE(buffer.ok());
  EXPECT_EQ(buffer.status().code(), absl::StatusCode::kResourceExhausted) << buffer.status();
  EXPECT_FALSE(IsDeviceLost(buffer.status()));
  EXPECT_NE(buffer.status().message().find(std::to_string(absurd)), std::string::npos) << buffer.status();
  EXPECT_NE(buffer.status().message().find("cuda:0"), std::string::npos) << buffer.status();
  // The failed allocation leaves no error behind for the next launch.
  const std::vector<float> a = RandomValues(100, 1), b = RandomValues(100, 2);
  const DeviceTensor ga = Upload(gpu(), a, DType::kF32, {100});
  const DeviceTensor gb = Upload(gpu(), b, DType::kF32, {100});
  const DeviceTensor out = Poisoned(gpu(), DType::kF32, {100});
  ASSERT_TRUE(gpu().Add(ga.view, gb.view, out.view).ok());
  const std::vector<float> got = Download(gpu(), out.view);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(got[i], a[i] + b[i]) << i;
}

TEST_F(CudaBackendTest, BadIdsAndRowsWriteNothing) {
  const DeviceTensor table = Upload(gpu(), RandomValues(40, 3), DType::kF16, {10, 4});
  const DeviceTensor out = Poisoned(gpu(), DType::kF32, {3, 4});
  const std::vector<uint8_t> before = DownloadBytes(gpu(), out.view);
  for (const std::vector<int32_t>& ids : {std::vector<int32_t>{0, 10, 1}, std::vector<int32_t>{-1, 0, 1},
                                          std::vector<int32_t>{2, 3, 1 << 30}}) {
    const absl::Status s = gpu().Embedding(table.view, ids, out.view);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("outside [0, 10)"), std::string::npos) << s;
  }
  const DeviceTensor src = Upload(gpu(), RandomValues(40, 4), DType::kF32, {10, 4});
  const std::vector<int32_t> rows = {9, 10, 0};
  const absl::Status s = gpu().GatherRows(src.view, rows, out.view);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(DownloadBytes(gpu(), out.view), before);
}

// Many ops enqueued back to back, each staging a different number of ids (the arena grows and
// the pinned ring wraps many times), checked only at the end: every kernel must have read its
// own ids, not those of a later Stage.
TEST_F(CudaBackendTest, StagerSurvivesManyCallsOfDifferentSizes) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937 rng(seed);
  constexpr int64_t kRows = 1000, kDim = 8;
  const std::vector<float> table_values = RandomValues(kRows * kDim, seed);
  const DeviceTensor table = Upload(gpu(), table_values, DType::kF32, {kRows, kDim});
  struct Call {
    std::vector<int32_t> ids;
    DeviceTensor out;
  };
  std::vector<Call> calls;
  for (int i = 0; i < 200; ++i) {
    // Mostly small, sometimes large (up to 80 KiB of ids), so growth happens mid-stream.
    const size_t n = 1 + static_cast<size_t>(rng() % (i % 37 == 0 ? 20000 : 300));
    Call call;
    call.ids.resize(n);
    for (int32_t& id : call.ids) id = static_cast<int32_t>(rng() % kRows);
    call.out = Poisoned(gpu(), DType::kF32, {static_cast<int64_t>(n), kDim});
    calls.push_back(std::move(call));
  }
  for (Call& call : calls) ASSERT_TRUE(gpu().Embedding(table.view, call.ids, call.out.view).ok());
  for (size_t c = 0; c < calls.size(); ++c) {
    const std::vector<float> got = Download(gpu(), calls[c].out.view);
    for (size_t i = 0; i < calls[c].ids.size(); ++i) {
      for (int64_t j = 0; j < kDim; ++j) {
        ASSERT_EQ(got[i * kDim + static_cast<size_t>(j)],
                  table_values[static_cast<size_t>(calls[c].ids[i] * kDim + j)])
            << "call " << c << " row " << i;
      }
    }
  }
}

TEST(CudaStagerTest, ArraysAreAlignedAndCopiedExactly) {
  if (!HasCudaDevice()) GTEST_SKIP() << "no CUDA device";
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  {
    auto stager = cuda::CreateMetadataStager(0, stream);
    ASSERT_TRUE(stager.ok()) << stager.status();
    std::mt19937 rng(std::random_device{}());
    for (int round = 0; round < 50; ++round) {
      std::vector<std::vector<uint8_t>> host(1 + rng() % 5);
      std::vector<cuda::HostArray> arrays;
      for (auto& h : host) {
        h.resize(rng() % 3 == 0 ? 0 : 1 + rng() % (round % 10 == 9 ? 100000 : 700));
        for (uint8_t& b : h) b = static_cast<uint8_t>(rng());
        arrays.push_back({h.data(), h.size()});
      }
      std::vector<const void*> ptrs(host.size(), reinterpret_cast<const void*>(1));
      ASSERT_TRUE((*stager)->Stage(arrays, ptrs).ok());
      for (size_t i = 0; i < host.size(); ++i) {
        if (host[i].empty()) {
          EXPECT_EQ(ptrs[i], nullptr);
          continue;
        }
        ASSERT_NE(ptrs[i], nullptr);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(ptrs[i]) % cuda::kStageAlignment, 0u);
        std::vector<uint8_t> back(host[i].size());
        ASSERT_EQ(cudaMemcpyAsync(back.data(), ptrs[i], back.size(), cudaMemcpyDeviceToHost, stream),
                  cudaSuccess);
        ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
        EXPECT_EQ(back, host[i]) << "round " << round << " array " << i;
      }
    }
    const cuda::HostArray mismatched[] = {{nullptr, 0}};
    std::vector<const void*> two(2);
    EXPECT_EQ((*stager)->Stage(mismatched, two).code(), absl::StatusCode::kInvalidArgument);
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

// The backend's mutex: two threads issuing ops and copies at once both get their own results.
TEST_F(CudaBackendTest, ConcurrentCallersAreSerialized) {
  auto worker = [this](uint32_t seed, bool* ok) {
    const std::vector<float> x = RandomValues(4096, seed);
    const std::vector<float> w = RandomValues(512, seed + 1);
    const DeviceTensor gx = Upload(gpu(), x, DType::kF32, {8, 512});
    const DeviceTensor gw = Upload(gpu(), w, DType::kF32, {512});
    const DeviceTensor cx = Upload(cpu(), x, DType::kF32, {8, 512});
    const DeviceTensor cw = Upload(cpu(), w, DType::kF32, {512});
    const DeviceTensor gout = Poisoned(gpu(), DType::kF32, {8, 512});
    const DeviceTensor cout = Poisoned(cpu(), DType::kF32, {8, 512});
    *ok = true;
    for (int i = 0; i < 50; ++i) *ok &= gpu().RmsNorm(gx.view, gw.view, 1e-6f, gout.view).ok();
    *ok &= cpu().RmsNorm(cx.view, cw.view, 1e-6f, cout.view).ok();
    const std::vector<float> got = Download(gpu(), gout.view), want = Download(cpu(), cout.view);
    for (size_t i = 0; i < got.size(); ++i) *ok &= std::fabs(got[i] - want[i]) <= 1e-4f * std::fabs(want[i]) + 1e-6f;
  };
  bool ok1 = false, ok2 = false;
  std::thread t1(worker, 11u, &ok1), t2(worker, 22u, &ok2);
  t1.join();
  t2.join();
  EXPECT_TRUE(ok1);
  EXPECT_TRUE(ok2);
}

}  // namespace
}  // namespace kiln::kernels::gpu_test
