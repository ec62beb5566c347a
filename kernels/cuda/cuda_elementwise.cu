// Elementwise, norm, RoPE and gather kernels (launchers in cuda_elementwise_launch.h).
// Row ops (norms, gathers, RoPE) run one block per row, looping over rows when there are more
// rows than blocks; reductions are warp shuffles plus one shared-memory step. F32 activations
// move as float4 when every pointer involved is 16-byte aligned and the row length is a
// multiple of 4. No heavy headers here (toolchain.md §7).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_elementwise_launch.h"

namespace kiln::kernels::cuda {
namespace {

constexpr int64_t kMaxGrid = int64_t{1} << 30;  // grid.x limit is 2^31-1; rows/elements loop
// Launch bounds make the compiler keep every row kernel within 64 registers per thread, so a
// 1024-thread block always launches.
constexpr int kMaxRowThreads = 1024;
constexpr int kElementThreads = 256;

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// A warp-uniform dtype switch, for the optional LayerNorm bias.
__device__ __forceinline__ float LoadAny(const void* p, FloatType type, int64_t i) {
  switch (type) {
    case FloatType::kF32: return static_cast<const float*>(p)[i];
    case FloatType::kF16: return __half2float(static_cast<const __half*>(p)[i]);
    case FloatType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  }
  return 0.0f;
}

// V consecutive floats starting at element j * V (V = 4: one 16-byte access).
template <int V>
__device__ __forceinline__ void LoadVec(const float* p, int64_t j, float (&v)[V]) {
  if constexpr (V == 4) {
    const float4 t = reinterpret_cast<const float4*>(p)[j];
    v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
  } else {
    v[0] = p[j];
  }
}
template <int V>
__device__ __forceinline__ void StoreVec(float* p, int64_t j, const float (&v)[V]) {
  if constexpr (V == 4) {
    reinterpret_cast<float4*>(p)[j] = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    p[j] = v[0];
  }
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of v over the block (blockDim.x a multiple of 32, <= 1024), returned to every thread.
// `shared` has 33 floats; the leading barrier lets consecutive calls reuse it.
__device__ float BlockSum(float v, float* shared) {
  v = WarpSum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int num_warps = blockDim.x >> 5;
    float w = lane < num_warps ? shared[lane] : 0.0f;
    w = WarpSum(w);
    if (lane == 0) shared[32] = w;
  }
  __syncthreads();
  return shared[32];
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Threads for a row of `n` work items: a multiple of 32 in [32, 1024].
int RowThreads(int64_t n) {
  const int64_t rounded = (n + 31) / 32 * 32;
  return static_cast<int>(std::clamp<int64_t>(rounded, 32, kMaxRowThreads));
}
unsigned RowGrid(int64_t rows) { return static_cast<unsigned>(std::min(rows, kMaxGrid)); }
unsigned ElementGrid(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kElementThreads - 1) / kElementThreads, 1, 65535 * 8));
}

// ---- Convert ----------------------------------------------------------------------------

template <typename S, typename D>
__global__ void __launch_bounds__(kElementThreads) ConvertKernel(const S* src, D* dst, int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    dst[i] = FromFloat<D>(ToFloat(src[i]));
  }
}

template <typename S>
cudaError_t ConvertFrom(cudaStream_t stream, const S* src, void* dst, FloatType dst_type,
                        int64_t n) {
  const unsigned grid = ElementGrid(n);
  switch (dst_type) {
    case FloatType::kF32:
      ConvertKernel<<<grid, kElementThreads, 0, stream>>>(src, static_cast<float*>(dst), n);
      return cudaGetLastError();
    case FloatType::kF16:
      ConvertKernel<<<grid, kElementThreads, 0, stream>>>(src, static_cast<__half*>(dst), n);
      return cudaGetLastError();
    case FloatType::kBF16:
      ConvertKernel<<<grid, kElementThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst), n);
      return cudaGetLastError();
  }
  return cudaErrorInvalidValue;
}

// ---- GatherRows / Embedding ---------------------------------------------------------------

