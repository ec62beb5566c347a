// Internal to kernels/cpu: what cpu_attention.cc (per-item path, decode) and
// cpu_attention_tiled.cc (tiled path, prefill) share.
#pragma once

#include <cstdint>

#include "kernels/backend.h"

namespace kiln::kernels::cpu {

// What one PagedAttention call shares between its work items.
struct AttendArgs {
  const float* q;
  const float* k_cache;
  const float* v_cache;
  float* out;
  const AttentionParams* params;
  const int32_t* token_seq;
  // Per sequence, nonzero when it takes the tiled path (the per-item path skips it); null
  // when none does.
  const uint8_t* tiled_seq;
  int64_t heads, hd, bs, kv_row, group, window;
};

// Tiled prefill geometry: a tile is up to kAttnTileRows query rows (the tokens × the query
// heads of one KV head) against kAttnTileKeys keys at a time, so K and V are read once per
// tile instead of once per query row and both products are GEMMs.
inline constexpr int64_t kAttnTileRows = 64;
inline constexpr int64_t kAttnTileKeys = 64;
inline constexpr int64_t kAttnTileMaxHeadDim = 256;
// A sequence needs this many new tokens in the step before tiles pay (decode never does).
inline constexpr int64_t kAttnTiledMinQuery = 16;
// One thread's tile buffers: Q rows, output rows, K and V tiles, scores, running max and sum.
inline constexpr int64_t kAttnTileFloats = 2 * kAttnTileRows * kAttnTileMaxHeadDim +
                                           2 * kAttnTileKeys * kAttnTileMaxHeadDim +
                                           kAttnTileRows * kAttnTileKeys + 2 * kAttnTileRows;

// Whether a call with this geometry can take the tiled path.
inline bool TiledAttentionFits(int64_t hd, int64_t group) {
  return hd <= kAttnTileMaxHeadDim && group <= kAttnTileRows;
}

// Attention of sequence `seq`'s query tokens [t0, t1) (global token indices; at most
// kAttnTileRows / group of them) for every query head of KV head `kh`, with an online softmax
// over key tiles aligned to absolute key positions. `ws` holds kAttnTileFloats floats.
void AttendTile(const AttendArgs& a, int64_t seq, int64_t kh, int64_t t0, int64_t t1, float* ws);

}  // namespace kiln::kernels::cpu
