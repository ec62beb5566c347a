// Plain launch interface of the attention kernels (cuda_attention_kernels.cu): no absl, so the
// .cu stays cheap to compile (toolchain.md §7). cuda_attention.cc validates, plans the work
// items on the host, stages them with the metadata, then calls these launchers, which return
// the launch's cudaError_t.
//
// Layout: token t of sequence s is row ((t * heads + h) * head_dim) of q/out; cache slot
// `slot` of kv head kh starts at (slot * kv_heads + kh) * head_dim; token position p of s lives
// in slot block_table[s * max_blocks_per_seq + p / block_size] * block_size + p % block_size.
// A sequence's "rows" are its (new token, head within the kv head's group) pairs, numbered
// token * group + g, so one CTA serves every query head that shares a kv head.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kiln::kernels::cuda {

// One CTA of the tiled kernel: rows [row_begin, row_begin + tile rows) of sequence `seq` for kv
// head `kv_head`, keys [kv_begin, kv_end). partial < 0: the CTA covers every key its rows need
// and writes `out`; else it is one split of a split-K tile and writes row r's record
// (m, l, unnormalized acc[head_dim]) at record partial + r of the workspace.
struct AttentionItem {
  int32_t seq;
  int32_t kv_head;
  int32_t row_begin;
  int32_t kv_begin;
  int32_t kv_end;
  int32_t partial;
};

// Merges the split records of one split-K tile: split i's row r is record
// partial + i * tile_rows + r.
struct CombineItem {
  int32_t seq;
  int32_t kv_head;
  int32_t row_begin;
  int32_t tile_rows;
  int32_t num_splits;
  int32_t partial;
};

// Device pointers and scalars shared by the attention kernels. Metadata arrays are device
// copies (staged) of AttentionParams'.
struct AttentionLaunchParams {
  const float* q = nullptr;              // [t, heads, head_dim]
  const float* k_cache = nullptr;        // [num_blocks, block_size, kv_heads, head_dim]
  const float* v_cache = nullptr;        // [num_blocks, block_size, kv_heads, head_dim]
  float* out = nullptr;                  // [t, heads, head_dim]
  float* partials = nullptr;             // [records, head_dim + 2] (workspace)
  const int32_t* query_start = nullptr;  // [num_seqs + 1]
  const int32_t* kv_len = nullptr;       // [num_seqs]
  const int32_t* block_table = nullptr;  // [num_seqs, max_blocks_per_seq]
  int32_t max_blocks_per_seq = 0;
  int32_t block_size = 0;
  int32_t heads = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
  int32_t sliding_window = 0;  // > 0: position p attends to (p - window, p]
  float scale = 1.0f;
};

// Row tiles of the tiled kernel: decode tiles (q_len * group <= 16 rows, one CTA per sequence
// and kv head) and flash-style prefill tiles of 64 rows.
inline constexpr int kDecodeTileRows = 16;
inline constexpr int kPrefillTileRows = 64;
// Head dims up to this use the tiled kernel (padded to 64, 128 or 256 in shared memory).
inline constexpr int kTiledMaxHeadDim = 256;
// Keys per KV tile for a head dim (the split-K chunk is a multiple of every value).
int AttentionKvTile(int head_dim);
// Head dims above kTiledMaxHeadDim use the generic kernel, up to this.
inline constexpr int kGenericMaxHeadDim = 4096;

cudaError_t LaunchTiledAttention(const AttentionLaunchParams& p, int tile_rows,
                                 const AttentionItem* items,  // [num_items] device
                                 int num_items, cudaStream_t stream);
cudaError_t LaunchAttentionCombine(const AttentionLaunchParams& p,
                                   const CombineItem* items,  // [num_items] device
                                   int num_items, cudaStream_t stream);
// One CTA per (token, head); any head_dim <= kGenericMaxHeadDim.
cudaError_t LaunchGenericAttention(const AttentionLaunchParams& p,
                                   const int32_t* token_seq,  // [tokens] device
                                   int64_t tokens, cudaStream_t stream);

// k_cache[slots[t] * row + e] = k[t * row + e] (and v), row = kv_heads * head_dim.
cudaError_t LaunchKvWrite(const float* k,            // [tokens, row]
                          const float* v,            // [tokens, row]
                          const int32_t* slots,      // [tokens] device
                          int64_t tokens, int64_t row,
                          float* k_cache,            // [num_slots, row]
                          float* v_cache,            // [num_slots, row]
                          cudaStream_t stream);

}  // namespace kiln::kernels::cuda
