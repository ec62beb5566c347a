// Quantized matmul kernels: fused dequantize-in-the-dot GEMVs for decode (bnb 4-bit, GPTQ,
// AWQ), a row dequantizer feeding cuBLASLt for larger m, and LLM.int8 in the exact structure of
// cpu_quant.cc (row-wise int8 quantization of x, int32 dot, int8_mm_dequant, outlier columns in
// higher precision). Roundings follow the CPU reference: x, each dequantized weight, the bias
// and the output are rounded to the compute dtype; accumulation is fp32. Where the reference's
// fp32 operation order matters (LLM.int8 rescaling) the intrinsics __fmul_rn/__fadd_rn keep
// nvcc from contracting into FMAs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_gemm_device.h"
#include "kernels/cuda/cuda_quant_launch.h"

namespace kiln::kernels::cuda {
namespace {

using gemm_device::GridFor;
using gemm_device::LoadFloat;
using gemm_device::RoundTo;
using gemm_device::WarpSum;
using gemm_device::WarpSumInt;

constexpr int kWarps = 8;  // row-major kernels: one warp per output row of W
constexpr int kThreads = kWarps * 32;
constexpr int64_t kSmemXMaxBytes = 46 * 1024;  // xr in shared memory up to this size
constexpr int kGptqSlices = 8;                 // column-packed kernels: k split over threadIdx.y
constexpr int kAwqSlices = 4;
// int8_mm_dequant's 1/(127*127) as bitsandbytes writes it, and int8_vectorwise_dequant's 1/127.
constexpr float kMmDequantScale = 6.200124e-05f;
constexpr float kInv127 = 7.874015718698502e-3f;

__device__ __forceinline__ float Fp16(float v) { return __half2float(__float2half_rn(v)); }

__device__ __forceinline__ float ScaleAt(const QuantKernelParams& p, int64_t i) {
  return p.scales_f16 ? __half2float(static_cast<const __half*>(p.scales)[i]) : static_cast<const float*>(p.scales)[i];
}

// AWQ keeps output o of an 8-block at nibble (o % 2) * 4 + o / 2 (AWQ_REVERSE_ORDER).
__device__ __forceinline__ int AwqShift(int o) { return 4 * ((o % 2) * 4 + o / 2); }

// The dequantized weight W[j, k] rounded to the compute dtype (the reference's dequantize).
__device__ __forceinline__ float DequantAt(const QuantKernelParams& p, int64_t j, int64_t k) {
  switch (p.kind) {
    case QuantKind::kBnb4: {
      const int64_t e = j * p.cols + k;
      const uint8_t byte = p.packed[e >> 1];
      const int nib = (e & 1) ? (byte & 0xF) : (byte >> 4);
      return RoundTo(p.code[nib] * p.absmax[e / p.blocksize], p.compute);
    }
    case QuantKind::kGptq: {
      const int pack = 32 / p.bits;
      const uint32_t mask = (1u << p.bits) - 1u;
      const int64_t g = p.g_idx[k];
      const auto qw = static_cast<uint32_t>(p.qweight[(k / pack) * p.rows + j]);
      const int q = static_cast<int>((qw >> ((k % pack) * p.bits)) & mask);
      const auto zw = static_cast<uint32_t>(p.qzeros[g * (p.rows / pack) + j / pack]);
      const int z = static_cast<int>((zw >> ((j % pack) * p.bits)) & mask) + p.zero_offset;
      return RoundTo(ScaleAt(p, g * p.rows + j) * static_cast<float>(q - z), p.compute);
    }
    case QuantKind::kAwq: {
      const int64_t g = k / p.group_size;
      const int shift = AwqShift(static_cast<int>(j % 8));
      const int q = static_cast<int>((static_cast<uint32_t>(p.qweight[k * (p.rows / 8) + j / 8]) >> shift) & 0xFu);
      const int z = static_cast<int>((static_cast<uint32_t>(p.qzeros[g * (p.rows / 8) + j / 8]) >> shift) & 0xFu);
      return RoundTo(ScaleAt(p, g * p.rows + j) * static_cast<float>(q - z), p.compute);
    }
    case QuantKind::kInt8:
      return RoundTo(__fmul_rn(__fmul_rn(static_cast<float>(p.weight[j * p.cols + k]), p.scb[j]), kInv127), p.compute);
  }
  return 0.0f;
}

__global__ void RoundKernel(const float* __restrict__ x, float* __restrict__ xr, GemmDType cd, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    xr[i] = RoundTo(x[i], cd);
  }
}

// ---- bnb 4-bit: one warp per output row j (W is row-major in nibbles) ----------------------
// kVec: cols % 32 == 0, blocksize % 32 == 0 and packed 16-byte aligned, so each 16-byte load
// holds 32 elements of one absmax block.
template <bool kVec, bool kSmemX>
__global__ void __launch_bounds__(kThreads)
    Bnb4GemvKernel(QuantKernelParams p,
                   const float* __restrict__ xr,  // [m, cols]
                   const void* __restrict__ bias, GemmDType bt,
                   float* __restrict__ out,       // [m, rows]
                   int m) {
  extern __shared__ float4 bnb4_smem[];  // [m, cols] when kSmemX
  __shared__ float code[16];
  const int64_t k = p.cols, n = p.rows;
  if (threadIdx.x < 16) code[threadIdx.x] = p.code[threadIdx.x];
  const float* xp = xr;
  if constexpr (kSmemX) {
    float* xs = reinterpret_cast<float*>(bnb4_smem);
    for (int64_t i = threadIdx.x; i < m * k; i += blockDim.x) xs[i] = xr[i];
    xp = xs;
  }
  __syncthreads();
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (j >= n) return;  // no barrier below
  const GemmDType cd = p.compute;
  float acc[kGemvMaxRows];
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = 0.0f;
  if constexpr (kVec) {
    const uint4* pv = reinterpret_cast<const uint4*>(p.packed + (j * k) / 2);
    const int64_t nvec = k / 32;
    for (int64_t v = lane; v < nvec; v += 32) {
      const uint4 raw = __ldg(pv + v);
      const float scale = __ldg(p.absmax + (j * k + v * 32) / p.blocksize);
      const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
      float wf[32];
#pragma unroll
      for (int b = 0; b < 16; ++b) {
        const uint32_t byte = (words[b / 4] >> (8 * (b % 4))) & 0xFFu;
        wf[2 * b] = RoundTo(code[byte >> 4] * scale, cd);  // element 2b: high nibble
        wf[2 * b + 1] = RoundTo(code[byte & 0xFu] * scale, cd);
      }
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < m) {
          const float* xrow = xp + r * k + v * 32;
#pragma unroll
          for (int e = 0; e < 32; ++e) acc[r] += xrow[e] * wf[e];
        }
      }
    }
  } else {
    for (int64_t i = lane; i < k; i += 32) {
      const int64_t e = j * k + i;
      const uint8_t byte = p.packed[e >> 1];
      const int nib = (e & 1) ? (byte & 0xF) : (byte >> 4);
      const float wv = RoundTo(code[nib] * p.absmax[e / p.blocksize], cd);
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < m) acc[r] += xp[r * k + i] * wv;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = WarpSum(acc[r]);
  if (lane == 0) {
    const float b = bias != nullptr ? RoundTo(LoadFloat(bias, bt, j), cd) : 0.0f;
    for (int r = 0; r < m; ++r) out[r * n + j] = RoundTo(acc[r] + b, cd);
  }
}

