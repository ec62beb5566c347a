// Shared by the tests/gpu parity tests: a fixture holding the CPU reference backend and a CUDA
// backend, plus upload/download, poisoning and tolerance helpers.
//
// Without a visible CUDA device every test skips (and is never counted as evidence, issue #8).
// With a device, failing to create the CUDA backend is a test failure, not a skip.
#pragma once

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/dtype.h"

namespace kiln::kernels::gpu_test {

inline bool HasCudaDevice() {
  std::string error;
  return cuda::DeviceCount(&error) > 0;
}

// fp32 values -> bytes of `dtype` (F32/F16/BF16 round-to-nearest-even, I32/I8/U8 truncating).
inline std::vector<uint8_t> Encode(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> bytes(values.size() * DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    uint8_t* p = bytes.data() + i * DTypeSize(dtype);
    switch (dtype) {
      case DType::kF32: std::memcpy(p, &values[i], 4); break;
      case DType::kF16: { const uint16_t h = FloatToHalf(values[i]); std::memcpy(p, &h, 2); break; }
      case DType::kBF16: { const uint16_t b = FloatToBFloat16(values[i]); std::memcpy(p, &b, 2); break; }
      case DType::kI32: { const int32_t v = static_cast<int32_t>(values[i]); std::memcpy(p, &v, 4); break; }
      case DType::kI8: { const int8_t v = static_cast<int8_t>(values[i]); std::memcpy(p, &v, 1); break; }
      case DType::kU8: { const uint8_t v = static_cast<uint8_t>(values[i]); std::memcpy(p, &v, 1); break; }
      default: ADD_FAILURE() << "Encode: unsupported dtype " << DTypeName(dtype);
    }
  }
  return bytes;
}

// Bytes of a F32/F16/BF16 array -> fp32 values.
inline std::vector<float> DecodeFloats(const std::vector<uint8_t>& bytes, DType dtype) {
  const size_t n = bytes.size() / DTypeSize(dtype);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = bytes.data() + i * DTypeSize(dtype);
    uint16_t h = 0;
    switch (dtype) {
      case DType::kF32: std::memcpy(&out[i], p, 4); break;
      case DType::kF16: std::memcpy(&h, p, 2); out[i] = HalfToFloat(h); break;
      case DType::kBF16: std::memcpy(&h, p, 2); out[i] = BFloat16ToFloat(h); break;
      default: ADD_FAILURE() << "DecodeFloats: unsupported dtype " << DTypeName(dtype);
    }
  }
  return out;
}

// Uniform values in [lo, hi), fresh per seed.
inline std::vector<float> RandomValues(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A tensor held on one backend: its buffer and a view of it.
struct DeviceTensor {
  DeviceBuffer buffer;
  TensorView view;
};

// Allocates `shape` of `dtype` on `backend` and uploads `bytes` (which must fit exactly).
inline DeviceTensor UploadBytes(Backend& backend, const std::vector<uint8_t>& bytes, DType dtype,
                                std::initializer_list<int64_t> shape) {
  DeviceTensor t;
  size_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<size_t>(d);
  auto buffer = backend.Allocate(std::max<size_t>(numel * DTypeSize(dtype), 1));
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  if (!buffer.ok()) return t;
  t.buffer = std::move(*buffer);
  t.view = TensorView(t.buffer.data(), dtype, shape, t.buffer.device());
  EXPECT_EQ(bytes.size(), t.view.bytes());
  if (numel > 0) {
    const absl::Status s = backend.CopyFromHost(bytes.data(), t.view);
    EXPECT_TRUE(s.ok()) << s;
  }
  return t;
}

inline DeviceTensor Upload(Backend& backend, const std::vector<float>& values, DType dtype,
                           std::initializer_list<int64_t> shape) {
  return UploadBytes(backend, Encode(values, dtype), dtype, shape);
}

// Allocates `shape` of `dtype` filled with NaN (floats) or 0xFF bytes, so an output a kernel
// forgot to write never passes a comparison.
inline DeviceTensor Poisoned(Backend& backend, DType dtype, std::initializer_list<int64_t> shape) {
  size_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<size_t>(d);
  if (IsFloatingPoint(dtype)) {
    return Upload(backend, std::vector<float>(numel, std::numeric_limits<float>::quiet_NaN()), dtype, shape);
  }
  return UploadBytes(backend, std::vector<uint8_t>(numel * DTypeSize(dtype), 0xFF), dtype, shape);
}

inline std::vector<uint8_t> DownloadBytes(Backend& backend, const TensorView& view) {
  std::vector<uint8_t> bytes(view.bytes());
  if (!bytes.empty()) {
    const absl::Status s = backend.CopyToHost(view, bytes.data());
    EXPECT_TRUE(s.ok()) << s;
  }
  return bytes;
}

inline std::vector<float> Download(Backend& backend, const TensorView& view) {
  return DecodeFloats(DownloadBytes(backend, view), view.dtype());
}

// Relative tolerance that fits each weight/compute dtype (issue #8): fp32 well under 1e-3,
// half types between 1e-3 and 1e-2.
inline float RelTolerance(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 1e-4f;
    case DType::kF16: return 5e-3f;
    case DType::kBF16: return 1e-2f;
    default: return 1e-4f;
  }
}

// Every got[i] within atol + rtol * |want[i]| of want[i]; a NaN or Inf (in either) never
// passes. Reports the first few mismatches and the worst error.
inline void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, float rtol,
                        float atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  double worst = 0;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool finite = std::isfinite(got[i]) && std::isfinite(want[i]);
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (finite) worst = std::max(worst, err);
    if (!finite || err > atol + rtol * std::fabs(want[i])) {
      ++bad;
      if (reported++ < 5) {
        ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i];
      }
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " elements out of tolerance (worst finite abs error " << worst << ")";
}

// The fixture: cpu() is the reference, gpu() the backend under test (device 0).
class GpuParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HasCudaDevice()) GTEST_SKIP() << "no CUDA device";
    auto cpu = CreateBackend({.kind = BackendKind::kCpu, .num_threads = 2});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_ = std::move(*cpu);
    auto gpu = CreateBackend({.kind = BackendKind::kCuda, .device_index = 0});
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    gpu_ = std::move(*gpu);
  }
  Backend& cpu() { return *cpu_; }
  Backend& gpu() { return *gpu_; }

 private:
  std::unique_ptr<Backend> cpu_;
  std::unique_ptr<Backend> gpu_;
};

}  // namespace kiln::kernels::gpu_test
