// CpuBackend::KvWrite and PagedAttention: the reference paged attention. One work item per
// (token, head); each item reads its sequence's blocks through the block table and does an
// fp32 softmax, so an item's arithmetic never depends on the rest of the batch.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_internal.h"

namespace kiln::kernels::cpu {
namespace {

absl::Status CheckCache(const char* op, const PagedKvLayer& cache) {
  if (auto s = CheckF32(op, "cache.k", cache.k, 4); !s.ok()) return s;
  if (auto s = CheckF32(op, "cache.v", cache.v, 4); !s.ok()) return s;
  if (!SameShape(cache.k, cache.v)) return ShapeError(op, "cache.v", cache.v, cache.k.ShapeString());
  return absl::OkStatus();
}

}  // namespace

absl::Status CpuBackend::KvWrite(TensorView k, TensorView v, std::span<const int32_t> slots,
                                 const PagedKvLayer& cache) {
  if (auto s = CheckCache("KvWrite", cache); !s.ok()) return s;
  if (auto s = CheckF32("KvWrite", "k", k, 3); !s.ok()) return s;
  if (auto s = CheckF32("KvWrite", "v", v, 3); !s.ok()) return s;
  const int64_t t = k.dim(0), kvh = cache.k.dim(2), hd = cache.k.dim(3);
  const std::string want = absl::StrCat("[", t, ", ", kvh, ", ", hd, "]");
  if (k.dim(1) != kvh || k.dim(2) != hd) return ShapeError("KvWrite", "k", k, want);
  if (!SameShape(k, v)) return ShapeError("KvWrite", "v", v, want);
  if (static_cast<int64_t>(slots.size()) != t) {
    return absl::InvalidArgumentError(absl::StrCat("KvWrite: ", slots.size(), " slots for ", t, " tokens"));
  }
  const int64_t num_slots = cache.k.dim(0) * cache.k.dim(1);
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] < 0 || slots[i] >= num_slots) {
      return absl::InvalidArgumentError(absl::StrCat("KvWrite: slot ", slots[i], " of token ", i,
                                                     " outside [0, ", num_slots, ")"));
    }
  }
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

namespace {

// Validates the CSR metadata against q and the cache; fills token -> sequence.
absl::Status CheckParams(const AttentionParams& p, int64_t tokens, int64_t num_blocks,
                         int64_t block_size, std::vector<int32_t>* token_seq, int64_t* max_kv) {
  if (p.query_start.empty() || p.query_start[0] != 0) {
    return absl::InvalidArgumentError("PagedAttention: query_start must start with 0");
  }
  const size_t num_seqs = p.query_start.size() - 1;
  if (p.kv_len.size() != num_seqs) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: kv_len has ", p.kv_len.size(),
                                                   " entries for ", num_seqs, " sequences"));
  }
  if (p.max_blocks_per_seq < 0 ||
      p.block_table.size() != num_seqs * static_cast<size_t>(p.max_blocks_per_seq)) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: block_table has ", p.block_table.size(),
                                                   " entries, expected ", num_seqs, " x ", p.max_blocks_per_seq));
  }
  if (p.query_start[num_seqs] != tokens) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: query_start ends at ", p.query_start[num_seqs],
                                                   ", q has ", tokens, " tokens"));
  }
  token_seq->assign(static_cast<size_t>(tokens), 0);
  *max_kv = 0;
  for (size_t s = 0; s < num_seqs; ++s) {
    const int32_t q0 = p.query_start[s], q1 = p.query_start[s + 1];
    if (q1 < q0) return absl::InvalidArgumentError(absl::StrCat("PagedAttention: query_start decreases at ", s));
    if (p.kv_len[s] < q1 - q0) {
      return absl::InvalidArgumentError(absl::StrCat("PagedAttention: sequence ", s, " has kv_len ", p.kv_len[s],
                                                     " < its ", q1 - q0, " new tokens"));
    }
    const int64_t blocks = (p.kv_len[s] + block_size - 1) / block_size;
    if (blocks > p.max_blocks_per_seq) {
      return absl::InvalidArgumentError(absl::StrCat("PagedAttention: sequence ", s, " needs ", blocks,
                                                     " blocks, table has ", p.max_blocks_per_seq));
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const int32_t id = p.block_table[s * static_cast<size_t>(p.max_blocks_per_seq) + static_cast<size_t>(b)];
      if (id < 0 || id >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("PagedAttention: sequence ", s, " block ", id,
                                                       " outside [0, ", num_blocks, ")"));
      }
    }
    for (int32_t t = q0; t < q1; ++t) (*token_seq)[static_cast<size_t>(t)] = static_cast<int32_t>(s);
    *max_kv = std::max<int64_t>(*max_kv, p.kv_len[s]);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CpuBackend::PagedAttention(TensorView q, const PagedKvLayer& cache,
                                        const AttentionParams& params, TensorView out,
                                        TensorView workspace) {
  if (auto s = CheckCache("PagedAttention", cache); !s.ok()) return s;
  if (auto s = CheckF32("PagedAttention", "q", q, 3); !s.ok()) return s;
  if (auto s = CheckF32("PagedAttention", "out", out, 3); !s.ok()) return s;
  const int64_t tokens = q.dim(0), heads = q.dim(1), hd = q.dim(2);
  const int64_t nb = cache.k.dim(0), bs = cache.k.dim(1), kvh = cache.k.dim(2);
  if (hd != cache.k.dim(3) || kvh == 0 || heads % kvh != 0) {
    return ShapeError("PagedAttention", "q", q, absl::StrCat("[t, a multiple of ", kvh, ", ", cache.k.dim(3), "]"));
  }
  if (!SameShape(q, out)) return ShapeError("PagedAttention", "out", out, q.ShapeString());
  std::vector<int32_t> token_seq;
  int64_t max_kv = 0;
  if (auto s = CheckParams(params, tokens, nb, bs, &token_seq, &max_kv); !s.ok()) return s;
  if (workspace.bytes() < AttentionWorkspaceBytes(max_kv)) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: workspace has ", workspace.bytes(),
                                                   " bytes, needs ", AttentionWorkspaceBytes(max_kv)));
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
