// CausalLm: a loaded decoder-only language model that runs a forward pass over a batch of
// sequences against a paged KV cache, through a kernels::Backend.
//
// A batch mixes prefill chunks and decodes: each sequence brings its new token ids, the number
// of its tokens already in the cache (start_pos) and its block table. Forward writes the new
// tokens' K/V into the cache and returns fp32 logits for each sequence's last token, or for
// all of its new tokens when asked. Nothing assumes one sequence at a time, and a sequence's
// logits do not depend on which other sequences share its batch (up to float rounding of the
// GEMM kernel choice, well under 1e-6).
//
// Usage (the runtime's view):
//
//   KILN_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
//   KILN_ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::Open(dir));
//   KILN_ASSIGN_OR_RETURN(DType dtype, ResolveDType("auto", config, checkpoint.get()));
//   KILN_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> model,
//                         LoadCausalLm(config, *checkpoint, {.dtype = dtype}, backend));
//   KILN_ASSIGN_OR_RETURN(auto kv, model->CreateKvCache({.num_blocks = 256}));
//   KvBlockPool pool(kv->num_blocks());
//   std::vector<int32_t> prompt = {1, 15043, 29892}, blocks = *pool.Allocate(1);
//   ForwardBatch batch;
//   batch.sequences.push_back({.token_ids = prompt, .start_pos = 0, .block_table = blocks});
//   ForwardOutput out;
//   KILN_RETURN_IF_ERROR(model->Forward(batch, *kv, &out));
//   std::span<const float> next = out.Row(0);   // [vocab] logits of the last prompt token
//
// The checkpoint may be closed after LoadCausalLm returns: weights are copied (and converted)
// into backend memory. The backend must outlive the model and its KV caches.
//
// Several devices: LoadOptions::tensor_backend places each tensor on a backend; layers run
// where their weights are, each device with its own activation arena, and the residual
// stream is copied to the next device between stages. Logits are bit-identical to the
// single-device model's on CPU backends (the same ops on the same values, only copied).
//
// Thread-safety: Forward is not thread-safe (one step loop owns a model and its caches); the
// loaded weights are immutable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/kv_cache.h"
#include "engine/model/model_config.h"
#include "engine/quant/bnb_config.h"
#include "engine/quant/prequant/prequant_config.h"
#include "kernels/backend.h"

