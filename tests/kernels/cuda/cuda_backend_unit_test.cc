// What of the CUDA backend can be proven without a GPU: CudaCheck's error mapping, the factory's
// NOT_FOUND for a device that does not exist, and that the elementwise ops reject bad calls
// with exactly the CPU reference's messages before touching the device or the stager (the
// views below point at host memory labelled cuda:0; a kernel reading them would fault).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {
namespace {

TEST(CudaCheckTest, SuccessIsOk) { EXPECT_TRUE(CudaCheck(cudaSuccess, "x").ok()); }

TEST(CudaCheckTest, StickyErrorsAreDeviceLost) {
  for (cudaError_t error : {cudaErrorIllegalAddress, cudaErrorLaunchFailure,
                            cudaErrorECCUncorrectable, cudaErrorMisalignedAddress}) {
    const absl::Status s = CudaCheck(error, "launch RmsNorm");
    EXPECT_TRUE(IsStickyCudaError(error)) << cudaGetErrorName(error);
    EXPECT_TRUE(IsDeviceLost(s)) << s;
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_NE(s.message().find("launch RmsNorm"), std::string::npos) << s;
    EXPECT_NE(s.message().find(cudaGetErrorName(error)), std::string::npos) << s;
  }
}

TEST(CudaCheckTest, OutOfMemoryIsResourceExhaustedAndRecoverable) {
  const absl::Status s = CudaCheck(cudaErrorMemoryAllocation, "cudaMalloc(64 bytes)");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_FALSE(IsDeviceLost(s)) << s;
  EXPECT_FALSE(IsStickyCudaError(cudaErrorMemoryAllocation));
  EXPECT_NE(s.message().find("cudaMalloc(64 bytes)"), std::string::npos) << s;
}

TEST(CudaCheckTest, OtherErrorsAreInternalAndRecoverable) {
  for (cudaError_t error : {cudaErrorInvalidValue, cudaErrorInvalidDevice, cudaErrorNoDevice}) {
    const absl::Status s = CudaCheck(error, "call");
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_FALSE(IsDeviceLost(s)) << s;
  }
}

int VisibleDevices() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

TEST(CreateCudaBackendTest, MissingDeviceIsNotFoundNamingIndexAndCount) {
  const int count = VisibleDevices();  // 0 on a machine without a driver
  for (int index : {count, count + 3, -1}) {
    auto backend = CreateCudaBackend(index);
    ASSERT_FALSE(backend.ok());
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kNotFound) << backend.status();
    const std::string message(backend.status().message());
    EXPECT_NE(message.find("cuda device " + std::to_string(index)), std::string::npos) << message;
    EXPECT_NE(message.find(std::to_string(count) + " visible"), std::string::npos) << message;
  }
  auto via_factory = CreateBackend({.kind = BackendKind::kCuda, .device_index = count});
  ASSERT_FALSE(via_factory.ok());
  EXPECT_EQ(via_factory.status().code(), absl::StatusCode::kNotFound) << via_factory.status();
}

// Fails the test if any op reaches the stager.
class NeverStager final : public MetadataStager {
 public:
  absl::Status Stage(std::span<const HostArray>, std::span<const void*>) override {
    ADD_FAILURE() << "Stage called before validation failed";
    return absl::InternalError("unexpected Stage");
  }
};

class CudaOpValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cpu = cpu::CreateCpuBackend({.num_threads = 1});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = std::move(*cpu);
    ctx_.device_index = 0;
    ctx_.device = kCuda0;
    ctx_.stager = &stager_;
  }
  // The same host memory seen as a view on the CPU and as one on `device`.
  TensorView Cpu(DType dtype, std::initializer_list<int64_t> shape) {
    return TensorView(storage_.data(), dtype, shape, Device{});
  }
  TensorView Gpu(DType dtype, std::initializer_list<int64_t> shape, Device device = kCuda0) {
    return TensorView(storage_.data(), dtype, shape, device);
  }
  // Same code and, once "cpu" is spelled "cuda:0", the same message.
  static void ExpectSameRejection(const absl::Status& cpu, const absl::Status& gpu) {
    ASSERT_FALSE(cpu.ok());
    ASSERT_FALSE(gpu.ok());
    EXPECT_EQ(cpu.code(), gpu.code()) << cpu << " vs " << gpu;
    std::string want(cpu.message());
    for (size_t at = want.find("cpu"); at != std::string::npos; at = want.find("cpu", at + 6)) {
      want.replace(at, 3, "cuda:0");
    }
    EXPECT_EQ(want, std::string(gpu.message()));
  }

  static constexpr Device kCuda0{DeviceKind::kCuda, 0};
  std::vector<float> storage_ = std::vector<float>(4096, 0.0f);
  std::unique_ptr<Backend> cpu_;
  NeverStager stager_;
  CudaContext ctx_;
};

