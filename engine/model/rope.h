// Rotary position embeddings: inverse frequencies computed exactly as transformers 5.23's
// ROPE_INIT_FUNCTIONS do (default, linear, dynamic NTK, llama3, yarn) — the same float32
// operation order, so the tables match `rotary_emb.inv_freq` to the last bit or one ulp — and
// applied per batch through Backend::Rope.
//
// Dynamic NTK: transformers recomputes inv_freq from the longest position in the forward call
// once it exceeds max_position_embeddings. kiln does the same per sequence (seq_len = its
// start_pos + new tokens), so a sequence's result never depends on its batch neighbours; keys
// cached in earlier steps keep the rotation they were written with, as in transformers.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/batch_plan.h"
#include "engine/model/model_config.h"
#include "kernels/backend.h"

namespace kiln::engine {

struct RopeTables {
  std::vector<float> inv_freq;  // [rotary_dim / 2]
  float attention_scaling = 1.0f;
};

// `seq_len` only matters for dynamic scaling (nullopt = at init, as transformers' __init__).
// INVALID_ARGUMENT when the rotary dim is not a positive even number.
absl::StatusOr<RopeTables> ComputeRopeTables(const ModelConfig& config,
                                             std::optional<int64_t> seq_len = std::nullopt);

class RotaryEmbedding {
 public:
  static absl::StatusOr<RotaryEmbedding> Create(const ModelConfig& config);
  const RopeTables& tables() const { return tables_; }
  // Rotates x in place at the plan's positions.
  absl::Status Apply(kernels::Backend& backend, const BatchPlan& plan,
                     kernels::TensorView x) const;  // [T, heads, head_dim] F32

 private:
  ModelConfig config_;
  RopeTables tables_;
};

}  // namespace kiln::engine
