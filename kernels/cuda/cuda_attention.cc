// CUDA KvWrite and PagedAttention: host-side validation (kernels/checks/attention_checks.h,
// the same checks as the CPU reference), work planning, one metadata Stage call, launches.
//
// Plan: every sequence's rows ((token, head-in-group) pairs of one kv head) are cut into
// tiles; a sequence with q_len * group <= 16 rows (decode) gets one 16-row tile per kv head,
// larger ones (prefill) 64-row flash-style tiles. A tile needs the keys
// [first position - window + 1 (or 0), last position]. When the tiles alone leave the GPU
// idle (fewer than ~2 CTAs per SM) long key ranges are split (split-K): each split writes
// per-row (max, sum, unnormalized output) records to the workspace and a combine kernel
// merges them. The workspace has a fixed size (AttentionWorkspaceBytes), so the planner
// splits only as many tiles as fit in the workspace it is given and runs the rest unsplit.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/checks/attention_checks.h"
#include "kernels/cuda/cuda_attention_launch.h"
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {
namespace {

// A split covers at least this many keys: below it the combine costs more than it saves.
constexpr int64_t kMinKeysPerSplit = 256;
constexpr int64_t kMaxSplits = 64;
// Holds 16K records at head_dim 128 (e.g. 32 query heads x 32 splits x 16 rows): enough for
// batch-1 decode at any context length; larger batches fill the GPU without splits.
constexpr size_t kSplitWorkspaceBytes = size_t{8} << 20;
constexpr int64_t kSplitChunkAlign = 64;  // a multiple of every KV tile (AttentionKvTile)

int SmCount(int device_index) {
  int count = 0;
  if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device_index) != cudaSuccess) {
    return 1;  // only costs parallelism; a sticky error surfaces at the launch
  }
  return std::max(count, 1);
}

// A row tile before splitting.
struct Tile {
  int32_t seq;
  int32_t row_begin;
  int32_t rows;  // tile rows (kDecodeTileRows or kPrefillTileRows)
  int32_t kv_begin;
  int32_t kv_end;
};

// Host side of one call; reused across calls on a thread so a warm step loop stays
// allocation-free.
struct Plan {
  std::vector<Tile> tiles;
  std::vector<AttentionItem> decode_items;
  std::vector<AttentionItem> prefill_items;
  std::vector<CombineItem> combines;
  std::vector<int32_t> token_seq;
  void Clear() {
    tiles.clear();
    decode_items.clear();
    prefill_items.clear();
    combines.clear();
    token_seq.clear();
  }
};

void BuildTiles(const AttentionParams& params, int64_t group, Plan& plan) {
  const size_t num_seqs = params.kv_len.size();
  for (size_t s = 0; s < num_seqs; ++s) {
    const int64_t q_len = params.query_start[s + 1] - params.query_start[s];
    const int64_t rows = q_len * group;
    const int64_t m = rows <= kDecodeTileRows ? kDecodeTileRows : kPrefillTileRows;
    const int64_t first_pos = params.kv_len[s] - q_len;
    for (int64_t r0 = 0; r0 < rows; r0 += m) {
      const int64_t pmin = first_pos + r0 / group;
      const int64_t pmax = first_pos + (std::min(rows, r0 + m) - 1) / group;
      const int64_t lo = params.sliding_window > 0 ? std::max<int64_t>(0, pmin - params.sliding_window + 1) : 0;
      plan.tiles.push_back({static_cast<int32_t>(s), static_cast<int32_t>(r0), static_cast<int32_t>(m),
                            static_cast<int32_t>(lo), static_cast<int32_t>(pmax + 1)});
    }
  }
}

