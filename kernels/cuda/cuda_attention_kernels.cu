// Paged attention kernels (fp32 end to end, online softmax with a running max) and the KV
// scatter. Plans and metadata come from cuda_attention.cc; see cuda_attention_launch.h for
// the layouts. The cache is F32, so the math runs on CUDA cores: TF32 tensor cores would
// break parity with the CPU reference.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_attention_launch.h"

namespace kiln::kernels::cuda {
namespace {

constexpr int kThreads = 256;  // tiled kernel: 16 row groups (ty) x 16 column lanes (tx)
constexpr int kGenericThreads = 128;

template <int D>
constexpr int KvTile() {
  return D <= 64 ? 64 : 32;  // keeps the 64-row tile under ~80 KiB of shared memory
}

// Shared memory of the tiled kernel, in floats: Q tile [M][D + 4] (the +4 keeps the two row
// groups of a warp on different banks), K tile transposed [D][N + 1] (conflict-free both when
// a warp stores one key's head_dim and when it reads 16 keys of one dim), V tile [N][D] and
// the probabilities [M][N + 1].
template <int D, int M>
struct TileLayout {
  static constexpr int kN = KvTile<D>();
  static constexpr int kQStride = D + 4;
  static constexpr int kKtStride = kN + 1;
  static constexpr int kPStride = kN + 1;
  static constexpr int kQ = 0;
  static constexpr int kKt = kQ + M * kQStride;
  static constexpr int kV = kKt + D * kKtStride;
  static constexpr int kP = kV + kN * D;
  static constexpr int kFloats = kP + M * kPStride;
  static constexpr size_t kBytes = static_cast<size_t>(kFloats) * sizeof(float);
};

__device__ __forceinline__ float HalfWarpMax(float v) {
  for (int off = 8; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float HalfWarpSum(float v) {
  for (int off = 8; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// One CTA = one AttentionItem: M rows (token, head-in-group) of one sequence and kv head
// against keys [kv_begin, kv_end), read N at a time through the block table. Thread (ty, tx)
// owns rows ty + 16 i (i < M / 16), score columns tx + 16 j and output dims tx + 16 c; the 16
// lanes of a row group are one half-warp, so row max/sum are half-warp shuffles.
template <int D, int M>
__global__ void __launch_bounds__(kThreads)
    TiledAttentionKernel(AttentionLaunchParams p, const AttentionItem* __restrict__ items) {
  using L = TileLayout<D, M>;
  constexpr int N = L::kN;
  constexpr int RM = M / 16;
  constexpr int CN = N / 16;
  constexpr int CD = D / 16;
  extern __shared__ float smem[];
  float* sq = smem + L::kQ;
  float* skt = smem + L::kKt;
  float* sv = smem + L::kV;
  float* sp = smem + L::kP;
  __shared__ int32_t row_pos[M];  // absolute query position, -1 for rows past the sequence
  __shared__ int64_t row_off[M];  // float offset of the row in q / out

  const AttentionItem item = items[blockIdx.x];
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % 16, ty = tid / 16, warp = tid / 32, lane = tid % 32;
  const int hd = p.head_dim;
  const int group = p.heads / p.kv_heads;
  const int q0 = p.query_start[item.seq];
  const int q_len = p.query_start[item.seq + 1] - q0;
  const int kv_len = p.kv_len[item.seq];
  const int num_rows = q_len * group;
  const int32_t* table = p.block_table + static_cast<int64_t>(item.seq) * p.max_blocks_per_seq;
  const int64_t slot_stride = static_cast<int64_t>(p.kv_heads) * hd;
  const int64_t head_off = static_cast<int64_t>(item.kv_head) * hd;

  for (int r = tid; r < M; r += kThreads) {
    const int rr = item.row_begin + r;
    if (rr < num_rows) {
      const int tok = rr / group;
      const int h = item.kv_head * group + rr % group;
      row_pos[r] = kv_len - q_len + tok;
      row_off[r] = (static_cast<int64_t>(q0 + tok) * p.heads + h) * hd;
    } else {
      row_pos[r] = -1;
      row_off[r] = 0;
    }
  }
  __syncthreads();
  for (int r = warp; r < M; r += kThreads / 32) {
    const bool valid = row_pos[r] >= 0;
    const float* src = p.q + row_off[r];
    for (int d = lane; d < D; d += 32) sq[r * L::kQStride + d] = (valid && d < hd) ? src[d] : 0.0f;
  }

  int pos[RM];
  float m[RM], l[RM], acc[RM][CD];
#pragma unroll
  for (int i = 0; i < RM; ++i) {
    pos[i] = row_pos[ty + 16 * i];
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < CD; ++c) acc[i][c] = 0.0f;
  }

  for (int n0 = item.kv_begin; n0 < item.kv_end; n0 += N) {
    // K/V tile; keys past kv_end and dims past head_dim are zeros, so P * V never sees garbage.
    for (int n = warp; n < N; n += kThreads / 32) {
      const int kp = n0 + n;
      const bool valid = kp < item.kv_end;
      int64_t base = 0;
      if (valid) {
        const int64_t slot = static_cast<int64_t>(table[kp / p.block_size]) * p.block_size +
                             kp % p.block_size;
        base = slot * slot_stride + head_off;
      }
      for (int d = lane; d < D; d += 32) {
        const bool ok = valid && d < hd;
        skt[d * L::kKtStride + n] = ok ? p.k_cache[base + d] : 0.0f;
        sv[n * D + d] = ok ? p.v_cache[base + d] : 0.0f;
      }
    }
    __syncthreads();  // Q (first pass) and the K/V tile are in place

    float s[RM][CN];
#pragma unroll
    for (int i = 0; i < RM; ++i) {
#pragma unroll
      for (int j = 0; j < CN; ++j) s[i][j] = 0.0f;
    }
#pragma unroll 4
    for (int d = 0; d < hd; ++d) {
      float qv[RM], kv[CN];
#pragma unroll
      for (int i = 0; i < RM; ++i) qv[i] = sq[(ty + 16 * i) * L::kQStride + d];
#pragma unroll
      for (int j = 0; j < CN; ++j) kv[j] = skt[d * L::kKtStride + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < RM; ++i) {
#pragma unroll
        for (int j = 0; j < CN; ++j) s[i][j] = fmaf(qv[i], kv[j], s[i][j]);
      }
    }

    // Causal + sliding-window mask by absolute position (as the CPU: keys (pos - window, pos]),
    // then the online-softmax update of each row's running max and sum.
#pragma unroll
    for (int i = 0; i < RM; ++i) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < CN; ++j) {
        const int kp = n0 + tx + 16 * j;
        const bool ok = pos[i] >= 0 && kp < item.kv_end && kp <= pos[i] &&
                        (p.sliding_window <= 0 || kp > pos[i] - p.sliding_window);
        s[i][j] = ok ? s[i][j] * p.scale : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      tile_max = HalfWarpMax(tile_max);
      const float m_new = fmaxf(m[i], tile_max);
      // Nothing seen yet (m_new = -inf): keep the zero state instead of exp(-inf - -inf) = NaN.
      const float alpha = m_new == -INFINITY ? 1.0f : expf(m[i] - m_new);
      float row_sum = 0.0f;
#pragma unroll
      for (int j = 0; j < CN; ++j) {
        const float pj = s[i][j] == -INFINITY ? 0.0f : expf(s[i][j] - m_new);
        sp[(ty + 16 * i) * L::kPStride + tx + 16 * j] = pj;
        row_sum += pj;
      }
      row_sum = HalfWarpSum(row_sum);
      l[i] = l[i] * alpha + row_sum;
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < CD; ++c) acc[i][c] *= alpha;
    }
    __syncthreads();  // P complete

#pragma unroll 4
    for (int n = 0; n < N; ++n) {
      float pv[RM];
#pragma unroll
      for (int i = 0; i < RM; ++i) pv[i] = sp[(ty + 16 * i) * L::kPStride + n];
#pragma unroll
      for (int c = 0; c < CD; ++c) {
        const float vv = sv[n * D + tx + 16 * c];
#pragma unroll
        for (int i = 0; i < RM; ++i) acc[i][c] = fmaf(pv[i], vv, acc[i][c]);
      }
    }
    __syncthreads();  // everyone is done with K, V and P before the next tile overwrites them
  }

#pragma unroll
  for (int i = 0; i < RM; ++i) {
    const int r = ty + 16 * i;
    if (pos[i] < 0) continue;
    if (item.partial < 0) {
      const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
      float* o = p.out + row_off[r];
#pragma unroll
      for (int c = 0; c < CD; ++c) {
        const int d = tx + 16 * c;
        if (d < hd) o[d] = acc[i][c] * inv;
      }
    } else {
      float* rec = p.partials + static_cast<int64_t>(item.partial + r) * (hd + 2);
      if (tx == 0) {
        rec[0] = m[i];
        rec[1] = l[i];
      }
#pragma unroll
      for (int c = 0; c < CD; ++c) {
        const int d = tx + 16 * c;
        if (d < hd) rec[2 + d] = acc[i][c];
      }
    }
  }
}

// Merges the split records of one tile: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
// A split that saw no key of a row has m = -inf, l = 0 and weighs nothing.
__global__ void __launch_bounds__(kGenericThreads)
    AttentionCombineKernel(AttentionLaunchParams p, const CombineItem* __restrict__ items) {
  const CombineItem item = items[blockIdx.x];
  const int hd = p.head_dim;
  const int group = p.heads / p.kv_heads;
  const int q0 = p.query_start[item.seq];
  const int num_rows = (p.query_start[item.seq + 1] - q0) * group;
  const int64_t stride = hd + 2;
  for (int r = 0; r < item.tile_rows && item.row_begin + r < num_rows; ++r) {
    const int rr = item.row_begin + r;
    const int h = item.kv_head * group + rr % group;
    float* o = p.out + (static_cast<int64_t>(q0 + rr / group) * p.heads + h) * hd;
    const float* rec0 = p.partials + static_cast<int64_t>(item.partial + r) * stride;
    const int64_t split_stride = static_cast<int64_t>(item.tile_rows) * stride;
    float mx = -INFINITY;
    for (int s = 0; s < item.num_splits; ++s) mx = fmaxf(mx, rec0[s * split_stride]);
    float sum = 0.0f;
    for (int s = 0; s < item.num_splits; ++s) {
      const float* rec = rec0 + s * split_stride;
      if (rec[0] != -INFINITY) sum += rec[1] * expf(rec[0] - mx);
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int d = static_cast<int>(threadIdx.x); d < hd; d += kGenericThreads) {
      float a = 0.0f;
      for (int s = 0; s < item.num_splits; ++s) {
        const float* rec = rec0 + s * split_stride;
        if (rec[0] != -INFINITY) a += rec[2 + d] * expf(rec[0] - mx);
      }
      o[d] = a * inv;
    }
  }
}

__device__ float BlockReduce(float v, bool is_max, float* scratch) {
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = is_max ? fmaxf(v, o) : v + o;
  }
  __syncthreads();  // scratch may still be read by the previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < kGenericThreads / 32; ++w) v = is_max ? fmaxf(v, scratch[w]) : v + scratch[w];
  return v;
}

// Head dims above the tiled kernel's: one CTA per (token, head), keys in chunks of 128 (one
// per thread), q and the output accumulator in shared memory ([head_dim] each).
__global__ void __launch_bounds__(kGenericThreads)
    GenericAttentionKernel(AttentionLaunchParams p, const int32_t* __restrict__ token_seq) {
  extern __shared__ float smem[];
  const int hd = p.head_dim;
  float* sq = smem;           // [hd]
  float* so = sq + hd;        // [hd]
  float* sp = so + hd;        // [kGenericThreads]
  float* scratch = sp + kGenericThreads;  // [kGenericThreads / 32]
  const int64_t t = blockIdx.x / p.heads;
  const int h = static_cast<int>(blockIdx.x % p.heads);
  const int tid = static_cast<int>(threadIdx.x);
  const int s = token_seq[t];
  const int group = p.heads / p.kv_heads;
  const int q0 = p.query_start[s];
  const int q_len = p.query_start[s + 1] - q0;
  const int pos = p.kv_len[s] - q_len + static_cast<int>(t - q0);
  const int lo = p.sliding_window > 0 ? max(0, pos - p.sliding_window + 1) : 0;
  const int32_t* table = p.block_table + static_cast<int64_t>(s) * p.max_blocks_per_seq;
  const int64_t slot_stride = static_cast<int64_t>(p.kv_heads) * hd;
  const int64_t head_off = static_cast<int64_t>(h / group) * hd;
  const int64_t row = (t * p.heads + h) * hd;
  for (int d = tid; d < hd; d += kGenericThreads) {
    sq[d] = p.q[row + d];
    so[d] = 0.0f;
  }
  __syncthreads();
  float m = -INFINITY, l = 0.0f;
  for (int base = lo; base <= pos; base += kGenericThreads) {
    const int j = base + tid;
    float score = -INFINITY;
    if (j <= pos) {
      const int64_t slot = static_cast<int64_t>(table[j / p.block_size]) * p.block_size + j % p.block_size;
      const float* kr = p.k_cache + slot * slot_stride + head_off;
      float dot = 0.0f;
      for (int d = 0; d < hd; ++d) dot = fmaf(sq[d], kr[d], dot);
      score = dot * p.scale;
    }
    const float m_new = fmaxf(m, BlockReduce(score, true, scratch));  // finite: key `base` is valid
    const float alpha = expf(m - m_new);
    const float pj = j <= pos ? expf(score - m_new) : 0.0f;
    sp[tid] = pj;
    l = l * alpha + BlockReduce(pj, false, scratch);  // its barriers also publish sp
    m = m_new;
    const int count = min(kGenericThreads, pos - base + 1);
    for (int d = tid; d < hd; d += kGenericThreads) {
      float a = so[d] * alpha;
      for (int jj = 0; jj < count; ++jj) {
        const int kp = base + jj;
        const int64_t slot = static_cast<int64_t>(table[kp / p.block_size]) * p.block_size + kp % p.block_size;
        a = fmaf(sp[jj], p.v_cache[slot * slot_stride + head_off + d], a);
      }
      so[d] = a;
    }
    __syncthreads();  // sp is rewritten by the next chunk
  }
  const float inv = 1.0f / l;
  for (int d = tid; d < hd; d += kGenericThreads) p.out[row + d] = so[d] * inv;
}

__global__ void KvWriteKernel(const float* __restrict__ k, const float* __restrict__ v,
                              const int32_t* __restrict__ slots, int64_t total, int64_t row,
                              float* __restrict__ k_cache, float* __restrict__ v_cache) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / row, e = i % row;
    const int64_t dst = static_cast<int64_t>(slots[t]) * row + e;
    k_cache[dst] = k[i];
    v_cache[dst] = v[i];
  }
}

