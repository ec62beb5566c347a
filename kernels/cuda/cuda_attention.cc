// CUDA KvWrite and PagedAttention: host-side validation (kernels/checks/attention_checks.h,
// the same checks as the CPU reference), work planning, one metadata Stage call, launches.
//
// The work plan (decode and prefill row tiles, split-K) is cuda_attention_plan.h's; the
// kernels are cuda_attention_kernels.cu behind cuda_attention_launch.h.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/checks/attention_checks.h"
#include "kernels/cuda/cuda_attention_launch.h"
#include "kernels/cuda/cuda_attention_plan.h"
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {
namespace {

int SmCount(int device_index) {
  int count = 0;
  if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device_index) != cudaSuccess) {
    return 1;  // only costs parallelism; a sticky error surfaces at the launch
  }
  return std::max(count, 1);
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

  static thread_local AttentionPlan plan;
  static thread_local std::vector<int32_t> token_seq;
  plan.decode_items.clear();
  plan.prefill_items.clear();
  plan.combines.clear();
  token_seq.clear();
  const bool tiled = hd <= kTiledMaxHeadDim;
  if (tiled) {
    const bool cuda_ws = workspace.device().kind == DeviceKind::kCuda && workspace.data() != nullptr;
    PlanAttention(params, heads / kvh, kvh, hd, cuda_ws ? workspace.bytes() : 0, SmCount(ctx.device_index),
                  plan);
  } else {
    token_seq.resize(static_cast<size_t>(tokens));
    for (size_t s = 0; s + 1 < params.query_start.size(); ++s) {
      for (int32_t t = params.query_start[s]; t < params.query_start[s + 1]; ++t) {
        token_seq[static_cast<size_t>(t)] = static_cast<int32_t>(s);
      }
    }
  }

  const HostArray arrays[] = {Host(params.query_start), Host(params.kv_len), Host(params.block_table),
                              Host(plan.decode_items),  Host(plan.prefill_items), Host(plan.combines),
                              Host(token_seq)};
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
