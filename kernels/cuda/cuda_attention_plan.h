// Host-side work planning of CUDA PagedAttention's tiled kernel (cuda_attention.cc), kept
// apart so tests can check it without a device: which CTA covers which rows and keys, which
// tiles are split (split-K) and where their records go in the workspace.
//
// Every sequence's rows ((new token, head within a kv head's group) pairs, token * group + g)
// are cut into tiles: a sequence with q_len * group <= kDecodeTileRows rows gets one decode
// tile per kv head, larger ones kPrefillTileRows-row tiles. A tile needs keys
// [max(0, first position - window + 1) (0 without window), last position]. When the tiles
// alone give fewer than two CTAs per SM, key ranges of at least 2 * kMinKeysPerSplit keys are
// split into chunks (multiples of 64 keys) while their records fit the workspace; the rest
// run unsplit. Inputs must already have passed checks::CheckAttentionParams.
//
// Not thread-safe; a plan is reused across calls so a warm step loop does not allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_attention_launch.h"

namespace kiln::kernels::cuda {

// A split covers at least this many keys: below it the combine costs more than it saves.
inline constexpr int64_t kMinKeysPerSplit = 256;
inline constexpr int64_t kMaxSplits = 64;
// The fixed split-K workspace (AttentionWorkspaceBytes for contexts that can split): 16K
// records at head_dim 128, e.g. 32 query heads x 32 splits x 16 rows, enough for batch-1
// decode at any context; larger batches fill the GPU without splitting.
inline constexpr size_t kSplitWorkspaceBytes = size_t{8} << 20;

struct AttentionPlan {
  std::vector<AttentionItem> decode_items;   // kDecodeTileRows-row CTAs
  std::vector<AttentionItem> prefill_items;  // kPrefillTileRows-row CTAs
  std::vector<CombineItem> combines;         // one per split tile and kv head
  int64_t records = 0;                       // workspace records used, each head_dim + 2 floats
};

// Fills `plan` (cleared first) for a batch of `group` query heads per kv head.
// workspace_bytes: usable split-K workspace; sm_count: the device's multiprocessors.
void PlanAttention(const AttentionParams& params, int64_t group, int64_t kv_heads, int64_t head_dim,
                   size_t workspace_bytes, int sm_count, AttentionPlan& plan);

}  // namespace kiln::kernels::cuda
