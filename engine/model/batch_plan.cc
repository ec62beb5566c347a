#include "engine/model/batch_plan.h"

#include <algorithm>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace kiln::engine {

namespace {

// Extends plan.lora with sequence s's rows [query_start[s], query_start[s+1]), merging it into
// the previous segment when both use the same adapter.
absl::Status AddLoraSegment(const LoraWeights* lora, size_t s, size_t num_sites, BatchPlan& plan) {
  LoraBatch& batch = plan.lora;
  int32_t index = -1;
  if (lora != nullptr) {
    if (lora->num_sites() != num_sites) {
      return absl::InvalidArgumentError(absl::StrCat("forward: sequence ", s, " adapter has ", lora->num_sites(),
                                                     " LoRA sites; the model has ", num_sites));
    }
    auto it = std::find(batch.adapters.begin(), batch.adapters.end(), lora);
    index = static_cast<int32_t>(it - batch.adapters.begin());
    if (it == batch.adapters.end()) {
      batch.adapters.push_back(lora);
      batch.max_rank = std::max(batch.max_rank, lora->max_rank());
    }
  }
  const int32_t end = plan.query_start.back();
  if (!batch.seg_adapter.empty() && batch.seg_adapter.back() == index) {
    batch.seg_start.back() = end;
  } else {
    if (batch.seg_start.empty()) batch.seg_start.push_back(plan.query_start[s]);
    batch.seg_adapter.push_back(index);
    batch.seg_start.push_back(end);
  }
  return absl::OkStatus();
}

}  // namespace

kernels::AttentionParams BatchPlan::Attention(int32_t sliding_window, float scale) const {
  return {query_start, kv_len, block_table, max_blocks, sliding_window, scale};
}

absl::StatusOr<BatchPlan> PlanBatch(const ForwardBatch& batch, const KvCache& cache,
                                    int64_t max_positions, size_t num_lora_sites) {
  if (batch.sequences.empty()) return absl::InvalidArgumentError("forward: the batch has no sequences");
  const int64_t bs = cache.block_size();
  BatchPlan plan;
  plan.query_start.push_back(0);
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const SequenceInput& seq = batch.sequences[s];
    const int64_t n = static_cast<int64_t>(seq.token_ids.size());
    const int64_t end = int64_t{seq.start_pos} + n;
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("forward: sequence ", s, " has no new tokens"));
    if (seq.start_pos < 0) {
      return absl::InvalidArgumentError(absl::StrCat("forward: sequence ", s, " start_pos ", seq.start_pos, " < 0"));
    }
    if (end > std::numeric_limits<int32_t>::max() / 2 || (max_positions > 0 && end > max_positions)) {
      return absl::InvalidArgumentError(absl::StrCat("forward: sequence ", s, " reaches position ", end - 1,
                                                     "; the model supports positions below ",
                                                     max_positions > 0 ? max_positions : std::numeric_limits<int32_t>::max() / 2));
    }
    const int64_t blocks = (end + bs - 1) / bs;
    if (static_cast<int64_t>(seq.block_table.size()) < blocks) {
      return absl::InvalidArgumentError(absl::StrCat("forward: sequence ", s, " needs ", blocks,
                                                     " blocks for ", end, " tokens, its block table has ",
                                                     seq.block_table.size()));
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const int32_t id = seq.block_table[static_cast<size_t>(b)];
      if (id < 0 || id >= cache.num_blocks()) {
        return absl::InvalidArgumentError(absl::StrCat("forward: sequence ", s, " block ", id,
                                                       " is outside [0, ", cache.num_blocks(), ")"));
      }
    }
    plan.max_blocks = std::max(plan.max_blocks, static_cast<int32_t>(blocks));
    plan.max_kv_len = std::max(plan.max_kv_len, end);
    plan.kv_len.push_back(static_cast<int32_t>(end));
    plan.row_begin.push_back(static_cast<int64_t>(plan.logit_rows.size()));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = seq.start_pos + i;
      plan.token_ids.push_back(seq.token_ids[static_cast<size_t>(i)]);
      plan.positions.push_back(static_cast<int32_t>(pos));
      plan.slots.push_back(static_cast<int32_t>(seq.block_table[static_cast<size_t>(pos / bs)] * bs + pos % bs));
      if (seq.all_logits || i == n - 1) plan.logit_rows.push_back(static_cast<int32_t>(plan.token_ids.size() - 1));
    }
    plan.query_start.push_back(static_cast<int32_t>(plan.token_ids.size()));
    KILN_RETURN_IF_ERROR(AddLoraSegment(seq.lora, s, num_lora_sites, plan));
  }
  if (plan.lora.adapters.empty()) plan.lora = LoraBatch{};  // base-only batch: nothing to apply
  plan.block_table.assign(batch.sequences.size() * static_cast<size_t>(plan.max_blocks), 0);
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const int64_t blocks = (plan.kv_len[s] + bs - 1) / bs;
    std::copy_n(batch.sequences[s].block_table.begin(), blocks,
                plan.block_table.begin() + static_cast<ptrdiff_t>(s * static_cast<size_t>(plan.max_blocks)));
  }
  return plan;
}

std::span<const float> ForwardOutput::Last(size_t s) const {
  const int64_t next = s + 1 < row_begin.size() ? row_begin[s + 1]
                                                : static_cast<int64_t>(logits.size()) / std::max<int64_t>(vocab_size, 1);
  return Row(next - 1);
}

}  // namespace kiln::engine