namespace kiln::engine {

class Checkpoint;
class LoraWeights;
struct LoraSite;

struct LoadProgress {
  std::string tensor;         // the tensor just loaded
  int64_t tensors_done = 0;
  int64_t tensors_total = 0;
  uint64_t bytes_done = 0;    // checkpoint bytes read so far
  uint64_t bytes_total = 0;
};

struct LoadOptions {
  // The compute/storage dtype of the weights (already resolved from "auto" by ResolveDType).
  // F32, F16 or BF16; checkpoint tensors are converted to it as transformers' `dtype=` does.
  kernels::DType dtype = kernels::DType::kF32;
  // Called after each tensor, on the loading thread. May be empty.
  std::function<void(const LoadProgress&)> progress = nullptr;
  // bitsandbytes quantization on load (already validated by quant::ValidateBitsAndBytes): every
  // Linear the config's ShouldQuantize accepts is quantized as bitsandbytes does (4-bit NF4/FP4
  // with optional double quant, or LLM.int8); embeddings and lm_head never are. nullopt: dense.
  std::optional<quant::BnbQuantConfig> bitsandbytes = std::nullopt;
  // A pre-quantized checkpoint's quantization (bitsandbytes-serialized, GPTQ, AWQ). LoadCausalLm
  // fills it from config.json's quantization_config / quantize_config.json; its modules are
  // loaded as stored, never re-quantized (and `bitsandbytes` is then ignored, as transformers
  // lets the checkpoint's own config win).
  std::optional<quant::PrequantConfig> prequantized = std::nullopt;
  // Multi-device placement (issue #7). Empty: every tensor goes to the backend given to
  // LoadCausalLm (the single-device path, unchanged). Otherwise the backend (not owned; must
  // outlive the model and its caches) each checkpoint tensor is uploaded to, asked with the
  // tensor's name as transformers saves it (engine/runtime/placement_glue.h resolves a
  // placement plan this way). The model then runs each decoder layer on its layer's backend,
  // the embeddings, final norm and lm_head on theirs (a tied lm_head follows the embedding),
  // and copies activations between stages (TransferActivations, layers.h). Decoder layers
  // and single modules are never split: tensors of one layer (or of the embedding, final norm,
  // lm_head) on different backends are UNIMPLEMENTED naming the tensor; a null backend is
  // INVALID_ARGUMENT naming the tensor.
  std::function<kernels::Backend*(const std::string& tensor_name)> tensor_backend = nullptr;
};

struct SequenceInput {
  std::span<const int32_t> token_ids = {};  // [n >= 1] new tokens
  int32_t start_pos = 0;                 // tokens of this sequence already in the cache
  std::span<const int32_t> block_table = {};  // >= ceil((start_pos + n) / block_size) block ids
  bool all_logits = false;               // logits for every new token, not just the last
  // The LoRA adapter this sequence runs with (engine/model/lora.h), uploaded for this model;
  // null: the base model.
  const LoraWeights* lora = nullptr;
};

struct ForwardBatch {
  std::vector<SequenceInput> sequences;
};

struct ForwardOutput {
  int64_t vocab_size = 0;
  std::vector<float> logits;       // [rows, vocab_size]
  std::vector<int64_t> row_begin;  // per sequence: its first row; rows are in token order
  std::span<const float> Row(int64_t row) const {
    return std::span<const float>(logits).subspan(static_cast<size_t>(row * vocab_size),
                                                  static_cast<size_t>(vocab_size));
  }
  // The logits of sequence s's last new token.
  std::span<const float> Last(size_t s) const;
};

class CausalLm {
 public:
  virtual ~CausalLm() = default;

  virtual const ModelConfig& config() const = 0;
  virtual kernels::DType dtype() const = 0;
  // Device bytes held by the weights.
  virtual size_t weight_bytes() const = 0;
  // weight_bytes() per device (one entry for a single-device model), in order of first use.
  virtual std::vector<DeviceBytes> weight_bytes_by_device() const = 0;
  // The Linear sites a LoRA adapter can adapt, in site order (engine/model/lora.h).
  virtual std::span<const LoraSite> lora_sites() const = 0;

  // A cache shaped for this model (layers, kv heads, head_dim); each layer's K/V on the
  // backend that layer runs on.
  virtual absl::StatusOr<std::unique_ptr<KvCache>> CreateKvCache(const KvCacheOptions& options) = 0;

  // Runs the batch. INVALID_ARGUMENT (naming the sequence and the value) for an empty sequence,
  // a token id outside the vocabulary, a negative start_pos, a position beyond what the model
  // supports (learned position tables), a block table too short for start_pos + n, or block ids
  // outside the cache; nothing is written to the cache then. The cache must come from
  // CreateKvCache of this model.
  virtual absl::Status Forward(const ForwardBatch& batch, KvCache& cache, ForwardOutput* out) = 0;
};

// Builds the model named by config.architecture from the checkpoint.
// INVALID_ARGUMENT naming the tensor for a missing, unexpected, non-float or mis-shaped
// tensor; UNIMPLEMENTED for an unsupported architecture (listing the supported ones) or
// feature (activation); RESOURCE_EXHAUSTED when the backend runs out of memory.
absl::StatusOr<std::unique_ptr<CausalLm>> LoadCausalLm(const ModelConfig& config,
                                                       const Checkpoint& checkpoint,
                                                       const LoadOptions& options,
                                                       kernels::Backend& backend);

}  // namespace kiln::engine