template <int D, int M>
cudaError_t LaunchTiled(const AttentionLaunchParams& p, const AttentionItem* items, int num_items,
                        cudaStream_t stream) {
  constexpr size_t kBytes = TileLayout<D, M>::kBytes;
  // Above 48 KiB of dynamic shared memory a kernel must opt in (per device, so every launch).
  cudaError_t err = cudaFuncSetAttribute(TiledAttentionKernel<D, M>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(kBytes));
  if (err != cudaSuccess) return err;
  TiledAttentionKernel<D, M><<<num_items, kThreads, kBytes, stream>>>(p, items);
  return cudaGetLastError();
}

template <int M>
cudaError_t LaunchTiledRows(const AttentionLaunchParams& p, const AttentionItem* items,
                            int num_items, cudaStream_t stream) {
  if (p.head_dim <= 64) return LaunchTiled<64, M>(p, items, num_items, stream);
  if (p.head_dim <= 128) return LaunchTiled<128, M>(p, items, num_items, stream);
  return LaunchTiled<256, M>(p, items, num_items, stream);
}

}  // namespace

int AttentionKvTile(int head_dim) {
  if (head_dim <= 64) return KvTile<64>();
  if (head_dim <= 128) return KvTile<128>();
  return KvTile<256>();
}

cudaError_t LaunchTiledAttention(const AttentionLaunchParams& p, int tile_rows,
                                 const AttentionItem* items, int num_items, cudaStream_t stream) {
  if (num_items <= 0) return cudaSuccess;
  if (p.head_dim <= 0 || p.head_dim > kTiledMaxHeadDim) return cudaErrorInvalidValue;
  if (tile_rows == kDecodeTileRows) return LaunchTiledRows<kDecodeTileRows>(p, items, num_items, stream);
  if (tile_rows == kPrefillTileRows) return LaunchTiledRows<kPrefillTileRows>(p, items, num_items, stream);
  return cudaErrorInvalidValue;
}

