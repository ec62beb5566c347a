// BatchPlan: the host-side metadata of one forward pass, derived and validated from a
// ForwardBatch: flattened token ids, positions, cache slots, and the CSR attention layout.
// Internal to engine/model (architectures and layers use it).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/causal_lm.h"
#include "engine/model/lora.h"
#include "kernels/backend.h"

namespace kiln::engine {

struct BatchPlan {
  std::vector<int32_t> token_ids;    // [T]
  std::vector<int32_t> positions;    // [T]
  std::vector<int32_t> slots;        // [T] block * block_size + offset
  std::vector<int32_t> query_start;  // [S + 1]
  std::vector<int32_t> kv_len;       // [S]
  std::vector<int32_t> block_table;  // [S, max_blocks]
  int32_t max_blocks = 0;
  int64_t max_kv_len = 0;
  std::vector<int32_t> logit_rows;   // [R] token rows whose logits are returned
  std::vector<int64_t> row_begin;    // [S] first logits row of each sequence
  LoraBatch lora;                    // the sequences' adapters (empty: none has one)

  int64_t num_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  size_t num_seqs() const { return kv_len.size(); }
  // Attention params for this batch (spans point into this plan).
  kernels::AttentionParams Attention(int32_t sliding_window, float scale) const;
};

// INVALID_ARGUMENT naming the sequence for: an adapter uploaded for a model with another
// number of LoRA sites than `num_lora_sites`, no sequences, an empty sequence, negative
// start_pos, start_pos + n > max_positions (when max_positions > 0), a block table shorter than
// needed, or a block id outside [0, cache.num_blocks()). Token ids are checked by the
// embedding op against the vocabulary.
absl::StatusOr<BatchPlan> PlanBatch(const ForwardBatch& batch, const KvCache& cache,
                                    int64_t max_positions, size_t num_lora_sites);

}  // namespace kiln::engine
