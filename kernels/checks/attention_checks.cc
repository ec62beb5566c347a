#include "kernels/checks/attention_checks.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace kiln::kernels::checks {

absl::Status CheckKvCache(const char* op, const PagedKvLayer& cache, DeviceKind kind) {
  if (auto s = CheckView(op, "cache.k", cache.k, 4, kind, true); !s.ok()) return s;
  if (auto s = CheckView(op, "cache.v", cache.v, 4, kind, true); !s.ok()) return s;
  if (!SameShape(cache.k, cache.v)) return ShapeError(op, "cache.v", cache.v, cache.k.ShapeString());
  return absl::OkStatus();
}

absl::Status CheckKvWrite(const TensorView& k, const TensorView& v,
                          std::span<const int32_t> slots, const PagedKvLayer& cache,
                          DeviceKind kind) {
  if (auto s = CheckKvCache("KvWrite", cache, kind); !s.ok()) return s;
  if (auto s = CheckView("KvWrite", "k", k, 3, kind, true); !s.ok()) return s;
  if (auto s = CheckView("KvWrite", "v", v, 3, kind, true); !s.ok()) return s;
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
  return absl::OkStatus();
}

absl::Status CheckAttentionShapes(const TensorView& q, const PagedKvLayer& cache,
                                  const TensorView& out, DeviceKind kind) {
  if (auto s = CheckKvCache("PagedAttention", cache, kind); !s.ok()) return s;
  if (auto s = CheckView("PagedAttention", "q", q, 3, kind, true); !s.ok()) return s;
  if (auto s = CheckView("PagedAttention", "out", out, 3, kind, true); !s.ok()) return s;
  const int64_t heads = q.dim(1), hd = q.dim(2), kvh = cache.k.dim(2);
  if (hd != cache.k.dim(3) || kvh == 0 || heads % kvh != 0) {
    return ShapeError("PagedAttention", "q", q,
                      absl::StrCat("[t, a multiple of ", kvh, ", ", cache.k.dim(3), "]"));
  }
  if (!SameShape(q, out)) return ShapeError("PagedAttention", "out", out, q.ShapeString());
  return absl::OkStatus();
}

absl::Status CheckAttentionParams(const AttentionParams& p, int64_t tokens, int64_t num_blocks,
                                  int64_t block_size, std::vector<int32_t>* token_seq,
                                  int64_t* max_kv) {
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
  *max_kv = 0;
  if (num_seqs > 0 && block_size <= 0) {  // an empty cache geometry would divide by zero below
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: cache block_size is ", block_size,
                                                   ", expected >= 1"));
  }
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
    *max_kv = std::max<int64_t>(*max_kv, p.kv_len[s]);
  }
  // Filled only once every bound holds: a query_start that overshoots and comes back (0, 9, 5
  // for 5 tokens) must be refused before it indexes token_seq.
  if (token_seq != nullptr) {
    token_seq->assign(static_cast<size_t>(tokens), 0);
    for (size_t s = 0; s < num_seqs; ++s) {
      for (int32_t t = p.query_start[s]; t < p.query_start[s + 1]; ++t) {
        (*token_seq)[static_cast<size_t>(t)] = static_cast<int32_t>(s);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckAttentionWorkspace(const TensorView& workspace, size_t needed, DeviceKind kind) {
  if (workspace.bytes() < needed) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: workspace has ", workspace.bytes(),
                                                   " bytes, needs ", needed));
  }
  if (needed > 0 && workspace.device().kind != kind) {
    return absl::InvalidArgumentError(absl::StrCat("PagedAttention: workspace is on ",
                                                   DeviceName(workspace.device()), ", expected ",
                                                   DeviceName(Device{kind, workspace.device().index})));
  }
  if (needed > 0 && workspace.data() == nullptr) {
    return absl::InvalidArgumentError("PagedAttention: workspace has no data");
  }
  return absl::OkStatus();
}

}  // namespace kiln::kernels::checks
