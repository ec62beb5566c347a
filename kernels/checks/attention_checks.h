// Argument checks for KvWrite and PagedAttention (cache shapes, the CSR attention params and
// block tables): shared by the CPU reference and the CUDA backend so both reject the same calls
// with the same messages (see check_util.h). Each takes the device kind the calling backend
// expects its views on. All return INVALID_ARGUMENT; none reads tensor data, only host
// metadata (slots, query_start, kv_len, block_table).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/checks/check_util.h"

namespace kiln::kernels::checks {

// cache.k and cache.v: F32 [num_blocks, block_size, kv_heads, head_dim] of the same shape, on
// `kind`. The paged cache is F32 on every backend (the CPU reference has no other).
absl::Status CheckKvCache(const char* op, const PagedKvLayer& cache, DeviceKind kind);

// Everything KvWrite validates: the cache, k and v F32 [t, kv_heads, head_dim], one slot per
// token, every slot in [0, num_blocks * block_size).
absl::Status CheckKvWrite(const TensorView& k, const TensorView& v,
                          std::span<const int32_t> slots, const PagedKvLayer& cache,
                          DeviceKind kind);

// Shapes of a PagedAttention call: q and out F32 [t, heads, head_dim] with heads a multiple of
// the cache's kv_heads, plus the cache check.
absl::Status CheckAttentionShapes(const TensorView& q, const PagedKvLayer& cache,
                                  const TensorView& out, DeviceKind kind);

// The CSR metadata against q's token count and the cache geometry: query_start starts at 0,
// is non-decreasing and ends at `tokens`; one kv_len per sequence, each at least its new
// tokens; block_table is num_seqs x max_blocks_per_seq and every block a sequence uses is in
// [0, num_blocks) (block_size must be >= 1 when there are sequences). On success fills
// token_seq (token -> sequence) when non-null and *max_kv (the longest kv_len, 0 without
// sequences).
absl::Status CheckAttentionParams(const AttentionParams& p, int64_t tokens, int64_t num_blocks,
                                  int64_t block_size, std::vector<int32_t>* token_seq,
                                  int64_t* max_kv);

// workspace holds at least `needed` bytes (and lives on `kind` when any are needed).
absl::Status CheckAttentionWorkspace(const TensorView& workspace, size_t needed,
                                     DeviceKind kind);

}  // namespace kiln::kernels::checks