cudaError_t LaunchAttentionCombine(const AttentionLaunchParams& p, const CombineItem* items,
                                   int num_items, cudaStream_t stream) {
  if (num_items <= 0) return cudaSuccess;
  AttentionCombineKernel<<<num_items, kGenericThreads, 0, stream>>>(p, items);
  return cudaGetLastError();
}

cudaError_t LaunchGenericAttention(const AttentionLaunchParams& p, const int32_t* token_seq,
                                   int64_t tokens, cudaStream_t stream) {
  const int64_t blocks = tokens * p.heads;
  if (blocks <= 0) return cudaSuccess;
  if (p.head_dim <= 0 || p.head_dim > kGenericMaxHeadDim || blocks > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  const size_t bytes = (2 * static_cast<size_t>(p.head_dim) + kGenericThreads + kGenericThreads / 32) *
                       sizeof(float);  // <= 33 KiB for kGenericMaxHeadDim: no opt-in needed
  GenericAttentionKernel<<<static_cast<unsigned>(blocks), kGenericThreads, bytes, stream>>>(p, token_seq);
  return cudaGetLastError();
}

cudaError_t LaunchKvWrite(const float* k, const float* v, const int32_t* slots, int64_t tokens,
                          int64_t row, float* k_cache, float* v_cache, cudaStream_t stream) {
  const int64_t total = tokens * row;
  if (total <= 0) return cudaSuccess;
  constexpr int kBlock = 256;
  const int64_t blocks = (total + kBlock - 1) / kBlock;
  const unsigned grid = static_cast<unsigned>(blocks < (1 << 20) ? blocks : (1 << 20));  // grid-stride beyond
  KvWriteKernel<<<grid, kBlock, 0, stream>>>(k, v, slots, total, row, k_cache, v_cache);
  return cudaGetLastError();
}

}  // namespace kiln::kernels::cuda