// ---- GPTQ: qweight packs along k, so a thread owns output column n (coalesced across a warp)
// and the k range is split over threadIdx.y, reduced in a fixed order through shared memory.
template <int kBits>
__global__ void __launch_bounds__(32 * kGptqSlices)
    GptqGemvKernel(QuantKernelParams p,
                   const float* __restrict__ xr,  // [m, cols]
                   const void* __restrict__ bias, GemmDType bt,
                   float* __restrict__ out,       // [m, rows]
                   int m) {
  constexpr int kPack = 32 / kBits;
  constexpr uint32_t kMask = (1u << kBits) - 1u;
  __shared__ float red[kGptqSlices][kGemvMaxRows][32];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t rows = p.rows, k = p.cols;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * 32 + tx;
  const GemmDType cd = p.compute;
  float acc[kGemvMaxRows];
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = 0.0f;
  if (n < rows) {
    const int64_t nwords = k / kPack;
    const int64_t per = (nwords + kGptqSlices - 1) / kGptqSlices;
    const int64_t w0 = ty * per, w1 = min(nwords, w0 + per);
    const int zshift = static_cast<int>(n % kPack) * kBits;
    const int64_t zcols = rows / kPack;
    int64_t last_g = -1;
    float scale = 0.0f;
    int z = 0;
    for (int64_t kw = w0; kw < w1; ++kw) {
      const auto q = static_cast<uint32_t>(__ldg(p.qweight + kw * rows + n));
#pragma unroll
      for (int i = 0; i < kPack; ++i) {
        const int64_t kk = kw * kPack + i;
        const int64_t g = __ldg(p.g_idx + kk);
        if (g != last_g) {
          scale = ScaleAt(p, g * rows + n);
          z = static_cast<int>((static_cast<uint32_t>(__ldg(p.qzeros + g * zcols + n / kPack)) >> zshift) & kMask) +
              p.zero_offset;
          last_g = g;
        }
        const int qv = static_cast<int>((q >> (i * kBits)) & kMask);
        const float wv = RoundTo(scale * static_cast<float>(qv - z), cd);
#pragma unroll
        for (int r = 0; r < kGemvMaxRows; ++r) {
          if (r < m) acc[r] += xr[r * k + kk] * wv;
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) red[ty][r][tx] = acc[r];
  __syncthreads();
  if (ty == 0 && n < rows) {
    const float b = bias != nullptr ? RoundTo(LoadFloat(bias, bt, n), cd) : 0.0f;
    for (int r = 0; r < m; ++r) {
      float s = 0.0f;
#pragma unroll
      for (int t = 0; t < kGptqSlices; ++t) s += red[t][r][tx];
      out[r * rows + n] = RoundTo(s + b, cd);
    }
  }
}

// ---- AWQ: qweight [cols, rows/8], a thread owns one word column (8 outputs) -----------------
__global__ void __launch_bounds__(32 * kAwqSlices)
    AwqGemvKernel(QuantKernelParams p,
                  const float* __restrict__ xr,  // [m, cols]
                  const void* __restrict__ bias, GemmDType bt,
                  float* __restrict__ out,       // [m, rows]
                  int m) {
  __shared__ float red[kAwqSlices][kGemvMaxRows][8][32];  // 32 KiB
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t rows = p.rows, k = p.cols, wcols = rows / 8;
  const int64_t wc = static_cast<int64_t>(blockIdx.x) * 32 + tx;
  const GemmDType cd = p.compute;
  float acc[kGemvMaxRows][8];
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) {
#pragma unroll
    for (int o = 0; o < 8; ++o) acc[r][o] = 0.0f;
  }
  if (wc < wcols) {
    const int64_t per = (k + kAwqSlices - 1) / kAwqSlices;
    const int64_t k0 = ty * per, k1 = min(k, k0 + per);
    int64_t last_g = -1;
    float sc[8];
    int zo[8];
#pragma unroll
    for (int o = 0; o < 8; ++o) {
      sc[o] = 0.0f;
      zo[o] = 0;
    }
    for (int64_t kk = k0; kk < k1; ++kk) {
      const int64_t g = kk / p.group_size;
      if (g != last_g) {
        const auto zw = static_cast<uint32_t>(__ldg(p.qzeros + g * wcols + wc));
#pragma unroll
        for (int o = 0; o < 8; ++o) {
          sc[o] = ScaleAt(p, g * rows + wc * 8 + o);
          zo[o] = static_cast<int>((zw >> AwqShift(o)) & 0xFu);
        }
        last_g = g;
      }
      const auto q = static_cast<uint32_t>(__ldg(p.qweight + kk * wcols + wc));
#pragma unroll
      for (int o = 0; o < 8; ++o) {
        const float wv = RoundTo(sc[o] * static_cast<float>(static_cast<int>((q >> AwqShift(o)) & 0xFu) - zo[o]), cd);
#pragma unroll
        for (int r = 0; r < kGemvMaxRows; ++r) {
          if (r < m) acc[r][o] += xr[r * k + kk] * wv;
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) {
#pragma unroll
    for (int o = 0; o < 8; ++o) red[ty][r][o][tx] = acc[r][o];
  }
  __syncthreads();
  if (ty == 0 && wc < wcols) {
    for (int o = 0; o < 8; ++o) {
      const int64_t n = wc * 8 + o;
      const float b = bias != nullptr ? RoundTo(LoadFloat(bias, bt, n), cd) : 0.0f;
      for (int r = 0; r < m; ++r) {
        float s = 0.0f;
#pragma unroll
        for (int t = 0; t < kAwqSlices; ++t) s += red[t][r][o][tx];
        out[r * rows + n] = RoundTo(s + b, cd);
      }
    }
  }
}

__global__ void DequantRowsKernel(QuantKernelParams p, int64_t row0, int64_t num_rows, void* __restrict__ dst) {
  const int64_t total = num_rows * p.cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = DequantAt(p, row0 + i / p.cols, i % p.cols);
    switch (p.compute) {
      case GemmDType::kF16: static_cast<__half*>(dst)[i] = __float2half_rn(v); break;
      case GemmDType::kBF16: static_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(v); break;
      case GemmDType::kF32: static_cast<float*>(dst)[i] = v; break;
    }
  }
}

// ---- LLM.int8 -------------------------------------------------------------------------------

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

cudaError_t LaunchRoundToCompute(const float* x, float* xr, GemmDType compute, int64_t count, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  RoundKernel<<<GridFor(count, 256), 256, 0, stream>>>(x, xr, compute, count);
  return cudaGetLastError();
}

cudaError_t LaunchQuantGemv(const QuantKernelParams& p, const float* xr, const void* bias, GemmDType bt, float* out,
                            int64_t m, cudaStream_t stream) {
  if (m <= 0 || p.rows <= 0) return cudaSuccess;
  if (m > kGemvMaxRows) return cudaErrorInvalidValue;
  const int mi = static_cast<int>(m);
  switch (p.kind) {
    case QuantKind::kBnb4: {
      const bool vec = p.cols % 32 == 0 && p.blocksize % 32 == 0 && reinterpret_cast<uintptr_t>(p.packed) % 16 == 0;
      const int64_t x_bytes = m * p.cols * 4;
      const bool smem_x = x_bytes <= kSmemXMaxBytes;
      const size_t smem = smem_x ? static_cast<size_t>(x_bytes) : 0;
      const dim3 grid(static_cast<unsigned>((p.rows + kWarps - 1) / kWarps));
      if (vec && smem_x) {
        Bnb4GemvKernel<true, true><<<grid, kThreads, smem, stream>>>(p, xr, bias, bt, out, mi);
      } else if (vec) {
        Bnb4GemvKernel<true, false><<<grid, kThreads, 0, stream>>>(p, xr, bias, bt, out, mi);
      } else if (smem_x) {
        Bnb4GemvKernel<false, true><<<grid, kThreads, smem, stream>>>(p, xr, bias, bt, out, mi);
      } else {
        Bnb4GemvKernel<false, false><<<grid, kThreads, 0, stream>>>(p, xr, bias, bt, out, mi);
      }
      return cudaGetLastError();
    }
    case QuantKind::kGptq: {
      const dim3 grid(static_cast<unsigned>((p.rows + 31) / 32)), block(32, kGptqSlices);
      switch (p.bits) {
        case 2: GptqGemvKernel<2><<<grid, block, 0, stream>>>(p, xr, bias, bt, out, mi); break;
        case 4: GptqGemvKernel<4><<<grid, block, 0, stream>>>(p, xr, bias, bt, out, mi); break;
        case 8: GptqGemvKernel<8><<<grid, block, 0, stream>>>(p, xr, bias, bt, out, mi); break;
        default: return cudaErrorInvalidValue;
      }
      return cudaGetLastError();
    }
    case QuantKind::kAwq: {
      const dim3 grid(static_cast<unsigned>((p.rows / 8 + 31) / 32)), block(32, kAwqSlices);
      AwqGemvKernel<<<grid, block, 0, stream>>>(p, xr, bias, bt, out, mi);
      return cudaGetLastError();
    }
    case QuantKind::kInt8: return cudaErrorInvalidValue;  // LaunchInt8Matmul
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchDequantRows(const QuantKernelParams& p, int64_t row0, int64_t num_rows, void* dst,
                              cudaStream_t stream) {
  if (num_rows <= 0 || p.cols <= 0) return cudaSuccess;
  DequantRowsKernel<<<GridFor(num_rows * p.cols, 256), 256, 0, stream>>>(p, row0, num_rows, dst);
  return cudaGetLastError();
}

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
