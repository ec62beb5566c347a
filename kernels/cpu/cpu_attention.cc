// CpuBackend::KvWrite and PagedAttention: the reference paged attention. One work item per
// (token, head); each item reads its sequence's blocks through the block table and does an
// fp32 softmax, so an item's arithmetic never depends on the rest of the batch.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/checks/attention_checks.h"
#include "kernels/cpu/cpu_internal.h"

namespace kiln::kernels::cpu {

absl::Status CpuBackend::KvWrite(TensorView k, TensorView v, std::span<const int32_t> slots,
                                 const PagedKvLayer& cache) {
  if (auto s = checks::CheckKvWrite(k, v, slots, cache, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t t = k.dim(0), kvh = cache.k.dim(2), hd = cache.k.dim(3);
  const int64_t row = kvh * hd;
  for (int64_t i = 0; i < t; ++i) {
    const int64_t slot = slots[static_cast<size_t>(i)];
    std::memcpy(cache.k.as<float>() + slot * row, k.as<float>() + i * row, static_cast<size_t>(row) * 4);
    std::memcpy(cache.v.as<float>() + slot * row, v.as<float>() + i * row, static_cast<size_t>(row) * 4);
  }
  return absl::OkStatus();
}

size_t CpuBackend::AttentionWorkspaceBytes(int64_t max_kv_len) const {
  return static_cast<size_t>(runner_.num_threads()) * static_cast<size_t>(std::max<int64_t>(max_kv_len, 1)) * 4;
}

absl::Status CpuBackend::PagedAttention(TensorView q, const PagedKvLayer& cache,
                                        const AttentionParams& params, TensorView out,
                                        TensorView workspace) {
  if (auto s = checks::CheckAttentionShapes(q, cache, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t tokens = q.dim(0), heads = q.dim(1), hd = q.dim(2);
  const int64_t nb = cache.k.dim(0), bs = cache.k.dim(1), kvh = cache.k.dim(2);
  std::vector<int32_t> token_seq;
  int64_t max_kv = 0;
  if (auto s = checks::CheckAttentionParams(params, tokens, nb, bs, &token_seq, &max_kv); !s.ok()) return s;
  if (auto s = checks::CheckAttentionWorkspace(workspace, AttentionWorkspaceBytes(max_kv), DeviceKind::kCpu);
      !s.ok()) {
    return s;
  }
  const int64_t group = heads / kvh;
  const int64_t kv_row = kvh * hd;
  const int64_t window = params.sliding_window;
  runner_.For(tokens * heads, 4, [&](int64_t b, int64_t e, int worker) {
    float* scores = workspace.as<float>() + worker * std::max<int64_t>(max_kv, 1);
    for (int64_t item = b; item < e; ++item) {
      const int64_t t = item / heads, h = item % heads, kh = h / group;
      const size_t s = static_cast<size_t>(token_seq[static_cast<size_t>(t)]);
      const int32_t* table = params.block_table.data() + s * static_cast<size_t>(params.max_blocks_per_seq);
      const int64_t pos = params.kv_len[s] - (params.query_start[s + 1] - params.query_start[s]) +
                          (t - params.query_start[s]);
      const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      const float* qv = q.as<float>() + (t * heads + h) * hd;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = lo; j <= pos; ++j) {
        const float* kv = cache.k.as<float>() + (table[j / bs] * bs + j % bs) * kv_row + kh * hd;
        float dot = 0;
        for (int64_t d = 0; d < hd; ++d) dot += qv[d] * kv[d];
        scores[j - lo] = dot * params.scale;
        mx = std::max(mx, scores[j - lo]);
      }
      float sum = 0;
      for (int64_t j = lo; j <= pos; ++j) {
        scores[j - lo] = std::exp(scores[j - lo] - mx);
        sum += scores[j - lo];
      }
      float* o = out.as<float>() + (t * heads + h) * hd;
      std::fill(o, o + hd, 0.0f);
      const float inv = 1.0f / sum;
      for (int64_t j = lo; j <= pos; ++j) {
        const float* vv = cache.v.as<float>() + (table[j / bs] * bs + j % bs) * kv_row + kh * hd;
        const float pj = scores[j - lo] * inv;
        for (int64_t d = 0; d < hd; ++d) o[d] += pj * vv[d];
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace kiln::kernels::cpu