// Splits per tile: enough CTAs for ~2 per SM, each split >= kMinKeysPerSplit keys, and only
// while the records fit the workspace.
void BuildItems(int64_t kv_heads, int64_t head_dim, size_t workspace_bytes, int sm_count, Plan& plan) {
  const int64_t base_ctas = static_cast<int64_t>(plan.tiles.size()) * kv_heads;
  const int64_t target_ctas = 2 * static_cast<int64_t>(sm_count);
  const int64_t want = base_ctas >= target_ctas ? 1 : (target_ctas + base_ctas - 1) / base_ctas;
  int64_t free_records = static_cast<int64_t>(workspace_bytes / (static_cast<size_t>(head_dim + 2) * sizeof(float)));
  int64_t next_record = 0;
  for (const Tile& tile : plan.tiles) {
    const int64_t keys = tile.kv_end - tile.kv_begin;
    int64_t splits = std::min({want, keys / kMinKeysPerSplit, kMaxSplits});
    int64_t chunk = keys;
    if (splits > 1) {
      chunk = (keys + splits - 1) / splits;
      chunk = (chunk + kSplitChunkAlign - 1) / kSplitChunkAlign * kSplitChunkAlign;
      splits = (keys + chunk - 1) / chunk;
    }
    if (splits > 1 && splits * tile.rows * kv_heads > free_records) splits = 1;
    if (splits <= 1) chunk = keys;
    auto& items = tile.rows == kDecodeTileRows ? plan.decode_items : plan.prefill_items;
    for (int64_t kh = 0; kh < kv_heads; ++kh) {
      const int64_t first = splits > 1 ? next_record : -1;
      for (int64_t i = 0; i < splits; ++i) {
        const int64_t b = tile.kv_begin + i * chunk;
        items.push_back({tile.seq, static_cast<int32_t>(kh), tile.row_begin, static_cast<int32_t>(b),
                         static_cast<int32_t>(std::min<int64_t>(tile.kv_end, b + chunk)),
                         static_cast<int32_t>(first < 0 ? -1 : first + i * tile.rows)});
      }
      if (splits > 1) {
        plan.combines.push_back({tile.seq, static_cast<int32_t>(kh), tile.row_begin, tile.rows,
                                 static_cast<int32_t>(splits), static_cast<int32_t>(first)});
        next_record += splits * tile.rows;
        free_records -= splits * tile.rows;
      }
    }
  }
}

template <typename T>
HostArray Host(const std::vector<T>& v) {
  return {v.data(), v.size() * sizeof(T)};
}
template <typename T>
HostArray Host(std::span<const T> v) {
  return {v.data(), v.size() * sizeof(T)};
}

}  // namespace

absl::Status KvWrite(CudaContext& ctx, TensorView k, TensorView v, std::span<const int32_t> slots,
                     const PagedKvLayer& cache) {
  if (auto s = checks::CheckKvWrite(k, v, slots, cache, DeviceKind::kCuda); !s.ok()) return s;
  const int64_t row = cache.k.dim(2) * cache.k.dim(3);
  if (slots.empty() || row == 0) return absl::OkStatus();
  // Several tokens naming one slot (the engine never does that) race here; the CPU keeps the last.
  const HostArray arrays[] = {Host(slots)};
  const void* device_ptrs[1] = {nullptr};
  if (auto s = ctx.stager->Stage(arrays, device_ptrs); !s.ok()) return s;
  return CudaCheck(LaunchKvWrite(k.as<float>(), v.as<float>(), static_cast<const int32_t*>(device_ptrs[0]),
                                 k.dim(0), row, cache.k.as<float>(), cache.v.as<float>(), ctx.stream),
                   "KvWrite kernel");
}

size_t AttentionWorkspaceBytes(int64_t max_kv_len) {
  return max_kv_len >= 2 * kMinKeysPerSplit ? kSplitWorkspaceBytes : 0;
}

