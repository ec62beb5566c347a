// LoRA SGMV kernels (Punica-style shrink/expand over segments of rows sharing an adapter).
// Grids: x = segment, y = rank index (shrink) or output column block (expand), z = row chunk of
// the segment; every dimension is also covered by a stride loop, so grid limits never drop
// work. Segments without an adapter, and empty ones, return at once.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_gemm_device.h"
#include "kernels/cuda/cuda_lora_launch.h"

namespace kiln::kernels::cuda {
namespace {

constexpr int kShrinkWarps = 8;     // one rank index per warp
constexpr int kExpandThreads = 256;  // one output column per thread
constexpr int kRankChunk = 256;      // t values staged in shared memory at a time
constexpr unsigned kMaxGridYZ = 65535;

__global__ void __launch_bounds__(kShrinkWarps * 32)
    LoraShrinkKernel(LoraBatchDevice batch,
                     const float* __restrict__ x,  // [m, in]
                     int64_t in,
                     float* __restrict__ t) {      // [m, max_rank]
  const int s = static_cast<int>(blockIdx.x);
  const int32_t slot = batch.slot[s];
  if (slot < 0) return;
  const LoraPairDevice pair = batch.pairs[slot];
  const int64_t begin = batch.seg_start[s], end = batch.seg_start[s + 1];
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * kShrinkWarps + warp; i < pair.rank;
       i += static_cast<int64_t>(gridDim.y) * kShrinkWarps) {
    const float* arow = pair.a + i * in;
    for (int64_t row = begin + blockIdx.z; row < end; row += gridDim.z) {
      const float* xrow = x + row * in;
      float acc = 0.0f;
      for (int64_t c = lane; c < in; c += 32) acc += xrow[c] * arow[c];
      acc = gemm_device::WarpSum(acc);
      if (lane == 0) t[row * batch.max_rank + i] = acc;
    }
  }
}

__global__ void __launch_bounds__(kExpandThreads)
    LoraExpandKernel(LoraBatchDevice batch,
                     const float* __restrict__ t,  // [m, max_rank]
                     float* __restrict__ out,      // [m, out_dim]
                     int64_t out_dim) {
  __shared__ float ts[kRankChunk];
  const int s = static_cast<int>(blockIdx.x);
  const int32_t slot = batch.slot[s];
  if (slot < 0) return;  // uniform over the block: no barrier is skipped by some threads only
  const LoraPairDevice pair = batch.pairs[slot];
  const int64_t begin = batch.seg_start[s], end = batch.seg_start[s + 1];
  for (int64_t j0 = static_cast<int64_t>(blockIdx.y) * kExpandThreads; j0 < out_dim;
       j0 += static_cast<int64_t>(gridDim.y) * kExpandThreads) {
    const int64_t j = j0 + threadIdx.x;
    for (int64_t row = begin + blockIdx.z; row < end; row += gridDim.z) {
      float acc = 0.0f;
      for (int32_t r0 = 0; r0 < pair.rank; r0 += kRankChunk) {
        const int32_t chunk = pair.rank - r0 < kRankChunk ? pair.rank - r0 : kRankChunk;
        __syncthreads();  // the previous chunk's readers are done
        for (int i = static_cast<int>(threadIdx.x); i < chunk; i += blockDim.x) {
          ts[i] = t[row * batch.max_rank + r0 + i];
        }
        __syncthreads();
        if (j < out_dim) {
          const float* brow = pair.b + j * pair.rank + r0;
          for (int i = 0; i < chunk; ++i) acc += ts[i] * brow[i];
        }
      }
      if (j < out_dim) out[row * out_dim + j] += pair.scale * acc;
    }
  }
}

unsigned Clamp(int64_t v) { return static_cast<unsigned>(v < 1 ? 1 : v > kMaxGridYZ ? kMaxGridYZ : v); }

}  // namespace

cudaError_t LaunchLoraShrink(const LoraBatchDevice& batch, const float* x, int64_t in, float* t,
                             cudaStream_t stream) {
  if (batch.num_segments <= 0 || batch.max_rank <= 0 || batch.max_seg_rows <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(batch.num_segments), Clamp((batch.max_rank + kShrinkWarps - 1) / kShrinkWarps),
                  Clamp(batch.max_seg_rows));
  LoraShrinkKernel<<<grid, kShrinkWarps * 32, 0, stream>>>(batch, x, in, t);
  return cudaGetLastError();
}

cudaError_t LaunchLoraExpand(const LoraBatchDevice& batch, const float* t, float* out, int64_t out_dim,
                             cudaStream_t stream) {
  if (batch.num_segments <= 0 || batch.max_rank <= 0 || batch.max_seg_rows <= 0 || out_dim <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(batch.num_segments), Clamp((out_dim + kExpandThreads - 1) / kExpandThreads),
                  Clamp(batch.max_seg_rows));
  LoraExpandKernel<<<grid, kExpandThreads, 0, stream>>>(batch, t, out, out_dim);
  return cudaGetLastError();
}

}  // namespace kiln::kernels::cuda
