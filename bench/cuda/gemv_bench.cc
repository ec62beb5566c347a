// gemv_bench: batch-1 decode matmuls of a Llama-2-7B layer (q/k/v/o 4096x4096, gate/up
// 11008x4096, down 4096x11008, lm_head 32000x4096) through the CUDA gemm ops (cuda_ops.h), in
// bf16, bnb NF4, LLM.int8 and GPTQ 4-bit (group 128). Each result is the format's weight bytes
// over the measured time per call, set against the bandwidth floor: a device-to-device
// cudaMemcpy measured in the same run (read + write bytes over time). Prints a markdown table,
// then one JSON object.
//
// Usage: gemv_bench [--iters N] [--device I]     (needs a CUDA device; exits 2 without one)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "engine/quant/bnb4.h"
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {
namespace {

#define BENCH_CHECK(expr)                                                               \
  do {                                                                                  \
    const cudaError_t e_ = (expr);                                                      \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s failed: %s\n", #expr, cudaGetErrorString(e_));           \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

// Device memory freed at exit of scope.
struct DeviceMem {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit DeviceMem(size_t n) : bytes(n) { BENCH_CHECK(cudaMalloc(&ptr, n == 0 ? 1 : n)); }
  ~DeviceMem() { cudaFree(ptr); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
};

// Fills `bytes` of device memory with pseudo-random bytes (masked by `mask`, e.g. to keep
// bf16 exponents sane) through a host staging buffer.
void FillRandom(void* dst, size_t bytes, uint32_t seed, uint8_t and_mask = 0xFF) {
  std::vector<uint8_t> host(bytes);
  uint64_t s = 0x9E3779B97F4A7C15ull ^ seed;
  for (size_t i = 0; i < bytes; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    host[i] = static_cast<uint8_t>(s >> 56) & and_mask;
  }
  BENCH_CHECK(cudaMemcpy(dst, host.data(), bytes, cudaMemcpyHostToDevice));
}

void FillValue(void* dst, const void* value, size_t elem, size_t count) {
  std::vector<uint8_t> host(elem * count);
  for (size_t i = 0; i < count; ++i) std::memcpy(host.data() + i * elem, value, elem);
  BENCH_CHECK(cudaMemcpy(dst, host.data(), host.size(), cudaMemcpyHostToDevice));
}

// Device-to-device copy bandwidth in GB/s (read + write), the floor a weight stream can reach.
double CopyBandwidth(cudaStream_t stream) {
  const size_t bytes = size_t{1} << 30;
  DeviceMem a(bytes), b(bytes);
  BENCH_CHECK(cudaMemsetAsync(a.ptr, 1, bytes, stream));
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) BENCH_CHECK(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice, stream));
  const int iters = 20;
  BENCH_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < iters; ++i) BENCH_CHECK(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice, stream));
  BENCH_CHECK(cudaEventRecord(stop, stream));
  BENCH_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * static_cast<double>(bytes) * iters / (ms * 1e-3) / 1e9;
}

struct Result {
  std::string shape, format;
  double weight_mb = 0, us = 0, gbps = 0, pct_floor = 0;
};

template <typename Fn>
double TimeUs(cudaStream_t stream, int iters, Fn&& call) {
  for (int i = 0; i < 5; ++i) call();
  BENCH_CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  BENCH_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < iters; ++i) call();
  BENCH_CHECK(cudaEventRecord(stop, stream));
  BENCH_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms * 1e3 / iters;
}