absl::Status PagedAttention(CudaContext& ctx, TensorView q, const PagedKvLayer& cache,
                            const AttentionParams& params, TensorView out, TensorView workspace) {
  if (auto s = checks::CheckAttentionShapes(q, cache, out, DeviceKind::kCuda); !s.ok()) return s;
  const int64_t tokens = q.dim(0), heads = q.dim(1), hd = q.dim(2);
  const int64_t kvh = cache.k.dim(2);
  int64_t max_kv = 0;
  if (auto s = checks::CheckAttentionParams(params, tokens, cache.k.dim(0), cache.k.dim(1), nullptr, &max_kv);
      !s.ok()) {
    return s;
  }
  if (auto s = checks::CheckAttentionWorkspace(workspace, AttentionWorkspaceBytes(max_kv), DeviceKind::kCuda);
      !s.ok()) {
    return s;
  }
  if (q.numel() == 0) return absl::OkStatus();
  // The kernels index rows and slots in 32 bits; the CPU has no such limit.
  constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();
  if (tokens * heads > kMaxI32 || cache.k.dim(0) * cache.k.dim(1) > kMaxI32) {
    return absl::UnimplementedError(absl::StrCat("PagedAttention: ", tokens, " tokens x ", heads, " heads or ",
                                                 cache.k.dim(0), " x ", cache.k.dim(1),
                                                 " cache slots exceed the CUDA limit ", kMaxI32));
  }
  if (hd > kGenericMaxHeadDim) {
    return absl::UnimplementedError(absl::StrCat("PagedAttention: head_dim ", hd,
                                                 " exceeds the CUDA limit ", kGenericMaxHeadDim));
  }

  static thread_local Plan plan;
  plan.Clear();
  const bool tiled = hd <= kTiledMaxHeadDim;
  if (tiled) {
    BuildTiles(params, heads / kvh, plan);
    const bool cuda_ws = workspace.device().kind == DeviceKind::kCuda && workspace.data() != nullptr;
    const size_t usable = cuda_ws ? workspace.bytes() : 0;
    BuildItems(kvh, hd, usable, SmCount(ctx.device_index), plan);
  } else {
    plan.token_seq.resize(static_cast<size_t>(tokens));
    for (size_t s = 0; s + 1 < params.query_start.size(); ++s) {
      for (int32_t t = params.query_start[s]; t < params.query_start[s + 1]; ++t) {
        plan.token_seq[static_cast<size_t>(t)] = static_cast<int32_t>(s);
      }
    }
  }

  const HostArray arrays[] = {Host(params.query_start), Host(params.kv_len), Host(params.block_table),
                              Host(plan.decode_items),  Host(plan.prefill_items), Host(plan.combines),
                              Host(plan.token_seq)};
  const void* dev[7] = {};
  if (auto s = ctx.stager->Stage(arrays, dev); !s.ok()) return s;

  AttentionLaunchParams p;
  p.q = q.as<float>();
  p.k_cache = cache.k.as<float>();
  p.v_cache = cache.v.as<float>();
  p.out = out.as<float>();
  p.partials = plan.combines.empty() ? nullptr : workspace.as<float>();
  p.query_start = static_cast<const int32_t*>(dev[0]);
  p.kv_len = static_cast<const int32_t*>(dev[1]);
  p.block_table = static_cast<const int32_t*>(dev[2]);
  p.max_blocks_per_seq = params.max_blocks_per_seq;
  p.block_size = static_cast<int32_t>(cache.k.dim(1));
  p.heads = static_cast<int32_t>(heads);
  p.kv_heads = static_cast<int32_t>(kvh);
  p.head_dim = static_cast<int32_t>(hd);
  p.sliding_window = params.sliding_window;
  p.scale = params.scale;

  if (!tiled) {
    return CudaCheck(LaunchGenericAttention(p, static_cast<const int32_t*>(dev[6]), tokens, ctx.stream),
                     "PagedAttention generic kernel");
  }
  if (auto s = CudaCheck(LaunchTiledAttention(p, kDecodeTileRows, static_cast<const AttentionItem*>(dev[3]),
                                              static_cast<int>(plan.decode_items.size()), ctx.stream),
                         "PagedAttention decode kernel");
      !s.ok()) {
    return s;
  }
  if (auto s = CudaCheck(LaunchTiledAttention(p, kPrefillTileRows, static_cast<const AttentionItem*>(dev[4]),
                                              static_cast<int>(plan.prefill_items.size()), ctx.stream),
                         "PagedAttention prefill kernel");
      !s.ok()) {
    return s;
  }
  return CudaCheck(LaunchAttentionCombine(p, static_cast<const CombineItem*>(dev[5]),
                                          static_cast<int>(plan.combines.size()), ctx.stream),
                   "PagedAttention combine kernel");
}

}  // namespace kiln::kernels::cuda
