// Quantized matmul kernels: fused dequantize-in-the-dot GEMVs for decode (bnb 4-bit, GPTQ,
// AWQ), a row dequantizer feeding cuBLASLt for larger m, (LLM.int8 is in
// cuda_quant_int8.cu). Roundings follow the CPU reference: x, each dequantized weight, the bias
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
using gemm_device::kInv127;
using gemm_device::LoadFloat;
using gemm_device::RoundTo;
using gemm_device::WarpSum;

constexpr int kWarps = 8;  // row-major kernels: one warp per output row of W
constexpr int kThreads = kWarps * 32;
constexpr int64_t kSmemXMaxBytes = 46 * 1024;  // xr in shared memory up to this size
constexpr int kGptqSlices = 8;                 // column-packed kernels: k split over threadIdx.y
constexpr int kAwqSlices = 4;

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

}  // namespace kiln::kernels::cuda