int Run(int device, int iters) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= device) {
    std::fprintf(stderr, "gemv_bench: no CUDA device %d\n", device);
    return 2;
  }
  BENCH_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, device));
  cudaStream_t stream;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto gemm = CreateGemmEngine(device);
  if (!gemm.ok()) {
    std::fprintf(stderr, "CreateGemmEngine: %s\n", std::string(gemm.status().message()).c_str());
    return 1;
  }
  CudaContext ctx;
  ctx.device_index = device;
  ctx.device = Device{DeviceKind::kCuda, device};
  ctx.stream = stream;
  ctx.gemm = gemm->get();  // Matmul / QuantMatmul stage no metadata: no stager needed

  const double floor_gbps = CopyBandwidth(stream);
  const Device dev = ctx.device;
  struct Shape {
    int64_t n, k;
    const char* name;
  };
  const Shape shapes[] = {{4096, 4096, "q/k/v/o 4096x4096"},
                          {11008, 4096, "gate/up 11008x4096"},
                          {4096, 11008, "down 4096x11008"},
                          {32000, 4096, "lm_head 32000x4096"}};
  std::vector<Result> results;
  for (const Shape& s : shapes) {
    const int64_t n = s.n, k = s.k;
    DeviceMem x(static_cast<size_t>(k) * 4), out(static_cast<size_t>(n) * 4);
    FillRandom(x.ptr, x.bytes, 1, 0x3F);  // small positive-exponent floats, no NaN/Inf
    const TensorView xv(x.ptr, DType::kF32, {1, k}, dev), ov(out.ptr, DType::kF32, {1, n}, dev);
    auto record = [&](const char* format, size_t weight_bytes, double us) {
      Result r;
      r.shape = s.name;
      r.format = format;
      r.weight_mb = static_cast<double>(weight_bytes) / 1e6;
      r.us = us;
      r.gbps = static_cast<double>(weight_bytes) / (us * 1e-6) / 1e9;
      r.pct_floor = 100.0 * r.gbps / floor_gbps;
      results.push_back(r);
    };
    auto fail = [](const absl::Status& st) {
      std::fprintf(stderr, "gemv_bench: %s\n", std::string(st.message()).c_str());
      std::exit(1);
    };
    // One quantized format: its workspace, a checked first call, then the timed calls.
    auto run_quant = [&](const char* format, const QuantizedMatrix& q) {
      DeviceMem ws(QuantMatmulWorkspaceBytes(1, q) + 256);
      const TensorView wsv(ws.ptr, DType::kU8, {static_cast<int64_t>(ws.bytes)}, dev);
      if (auto st = QuantMatmul(ctx, xv, q, TensorView(), ov, wsv); !st.ok()) fail(st);
      record(format, q.bytes(), TimeUs(stream, iters, [&] { (void)QuantMatmul(ctx, xv, q, TensorView(), ov, wsv); }));
    };
    {  // bf16 dense
      DeviceMem w(static_cast<size_t>(n * k) * 2), ws(MatmulWorkspaceBytes(1, n, k, DType::kBF16) + 256);
      FillRandom(w.ptr, w.bytes, 2, 0xBF);  // clears bf16 exponent MSBs: finite values
      const TensorView wv(w.ptr, DType::kBF16, {n, k}, dev), wsv(ws.ptr, DType::kU8, {static_cast<int64_t>(ws.bytes)}, dev);
      if (auto st = Matmul(ctx, xv, wv, TensorView(), ov, wsv); !st.ok()) fail(st);
      record("bf16", w.bytes, TimeUs(stream, iters, [&] { (void)Matmul(ctx, xv, wv, TensorView(), ov, wsv); }));
    }
    {  // NF4 blocksize 64, bf16 compute
      const int64_t blocks = n * k / 64;
      DeviceMem packed(static_cast<size_t>(n * k / 2)), absmax(static_cast<size_t>(blocks) * 4);
      FillRandom(packed.ptr, packed.bytes, 3);
      const float one = 0.05f;
      FillValue(absmax.ptr, &one, 4, static_cast<size_t>(blocks));
      QuantizedMatrix q;
      q.format = QuantFormat::kBnb4;
      q.rows = n;
      q.cols = k;
      q.compute_dtype = DType::kBF16;
      q.bnb4.packed = TensorView(packed.ptr, DType::kU8, {n * k / 2}, dev);
      q.bnb4.absmax = TensorView(absmax.ptr, DType::kF32, {blocks}, dev);
      const std::span<const float> nf4 = engine::quant::Code4bit(engine::quant::Bnb4Type::kNf4);
      std::copy(nf4.begin(), nf4.end(), q.bnb4.code.begin());
      q.bnb4.blocksize = 64;
      run_quant("nf4", q);
    }
    {  // LLM.int8, threshold 6 (no outliers in this x)
      DeviceMem weight(static_cast<size_t>(n * k)), scb(static_cast<size_t>(n) * 4);
      FillRandom(weight.ptr, weight.bytes, 4, 0x7F);
      const float s1 = 0.1f;
      FillValue(scb.ptr, &s1, 4, static_cast<size_t>(n));
      QuantizedMatrix q;
      q.format = QuantFormat::kInt8;
      q.rows = n;
      q.cols = k;
      q.compute_dtype = DType::kBF16;
      q.int8.weight = TensorView(weight.ptr, DType::kI8, {n, k}, dev);
      q.int8.scb = TensorView(scb.ptr, DType::kF32, {n}, dev);
      q.int8.threshold = 6.0f;
      run_quant("int8", q);
    }
    {  // GPTQ 4-bit, group 128, sequential g_idx, fp16 scales and compute
      const int64_t groups = k / 128;
      DeviceMem qweight(static_cast<size_t>(k / 8 * n) * 4), qzeros(static_cast<size_t>(groups * n / 8) * 4),
          scales(static_cast<size_t>(groups * n) * 2), g_idx(static_cast<size_t>(k) * 4);
      FillRandom(qweight.ptr, qweight.bytes, 5);
      FillRandom(qzeros.ptr, qzeros.bytes, 6);
      const uint16_t half_001 = 0x211F;  // ~0.01 in fp16
      FillValue(scales.ptr, &half_001, 2, static_cast<size_t>(groups * n));
      std::vector<int32_t> gi(static_cast<size_t>(k));
      for (int64_t i = 0; i < k; ++i) gi[static_cast<size_t>(i)] = static_cast<int32_t>(i / 128);
      BENCH_CHECK(cudaMemcpy(g_idx.ptr, gi.data(), g_idx.bytes, cudaMemcpyHostToDevice));
      QuantizedMatrix q;
      q.format = QuantFormat::kGptq;
      q.rows = n;
      q.cols = k;
      q.compute_dtype = DType::kF16;
      q.gptq.qweight = TensorView(qweight.ptr, DType::kI32, {k / 8, n}, dev);
      q.gptq.qzeros = TensorView(qzeros.ptr, DType::kI32, {groups, n / 8}, dev);
      q.gptq.scales = TensorView(scales.ptr, DType::kF16, {groups, n}, dev);
      q.gptq.g_idx = TensorView(g_idx.ptr, DType::kI32, {k}, dev);
      q.gptq.bits = 4;
      q.gptq.zero_offset = 1;
      q.gptq.groups = groups;
      run_quant("gptq4", q);
    }
    BENCH_CHECK(cudaStreamSynchronize(stream));
  }

  std::printf("# gemv_bench: batch-1 decode GEMV, %s\n\n", prop.name);
  std::printf("bandwidth floor (device-to-device cudaMemcpy, read+write): %.1f GB/s\n\n", floor_gbps);
  std::printf("| shape | format | weight MB | us/call | GB/s | %% of floor |\n|---|---|---:|---:|---:|---:|\n");
  for (const Result& r : results) {
    std::printf("| %s | %s | %.1f | %.1f | %.1f | %.1f |\n", r.shape.c_str(), r.format.c_str(), r.weight_mb, r.us,
                r.gbps, r.pct_floor);
  }
  std::printf("\n{\"device\": \"%s\", \"floor_gbps\": %.1f, \"iters\": %d, \"results\": [", prop.name, floor_gbps, iters);
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::printf("%s{\"shape\": \"%s\", \"format\": \"%s\", \"weight_mb\": %.3f, \"us\": %.2f, \"gbps\": %.1f, "
                "\"pct_floor\": %.1f}",
                i == 0 ? "" : ", ", r.shape.c_str(), r.format.c_str(), r.weight_mb, r.us, r.gbps, r.pct_floor);
  }
  std::printf("]}\n");
  BENCH_CHECK(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace
}  // namespace kiln::kernels::cuda

int main(int argc, char** argv) {
  int iters = 50, device = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--iters") == 0) {
      iters = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--device") == 0) {
      device = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: gemv_bench [--iters N] [--device I]\n");
      return 2;
    }
  }
  if (iters < 1) iters = 1;
  return kiln::kernels::cuda::Run(device, iters);
}
