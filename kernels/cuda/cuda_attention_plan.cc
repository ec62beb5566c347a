#include "kernels/cuda/cuda_attention_plan.h"

#include <algorithm>

namespace kiln::kernels::cuda {
namespace {

constexpr int64_t kSplitChunkAlign = 64;  // a multiple of every KV tile (AttentionKvTile)

struct Tile {
  int32_t seq;
  int32_t row_begin;
  int32_t rows;  // kDecodeTileRows or kPrefillTileRows
  int32_t kv_begin;
  int32_t kv_end;
};

}  // namespace

void PlanAttention(const AttentionParams& params, int64_t group, int64_t kv_heads, int64_t head_dim,
                   size_t workspace_bytes, int sm_count, AttentionPlan& plan) {
  plan.decode_items.clear();
  plan.prefill_items.clear();
  plan.combines.clear();
  plan.records = 0;
  static thread_local std::vector<Tile> tiles;
  tiles.clear();
  for (size_t s = 0; s < params.kv_len.size(); ++s) {
    const int64_t q_len = params.query_start[s + 1] - params.query_start[s];
    const int64_t rows = q_len * group;
    const int64_t m = rows <= kDecodeTileRows ? kDecodeTileRows : kPrefillTileRows;
    const int64_t first_pos = params.kv_len[s] - q_len;
    for (int64_t r0 = 0; r0 < rows; r0 += m) {
      const int64_t pmin = first_pos + r0 / group;
      const int64_t pmax = first_pos + (std::min(rows, r0 + m) - 1) / group;
      // Rows further down the tile see a window starting later; the kernel masks per row.
      const int64_t lo = params.sliding_window > 0 ? std::max<int64_t>(0, pmin - params.sliding_window + 1) : 0;
      tiles.push_back({static_cast<int32_t>(s), static_cast<int32_t>(r0), static_cast<int32_t>(m),
                       static_cast<int32_t>(lo), static_cast<int32_t>(pmax + 1)});
    }
  }

  const int64_t base_ctas = static_cast<int64_t>(tiles.size()) * kv_heads;
  const int64_t target_ctas = 2 * static_cast<int64_t>(std::max(sm_count, 1));
  const int64_t want = base_ctas >= target_ctas ? 1 : (target_ctas + base_ctas - 1) / base_ctas;
  int64_t free_records =
      static_cast<int64_t>(workspace_bytes / (static_cast<size_t>(head_dim + 2) * sizeof(float)));
  for (const Tile& tile : tiles) {
    const int64_t keys = tile.kv_end - tile.kv_begin;
    int64_t splits = std::max<int64_t>(1, std::min({want, keys / kMinKeysPerSplit, kMaxSplits}));
    int64_t chunk = keys;
    if (splits > 1) {
      chunk = (keys + splits - 1) / splits;
      chunk = (chunk + kSplitChunkAlign - 1) / kSplitChunkAlign * kSplitChunkAlign;
      splits = (keys + chunk - 1) / chunk;
    }
    if (splits > 1 && splits * tile.rows * kv_heads > free_records) splits = 1;
    if (splits == 1) chunk = keys;
    auto& items = tile.rows == kDecodeTileRows ? plan.decode_items : plan.prefill_items;
    for (int64_t kh = 0; kh < kv_heads; ++kh) {
      const int64_t first = splits > 1 ? plan.records : -1;
      for (int64_t i = 0; i < splits; ++i) {
        const int64_t b = tile.kv_begin + i * chunk;
        items.push_back({tile.seq, static_cast<int32_t>(kh), tile.row_begin, static_cast<int32_t>(b),
                         static_cast<int32_t>(std::min<int64_t>(tile.kv_end, b + chunk)),
                         static_cast<int32_t>(first < 0 ? -1 : first + i * tile.rows)});
      }
      if (splits > 1) {
        plan.combines.push_back({tile.seq, static_cast<int32_t>(kh), tile.row_begin, tile.rows,
                                 static_cast<int32_t>(splits), static_cast<int32_t>(first)});
        plan.records += splits * tile.rows;
        free_records -= splits * tile.rows;
      }
    }
  }
}

}  // namespace kiln::kernels::cuda