template <typename T, int V>
__global__ void __launch_bounds__(kMaxRowThreads) GatherKernel(const T* table, const int32_t* ids, float* out, int64_t n,
                             int64_t dim) {
  const int64_t nv = dim / V;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const T* src = table + static_cast<int64_t>(ids[i]) * dim;
    float* dst = out + i * dim;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      if constexpr (V == 4) {
        reinterpret_cast<float4*>(dst)[j] = reinterpret_cast<const float4*>(src)[j];
      } else {
        dst[j] = ToFloat(src[j]);
      }
    }
  }
}

template <typename T>
cudaError_t GatherTyped(cudaStream_t stream, const T* table, const int32_t* ids, float* out,
                        int64_t n, int64_t dim) {
  if constexpr (sizeof(T) == 4) {
    if (dim % 4 == 0 && Aligned16(table) && Aligned16(out)) {
      GatherKernel<T, 4><<<RowGrid(n), RowThreads(dim / 4), 0, stream>>>(table, ids, out, n, dim);
      return cudaGetLastError();
    }
  }
  GatherKernel<T, 1><<<RowGrid(n), RowThreads(dim), 0, stream>>>(table, ids, out, n, dim);
  return cudaGetLastError();
}

// ---- RmsNorm / AddRmsNorm -----------------------------------------------------------------

template <typename W, int V>
__global__ void __launch_bounds__(kMaxRowThreads) RmsNormKernel(float* residual, const float* x, const W* weight, float eps,
                              float* out, int64_t m, int64_t d) {
  __shared__ float shared[33];
  const int64_t nv = d / V;
  for (int64_t row = blockIdx.x; row < m; row += gridDim.x) {
    const float* xr = x + row * d;
    float* rr = residual != nullptr ? residual + row * d : nullptr;
    float* orow = out + row * d;
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      float v[V];
      LoadVec<V>(xr, j, v);
      if (rr != nullptr) {
        float r[V];
        LoadVec<V>(rr, j, r);
#pragma unroll
        for (int k = 0; k < V; ++k) v[k] += r[k];
        StoreVec<V>(rr, j, v);
      }
#pragma unroll
      for (int k = 0; k < V; ++k) sum += v[k] * v[k];
    }
    sum = BlockSum(sum, shared);
    const float inv = 1.0f / sqrtf(sum / static_cast<float>(d) + eps);
    // Each thread re-reads only the elements it wrote (same j), so out may alias x or residual.
    const float* src = rr != nullptr ? rr : xr;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      float v[V];
      LoadVec<V>(src, j, v);
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = ToFloat(weight[j * V + k]) * (v[k] * inv);
      StoreVec<V>(orow, j, v);
    }
  }
}

template <typename W>
cudaError_t RmsNormTyped(cudaStream_t stream, float* residual, const float* x, const W* weight,
                         float eps, float* out, int64_t m, int64_t d) {
  const bool vec = d % 4 == 0 && Aligned16(x) && Aligned16(out) &&
                   (residual == nullptr || Aligned16(residual));
  if (vec) {
    RmsNormKernel<W, 4><<<RowGrid(m), RowThreads(d / 4), 0, stream>>>(residual, x, weight, eps,
                                                                       out, m, d);
  } else {
    RmsNormKernel<W, 1><<<RowGrid(m), RowThreads(d), 0, stream>>>(residual, x, weight, eps, out,
                                                                   m, d);
  }
  return cudaGetLastError();
}

// ---- LayerNorm ----------------------------------------------------------------------------

template <typename W, int V>
__global__ void __launch_bounds__(kMaxRowThreads) LayerNormKernel(const float* x, const W* weight, const void* bias,
                                FloatType bias_type, float eps, float* out, int64_t m, int64_t d) {
  __shared__ float shared[33];
  const int64_t nv = d / V;
  for (int64_t row = blockIdx.x; row < m; row += gridDim.x) {
    const float* xr = x + row * d;
    float* orow = out + row * d;
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      float v[V];
      LoadVec<V>(xr, j, v);
#pragma unroll
      for (int k = 0; k < V; ++k) sum += v[k];
    }
    const float mean = BlockSum(sum, shared) / static_cast<float>(d);
    float sq = 0.0f;
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      float v[V];
      LoadVec<V>(xr, j, v);
#pragma unroll
      for (int k = 0; k < V; ++k) sq += (v[k] - mean) * (v[k] - mean);
    }
    // BlockSum's barriers also order every read of x above before the writes below (aliasing).
    const float inv = 1.0f / sqrtf(BlockSum(sq, shared) / static_cast<float>(d) + eps);
    for (int64_t j = threadIdx.x; j < nv; j += blockDim.x) {
      float v[V];
      LoadVec<V>(xr, j, v);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const int64_t c = j * V + k;
        float y = (v[k] - mean) * inv * ToFloat(weight[c]);
        if (bias != nullptr) y += LoadAny(bias, bias_type, c);
        v[k] = y;
      }
      StoreVec<V>(orow, j, v);
    }
  }
}

