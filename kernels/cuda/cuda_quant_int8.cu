// LLM.int8 on the GPU, in the exact structure of cpu_quant.cc (bitsandbytes 0.50's
// MatMul8bitLt): x rounded to the compute dtype, outlier columns (|fp16(x)| >= fp16(threshold))
// found over all rows and listed in increasing order, row-wise absmax quantization of x to int8
// with outlier elements excluded from the absmax and outlier columns zeroed, the exact int32
// dot (dp4a), int8_mm_dequant's rescaling, bias, rounding, then the outlier columns summed in
// column order against the dequantized weight. __fmul_rn/__fadd_rn keep nvcc from contracting
// the reference's separately rounded fp32 operations into FMAs.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_gemm_device.h"
#include "kernels/cuda/cuda_quant_launch.h"

namespace kiln::kernels::cuda {
namespace {

using gemm_device::Fp16;
using gemm_device::GridFor;
using gemm_device::kInv127;
using gemm_device::kMmDequantScale;
using gemm_device::LoadFloat;
using gemm_device::RoundTo;
using gemm_device::WarpSumInt;

constexpr int kWarps = 8;  // dot kernel: one warp per output row of W
constexpr int kThreads = kWarps * 32;

// torch.round (half to even) then .to(int8); NaN (an all-zero row: 0 * inf) becomes 0.
__device__ __forceinline__ int8_t RoundToInt8(float v) {
  if (isnan(v)) return 0;
  return static_cast<int8_t>(fminf(fmaxf(rintf(v), -128.0f), 127.0f));
}

// xr = x rounded to compute; columns holding any |fp16(xr)| >= fp16(threshold) flagged.
__global__ void Int8RoundFlagKernel(const float* __restrict__ x, QuantKernelParams p, float* __restrict__ xr,
                                    uint8_t* __restrict__ is_outlier, int64_t m) {
  const bool decompose = p.threshold > 0.0f;
  const float th = Fp16(p.threshold);
  const int64_t total = m * p.cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = RoundTo(x[i], p.compute);
    xr[i] = v;
    if (decompose && fabsf(Fp16(v)) >= th) is_outlier[i % p.cols] = 1;  // benign same-value race
  }
}

// One block per row: the absmax over elements that are not themselves outliers, then CA with
// the outlier columns zeroed (cpu_quant.cc's row stats loop).
__global__ void __launch_bounds__(256)
    Int8RowQuantKernel(QuantKernelParams p, const float* __restrict__ xr, const uint8_t* __restrict__ is_outlier,
                       int8_t* __restrict__ ca, float* __restrict__ sca) {
  __shared__ float warp_max[8];
  __shared__ float row_max;
  const int64_t r = blockIdx.x, k = p.cols;
  const bool decompose = p.threshold > 0.0f;
  const float th = Fp16(p.threshold);
  const float* xrow = xr + r * k;
  float amax = 0.0f;
  for (int64_t c = threadIdx.x; c < k; c += blockDim.x) {
    const float a = fabsf(Fp16(xrow[c]));
    if (!(decompose && a >= th)) amax = fmaxf(amax, a);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(gemm_device::kFullMask, amax, o));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = amax;
  __syncthreads();
  if (threadIdx.x == 0) {
    float v = 0.0f;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) v = fmaxf(v, warp_max[w]);
    row_max = v;
    sca[r] = v;
  }
  __syncthreads();
  const float scale = __fmul_rn(__fdiv_rn(1.0f, row_max), 127.0f);  // torch: 127.0 / t
  int8_t* car = ca + r * k;
  for (int64_t c = threadIdx.x; c < k; c += blockDim.x) {
    const float a16 = Fp16(xrow[c]);
    const bool zeroed = decompose && fabsf(a16) >= th;
    car[c] = is_outlier[c] ? int8_t{0} : RoundToInt8(__fmul_rn(zeroed ? 0.0f : a16, scale));
  }
}

// One block of 1024: the flagged columns in increasing order (the order the CPU sums them).
__global__ void __launch_bounds__(1024)
    Int8CompactKernel(const uint8_t* __restrict__ is_outlier, int64_t k, int32_t* __restrict__ outliers,
                      int32_t* __restrict__ num_outliers) {
  __shared__ int warp_count[32];
  __shared__ int warp_offset[32];
  __shared__ int running;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  if (tid == 0) running = 0;
  __syncthreads();
  for (int64_t base = 0; base < k; base += 1024) {
    const int64_t c = base + tid;
    const bool flag = c < k && is_outlier[c] != 0;
    const unsigned ballot = __ballot_sync(gemm_device::kFullMask, flag);
    if (lane == 0) warp_count[warp] = __popc(ballot);
    __syncthreads();
    if (tid == 0) {
      int acc = running;
      for (int w = 0; w < 32; ++w) {
        warp_offset[w] = acc;
        acc += warp_count[w];
      }
      running = acc;
    }
    __syncthreads();
    if (flag) outliers[warp_offset[warp] + __popc(ballot & ((1u << lane) - 1u))] = static_cast<int32_t>(c);
    __syncthreads();  // warp_count/offset are rewritten next round
  }
  if (tid == 0) *num_outliers = running;
}