TEST_F(CudaOpValidationTest, BadIdsAndRowsAreRejectedBeforeStaging) {
  const int32_t ids[] = {0, 7, -1};
  ExpectSameRejection(cpu_->Embedding(Cpu(DType::kBF16, {7, 4}), ids, Cpu(DType::kF32, {3, 4})),
                      Embedding(ctx_, Gpu(DType::kBF16, {7, 4}), ids, Gpu(DType::kF32, {3, 4})));
  const int32_t rows[] = {2, 5};
  ExpectSameRejection(cpu_->GatherRows(Cpu(DType::kF32, {5, 3}), rows, Cpu(DType::kF32, {2, 3})),
                      GatherRows(ctx_, Gpu(DType::kF32, {5, 3}), rows, Gpu(DType::kF32, {2, 3})));
  const int32_t positions[] = {0, 1};
  const float inv_freq[] = {1.0f, 0.5f, 0.25f};
  ExpectSameRejection(cpu_->Rope(Cpu(DType::kF32, {2, 2, 4}), positions, inv_freq, 1.0f),
                      Rope(ctx_, Gpu(DType::kF32, {2, 2, 4}), positions, inv_freq, 1.0f));
}

TEST_F(CudaOpValidationTest, ShapeAndDtypeErrorsMatchTheCpuReference) {
  ExpectSameRejection(
      cpu_->RmsNorm(Cpu(DType::kF32, {3, 8}), Cpu(DType::kF16, {7}), 1e-6f, Cpu(DType::kF32, {3, 8})),
      RmsNorm(ctx_, Gpu(DType::kF32, {3, 8}), Gpu(DType::kF16, {7}), 1e-6f, Gpu(DType::kF32, {3, 8})));
  ExpectSameRejection(
      cpu_->AddRmsNorm(Cpu(DType::kF32, {2, 8}), Cpu(DType::kF32, {3, 8}), Cpu(DType::kF32, {8}),
                       1e-6f, Cpu(DType::kF32, {3, 8})),
      AddRmsNorm(ctx_, Gpu(DType::kF32, {2, 8}), Gpu(DType::kF32, {3, 8}), Gpu(DType::kF32, {8}),
                 1e-6f, Gpu(DType::kF32, {3, 8})));
  ExpectSameRejection(
      cpu_->LayerNorm(Cpu(DType::kF32, {3, 8}), Cpu(DType::kF32, {8}), Cpu(DType::kI32, {8}), 1e-5f,
                      Cpu(DType::kF32, {3, 8})),
      LayerNorm(ctx_, Gpu(DType::kF32, {3, 8}), Gpu(DType::kF32, {8}), Gpu(DType::kI32, {8}), 1e-5f,
                Gpu(DType::kF32, {3, 8})));
  ExpectSameRejection(
      cpu_->Add(Cpu(DType::kF32, {4, 5}), Cpu(DType::kF32, {4, 6}), Cpu(DType::kF32, {4, 5})),
      Add(ctx_, Gpu(DType::kF32, {4, 5}), Gpu(DType::kF32, {4, 6}), Gpu(DType::kF32, {4, 5})));
  ExpectSameRejection(
      cpu_->SiluMul(Cpu(DType::kF16, {4, 5}), Cpu(DType::kF32, {4, 5}), Cpu(DType::kF32, {4, 5})),
      SiluMul(ctx_, Gpu(DType::kF16, {4, 5}), Gpu(DType::kF32, {4, 5}), Gpu(DType::kF32, {4, 5})));
  ExpectSameRejection(cpu_->Gelu(Cpu(DType::kF32, {9}), GeluKind::kTanh, Cpu(DType::kF32, {8})),
                      Gelu(ctx_, Gpu(DType::kF32, {9}), GeluKind::kTanh, Gpu(DType::kF32, {8})));
  ExpectSameRejection(cpu_->Convert(Cpu(DType::kF32, {6}), Cpu(DType::kF16, {5})),
                      Convert(ctx_, Gpu(DType::kF32, {6}), Gpu(DType::kF16, {5})));
  ExpectSameRejection(cpu_->Convert(Cpu(DType::kF32, {6}), Cpu(DType::kI32, {6})),
                      Convert(ctx_, Gpu(DType::kF32, {6}), Gpu(DType::kI32, {6})));
}

TEST_F(CudaOpValidationTest, ViewsOnTheWrongDeviceAreRejected) {
  const absl::Status host = RmsNorm(ctx_, Cpu(DType::kF32, {2, 4}), Gpu(DType::kF32, {4}), 1e-6f,
                                    Gpu(DType::kF32, {2, 4}));
  EXPECT_EQ(host.code(), absl::StatusCode::kInvalidArgument) << host;
  EXPECT_EQ(host.message(), "RmsNorm: x is on cpu, expected cuda:0");
  const absl::Status other_gpu =
      Add(ctx_, Gpu(DType::kF32, {8}), Gpu(DType::kF32, {8}, Device{DeviceKind::kCuda, 1}),
          Gpu(DType::kF32, {8}));
  EXPECT_EQ(other_gpu.code(), absl::StatusCode::kInvalidArgument) << other_gpu;
  EXPECT_EQ(other_gpu.message(), "Add: b is on cuda:1, expected cuda:0");
  const int32_t ids[] = {0};
  const absl::Status table =
      Embedding(ctx_, Gpu(DType::kF32, {2, 4}, Device{DeviceKind::kCuda, 2}), ids, Gpu(DType::kF32, {1, 4}));
  EXPECT_EQ(table.message(), "Embedding: table is on cuda:2, expected cuda:0");
}

}  // namespace
}  // namespace kiln::kernels::cuda