template <typename W>
cudaError_t LayerNormTyped(cudaStream_t stream, const float* x, const W* weight, const void* bias,
                           FloatType bias_type, float eps, float* out, int64_t m, int64_t d) {
  if (d % 4 == 0 && Aligned16(x) && Aligned16(out)) {
    LayerNormKernel<W, 4><<<RowGrid(m), RowThreads(d / 4), 0, stream>>>(x, weight, bias, bias_type,
                                                                         eps, out, m, d);
  } else {
    LayerNormKernel<W, 1><<<RowGrid(m), RowThreads(d), 0, stream>>>(x, weight, bias, bias_type, eps,
                                                                     out, m, d);
  }
  return cudaGetLastError();
}

// ---- RoPE ---------------------------------------------------------------------------------

// One block per token; thread p handles pair (head p / half, index p % half).
__global__ void __launch_bounds__(kMaxRowThreads) RopeKernel(float* x, const int32_t* positions, const float* inv_freq,
                           float attention_scaling, int64_t t, int64_t heads, int64_t head_dim,
                           int64_t half) {
  const int64_t pairs = heads * half;
  for (int64_t token = blockIdx.x; token < t; token += gridDim.x) {
    const float pos = static_cast<float>(positions[token]);
    for (int64_t p = threadIdx.x; p < pairs; p += blockDim.x) {
      const int64_t h = p / half, j = p % half;
      float s, c;
      sincosf(pos * inv_freq[j], &s, &c);
      c *= attention_scaling;
      s *= attention_scaling;
      float* v = x + (token * heads + h) * head_dim;
      const float a = v[j], b = v[j + half];
      v[j] = a * c - b * s;
      v[j + half] = b * c + a * s;
    }
  }
}

// ---- Add / SiluMul / Gelu -----------------------------------------------------------------

template <BinaryOp kOp>
__device__ __forceinline__ float Apply(float a, float b) {
  if constexpr (kOp == BinaryOp::kAdd) {
    return a + b;
  } else if constexpr (kOp == BinaryOp::kSiluMul) {
    return a / (1.0f + expf(-a)) * b;
  } else if constexpr (kOp == BinaryOp::kGeluErf) {
    return 0.5f * a * (1.0f + erff(a * 0.70710678118654752440f));
  } else {
    constexpr float kSqrt2OverPi = 0.79788456080286535588f;
    return 0.5f * a * (1.0f + tanhf(kSqrt2OverPi * (a + 0.044715f * (a * a * a))));
  }
}

// Elements [0, 4 * n4) as float4 (n4 = 0 when the pointers are not 16-byte aligned), the rest
// one by one.
template <BinaryOp kOp>
__global__ void __launch_bounds__(kElementThreads) BinaryKernel(const float* a, const float* b, float* out, int64_t n, int64_t n4) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  for (int64_t i = first; i < n4; i += stride) {
    float va[4], vb[4];
    LoadVec<4>(a, i, va);
    LoadVec<4>(b, i, vb);
#pragma unroll
    for (int k = 0; k < 4; ++k) va[k] = Apply<kOp>(va[k], vb[k]);
    StoreVec<4>(out, i, va);
  }
  for (int64_t i = 4 * n4 + first; i < n; i += stride) out[i] = Apply<kOp>(a[i], b[i]);
}

