// LoRA on the forward pass: one adapter's low-rank pairs on the model's device, and the
// per-batch view the layers apply (issue #6).
//
// A model numbers its LoRA-capable Linear sites 0..N-1 (CausalLm::lora_sites()): each site is
// one Linear the forward applies, named as transformers names the module that holds it
// ("model.layers.3.self_attn.q_proj"). A fused module the forward splits (GPT-2's c_attn
// into q, k, v) is several sites with the same module name and consecutive row ranges of its
// output; an adapter targeting that module gives each site the same A and the matching rows
// of B, which computes exactly PEFT's y = W x + s · B (A x) on the fused output.
//
// Each sequence of a batch names at most one adapter (SequenceInput::lora). Per Linear the
// forward computes y = W x (+ b) for every row, then for each run of consecutive sequences
// sharing an adapter adds s · (x Aᵀ) Bᵀ (Backend::LoraApply, SGMV style): one pass over the
// batch, different adapters and ranks side by side, no merged weights.
//
// Thread-safety: LoraWeights is immutable after UploadLora; many batches may read it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace kiln::engine {

// One LoRA-capable Linear site of a model.
struct LoraSite {
  std::string module;      // transformers module name, e.g. "model.layers.0.mlp.up_proj"
  int64_t out = 0;         // this site's output features
  int64_t in = 0;          // input features
  int64_t row_offset = 0;  // first row of the module's output this site computes (fused modules)
  int64_t module_out = 0;  // the whole module's output features (== out unless fused)
  kernels::TensorView dense;  // [out, in] the site's dense weight rows; empty when quantized
  // The backend of the layer that applies this site (not owned; the model's): adapter pairs
  // for the site are uploaded there, so they sit on the layer's device when a model is split
  // across devices. Null: the backend UploadLora/MergeLora are given.
  kernels::Backend* backend = nullptr;
};

// Host-side weights of one adapter module (a view; engine/adapter's loader owns the data),
// fp32, as PEFT defines them: delta = scale · x Aᵀ Bᵀ with A [rank, in], B [module_out, rank].
struct HostLoraModule {
  std::string_view module;
  int64_t rank = 0;
  float scale = 1.0f;
  std::span<const float> a;  // [rank, in]
  std::span<const float> b;  // [module_out, rank]
};

// Device-resident pairs of one adapter, indexed by site; a site the adapter does not target
// holds nothing.
class LoraWeights {
 public:
  const kernels::LoraPair* site(size_t index) const {
    return index < sites_.size() && sites_[index].has_value() ? &*sites_[index] : nullptr;
  }
  size_t num_sites() const { return sites_.size(); }
  int64_t max_rank() const { return max_rank_; }
  size_t bytes() const { return bytes_; }

 private:
  friend absl::StatusOr<LoraWeights> UploadLora(kernels::Backend& backend,
                                                std::span<const LoraSite> sites,
                                                std::span<const HostLoraModule> modules);
  std::vector<std::optional<kernels::LoraPair>> sites_;
  std::vector<kernels::DeviceBuffer> buffers_;
  int64_t max_rank_ = 0;
  size_t bytes_ = 0;
};

// Uploads `modules` for the model whose sites are `sites`, each pair to its site's backend
// (LoraSite::backend; `backend` for sites without one). INVALID_ARGUMENT naming the module
// when a module matches no site, appears twice, or its A/B sizes do not fit the site's
// in / module_out and its rank; RESOURCE_EXHAUSTED when the backend is out of memory.
absl::StatusOr<LoraWeights> UploadLora(kernels::Backend& backend, std::span<const LoraSite> sites,
                                       std::span<const HostLoraModule> modules);

// Folds `lora` into the dense weights of `sites` (W += s · B A per targeted site), as PEFT's
// merge_and_unload, on each site's backend (`backend` for sites without one); the weights are
// rounded back to their dtype. INVALID_ARGUMENT naming the
// module (and changing nothing) when a targeted site is quantized. Not thread-safe with a
// running forward: call it before the model serves.
absl::Status MergeLora(kernels::Backend& backend, std::span<const LoraSite> sites, const LoraWeights& lora);

// The adapters of one forward pass, in the layout LoraApply wants: the distinct adapters,
// and the token rows grouped into segments of one adapter each.
struct LoraBatch {
  std::vector<const LoraWeights*> adapters;  // distinct, non-null
  std::vector<int32_t> seg_start;            // [segments + 1] token rows
  std::vector<int32_t> seg_adapter;          // [segments] index into adapters, -1 = none
  int64_t max_rank = 0;
  bool empty() const { return adapters.empty(); }
};

// Applies the batch's adapters at `site` onto `out` (which already holds x·Wᵀ + b): adds
// s · (x Aᵀ) Bᵀ for the rows of every adapter that targets the site. Nothing to do when no
// adapter targets it. `pairs`/`slots` are caller-owned scratch reused across sites.
absl::Status ApplyLoraSite(kernels::Backend& backend, const LoraBatch& batch, size_t site,
                           kernels::TensorView x,    // [T, in]
                           kernels::TensorView out,  // [T, out]
                           kernels::TensorView workspace);
size_t LoraSiteWorkspace(const kernels::Backend& backend, const LoraBatch& batch, int64_t tokens);

}  // namespace kiln::engine
