// Helpers of the gemm group's parity tests (gemm/quant/lora_parity_test.cc), on top of the
// shared GpuParityTest fixture (gpu_test_util.h): running one op on both backends with their own
// workspaces and comparing, and host-built tensors uploaded to the device.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "tests/gpu/gpu_test_util.h"

namespace kiln::kernels::gpu_test {

// A workspace of at least `bytes` on `backend` (never zero-sized, so the view is never null).
inline DeviceTensor Workspace(Backend& backend, size_t bytes) {
  return UploadBytes(backend, std::vector<uint8_t>(bytes + 64, 0xAB), DType::kU8,
                     {static_cast<int64_t>(bytes + 64)});
}

// Host bytes as a CPU view (the CPU backend reads host memory directly).
inline TensorView HostView(const std::vector<uint8_t>& bytes, DType dtype, std::initializer_list<int64_t> shape) {
  return TensorView(bytes.data(), dtype, shape);
}

// The same tensor on both backends: host bytes for the CPU, an upload for the GPU.
struct Twin {
  std::vector<uint8_t> host;
  DeviceTensor device;
  TensorView cpu;
  TensorView gpu() const { return device.view; }
};

inline Twin MakeTwin(Backend& gpu, const std::vector<uint8_t>& bytes, DType dtype,
                     std::initializer_list<int64_t> shape) {
  Twin t;
  t.host = bytes;
  t.cpu = TensorView(t.host.data(), dtype, shape);
  t.device = UploadBytes(gpu, bytes, dtype, shape);
  return t;
}

inline Twin MakeTwin(Backend& gpu, const std::vector<float>& values, DType dtype,
                     std::initializer_list<int64_t> shape) {
  return MakeTwin(gpu, Encode(values, dtype), dtype, shape);
}

// atol for a dot product of length k over values in [-1, 1]: the accumulated rounding of
// rtol-sized relative errors grows like sqrt(k).
inline float DotAtol(float rtol, int64_t k) {
  return rtol * std::sqrt(static_cast<float>(std::max<int64_t>(k, 1)));
}

// Both statuses have the same code and message (the backends share their checks).
inline void ExpectSameStatus(const absl::Status& cpu, const absl::Status& gpu, const std::string& what) {
  EXPECT_FALSE(cpu.ok()) << what;
  EXPECT_EQ(cpu.code(), gpu.code()) << what << ": cpu " << cpu << " / gpu " << gpu;
  EXPECT_EQ(cpu.message(), gpu.message()) << what;
}

}  // namespace kiln::kernels::gpu_test