template <BinaryOp kOp>
cudaError_t BinaryTyped(cudaStream_t stream, const float* a, const float* b, float* out,
                        int64_t n) {
  const int64_t n4 = Aligned16(a) && Aligned16(b) && Aligned16(out) ? n / 4 : 0;
  BinaryKernel<kOp><<<ElementGrid(n4 > 0 ? n4 : n), kElementThreads, 0, stream>>>(a, b, out, n, n4);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchConvert(cudaStream_t stream, const void* src, FloatType src_type, void* dst,
                          FloatType dst_type, int64_t n) {
  if (n == 0) return cudaSuccess;
  switch (src_type) {
    case FloatType::kF32:
      return ConvertFrom(stream, static_cast<const float*>(src), dst, dst_type, n);
    case FloatType::kF16:
      return ConvertFrom(stream, static_cast<const __half*>(src), dst, dst_type, n);
    case FloatType::kBF16:
      return ConvertFrom(stream, static_cast<const __nv_bfloat16*>(src), dst, dst_type, n);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchGatherRows(cudaStream_t stream, const void* table, FloatType table_type,
                             const int32_t* ids, float* out, int64_t n, int64_t dim) {
  if (n == 0 || dim == 0) return cudaSuccess;
  switch (table_type) {
    case FloatType::kF32:
      return GatherTyped(stream, static_cast<const float*>(table), ids, out, n, dim);
    case FloatType::kF16:
      return GatherTyped(stream, static_cast<const __half*>(table), ids, out, n, dim);
    case FloatType::kBF16:
      return GatherTyped(stream, static_cast<const __nv_bfloat16*>(table), ids, out, n, dim);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchRmsNorm(cudaStream_t stream, float* residual, const float* x, const void* weight,
                          FloatType weight_type, float eps, float* out, int64_t m, int64_t d) {
  if (m == 0 || d == 0) return cudaSuccess;
  switch (weight_type) {
    case FloatType::kF32:
      return RmsNormTyped(stream, residual, x, static_cast<const float*>(weight), eps, out, m, d);
    case FloatType::kF16:
      return RmsNormTyped(stream, residual, x, static_cast<const __half*>(weight), eps, out, m, d);
    case FloatType::kBF16:
      return RmsNormTyped(stream, residual, x, static_cast<const __nv_bfloat16*>(weight), eps, out,
                          m, d);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchLayerNorm(cudaStream_t stream, const float* x, const void* weight,
                            FloatType weight_type, const void* bias, FloatType bias_type,
                            float eps, float* out, int64_t m, int64_t d) {
  if (m == 0 || d == 0) return cudaSuccess;
  switch (weight_type) {
    case FloatType::kF32:
      return LayerNormTyped(stream, x, static_cast<const float*>(weight), bias, bias_type, eps, out,
                            m, d);
    case FloatType::kF16:
      return LayerNormTyped(stream, x, static_cast<const __half*>(weight), bias, bias_type, eps, out,
                            m, d);
    case FloatType::kBF16:
      return LayerNormTyped(stream, x, static_cast<const __nv_bfloat16*>(weight), bias, bias_type,
                            eps, out, m, d);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchRope(cudaStream_t stream, float* x, const int32_t* positions,
                       const float* inv_freq, float attention_scaling, int64_t t, int64_t heads,
                       int64_t head_dim, int64_t half) {
  if (t == 0 || heads == 0 || half == 0) return cudaSuccess;
  RopeKernel<<<RowGrid(t), RowThreads(heads * half), 0, stream>>>(
      x, positions, inv_freq, attention_scaling, t, heads, head_dim, half);
  return cudaGetLastError();
}

cudaError_t LaunchBinary(cudaStream_t stream, BinaryOp op, const float* a, const float* b,
                         float* out, int64_t n) {
  if (n == 0) return cudaSuccess;
  switch (op) {
    case BinaryOp::kAdd: return BinaryTyped<BinaryOp::kAdd>(stream, a, b, out, n);
    case BinaryOp::kSiluMul: return BinaryTyped<BinaryOp::kSiluMul>(stream, a, b, out, n);
    case BinaryOp::kGeluErf: return BinaryTyped<BinaryOp::kGeluErf>(stream, a, b, out, n);
    case BinaryOp::kGeluTanh: return BinaryTyped<BinaryOp::kGeluTanh>(stream, a, b, out, n);
  }
  return cudaErrorInvalidValue;
}

}  // namespace kiln::kernels::cuda