// One warp per output j, rows [row_base + 8 * blockIdx.y, +8): int32 dot, rescale, bias,
// rounding, then the outlier columns against the dequantized weight, summed in column order.
template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    Int8DotKernel(QuantKernelParams p, Int8Scratch s, const void* __restrict__ bias, GemmDType bt,
                  float* __restrict__ out,  // [m, rows]
                  int64_t m, int64_t row_base) {
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const int64_t r0 = row_base + static_cast<int64_t>(blockIdx.y) * kGemvMaxRows;
  if (j >= p.rows || r0 >= m) return;
  const int64_t k = p.cols, n = p.rows;
  const int mt = static_cast<int>(m - r0 < kGemvMaxRows ? m - r0 : kGemvMaxRows);
  const int8_t* wr = p.weight + j * k;
  int acc[kGemvMaxRows];
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = 0;
  if constexpr (kVec) {
    const int64_t nvec = k / 16;
    const int4* wv = reinterpret_cast<const int4*>(wr);
    for (int64_t v = lane; v < nvec; v += 32) {
      const int4 w4 = __ldg(wv + v);
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < mt) {
          const int4 a4 = reinterpret_cast<const int4*>(s.ca + (r0 + r) * k)[v];
          acc[r] = __dp4a(a4.x, w4.x, acc[r]);
          acc[r] = __dp4a(a4.y, w4.y, acc[r]);
          acc[r] = __dp4a(a4.z, w4.z, acc[r]);
          acc[r] = __dp4a(a4.w, w4.w, acc[r]);
        }
      }
    }
  } else {
    for (int64_t i = lane; i < k; i += 32) {
      const int wi = wr[i];
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < mt) acc[r] += static_cast<int>(s.ca[(r0 + r) * k + i]) * wi;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = WarpSumInt(acc[r]);
  const GemmDType cd = p.compute;
  const float scb = p.scb[j];
  const int nout = *s.num_outliers;
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) {
    if (lane != r || r >= mt) continue;  // lane r finishes row r0 + r
    const int64_t row = r0 + r;
    float v = __fmul_rn(__fmul_rn(static_cast<float>(acc[r]), __fmul_rn(s.sca[row], scb)), kMmDequantScale);
    if (bias != nullptr) v = __fadd_rn(v, RoundTo(LoadFloat(bias, bt, j), cd));
    v = RoundTo(v, cd);
    if (nout > 0) {
      float sub = 0.0f;
      for (int o = 0; o < nout; ++o) {
        const int32_t c = s.outliers[o];
        const float deq = RoundTo(__fmul_rn(__fmul_rn(static_cast<float>(wr[c]), scb), kInv127), cd);
        sub = __fadd_rn(sub, __fmul_rn(s.xr[row * k + c], deq));
      }
      v = RoundTo(__fadd_rn(v, sub), cd);
    }
    out[row * n + j] = v;
  }
}

}  // namespace

cudaError_t LaunchInt8Matmul(const QuantKernelParams& p, const float* x, const Int8Scratch& s, const void* bias,
                             GemmDType bt, float* out, int64_t m, cudaStream_t stream) {
  if (m <= 0 || p.rows <= 0) return cudaSuccess;
  const int64_t k = p.cols;
  if (cudaError_t e = cudaMemsetAsync(s.is_outlier, 0, static_cast<size_t>(k), stream); e != cudaSuccess) return e;
  Int8RoundFlagKernel<<<GridFor(m * k, 256), 256, 0, stream>>>(x, p, s.xr, s.is_outlier, m);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  for (int64_t r = 0; r < m; r += 65535) {  // grid.x of the row kernel; rows beyond in later launches
    const int64_t rows = m - r < 65535 ? m - r : 65535;
    Int8RowQuantKernel<<<static_cast<unsigned>(rows), 256, 0, stream>>>(p, s.xr + r * k, s.is_outlier,
                                                                        s.ca + r * k, s.sca + r);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  Int8CompactKernel<<<1, 1024, 0, stream>>>(s.is_outlier, k, s.outliers, s.num_outliers);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  const bool vec = k % 16 == 0 && reinterpret_cast<uintptr_t>(p.weight) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(s.ca) % 16 == 0;
  const unsigned gx = static_cast<unsigned>((p.rows + kWarps - 1) / kWarps);
  constexpr int64_t kRowsPerLaunch = kGemvMaxRows * 65535;  // grid.y limit
  for (int64_t base = 0; base < m; base += kRowsPerLaunch) {
    const int64_t rows = m - base < kRowsPerLaunch ? m - base : kRowsPerLaunch;
    const dim3 grid(gx, static_cast<unsigned>((rows + kGemvMaxRows - 1) / kGemvMaxRows));
    if (vec) {
      Int8DotKernel<true><<<grid, kThreads, 0, stream>>>(p, s, bias, bt, out, m, base);
    } else {
      Int8DotKernel<false><<<grid, kThreads, 0, stream>>>(p, s, bias, bt, out, m, base);
    }
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace kiln::kernels::cuda
