// Shared building blocks of the architectures in engine/model/arch/: linear layers, the
// paged self-attention block, gated (SwiGLU) and GELU MLPs, logits, and the activation arena.
// Each block is a short sequence of Backend ops over views; weights are views into buffers the
// model owns. Internal to engine/model.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/batch_plan.h"
#include "engine/model/causal_lm.h"
#include "engine/model/lora.h"
#include "engine/model/rope.h"
#include "kernels/backend.h"
#include "kernels/quant/quant_matrix.h"

namespace kiln::engine {

// One Linear layer's weights: dense (`w`) or quantized (`quant`, kernels/quant/quant_matrix.h),
// never both, plus an optional dense bias. ApplyLinear is the one place a Linear is applied.
struct LinearWeights {
  kernels::TensorView w;                          // [out, in] dense; empty when quantized
  std::optional<kernels::QuantizedMatrix> quant;  // [out, in] quantized; nullopt when dense
  kernels::TensorView b;                          // [out] or empty
  int32_t lora_site = -1;  // index into the model's lora_sites(); -1: LoRA never applies
  bool quantized() const { return quant.has_value(); }
  int64_t out() const { return quant ? quant->rows : w.dim(0); }
  int64_t in() const { return quant ? quant->cols : w.dim(1); }
};

// Rows [begin, begin + count) of `lin` as a Linear of their own (GPT-2's fused c_attn split
// into q/k/v), sharing the storage. Dense and int8 weights split anywhere; bnb 4-bit weights
// only where the split falls on a quantization block and a byte (begin * in a multiple of
// the blocksize and of 2), else UNIMPLEMENTED naming `name`. GPTQ/AWQ: UNIMPLEMENTED.
absl::StatusOr<LinearWeights> SliceLinearRows(const LinearWeights& lin, int64_t begin, int64_t count,
                                              const std::string& name);

struct ModelDims {
  int64_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0, vocab = 0;
};

// Activation buffers of one forward pass, reused across calls (one allocation; it grows only
// when a batch is larger than any before it, so a runtime that warms up with its largest batch
// never allocates in the step loop). After Reserve the views have this pass's row counts.
class Activations {
 public:
  absl::Status Reserve(kernels::Backend& backend, const ModelDims& dims, int64_t tokens,
                       int64_t logit_rows, size_t workspace_bytes);

  kernels::TensorView hidden;     // [T, hidden] the residual stream
  kernels::TensorView normed;     // [T, hidden]
  kernels::TensorView q;          // [T, heads, head_dim]
  kernels::TensorView k, v;       // [T, kv_heads, head_dim]
  kernels::TensorView attn;       // [T, heads, head_dim]
  kernels::TensorView proj;       // [T, hidden] block outputs
  kernels::TensorView gate, up;   // [T, intermediate]
  kernels::TensorView rows;       // [R, hidden] hidden states that produce logits
  kernels::TensorView logits;     // [R, vocab]
  kernels::TensorView workspace;  // [workspace_bytes] U8

 private:
  kernels::DeviceBuffer buffer_;
  size_t capacity_ = 0;
};

// Copies activations `src` (on `from`'s device) into `dst` (on `to`'s device); same shape and
// dtype. The one place activations cross devices: between CPU backends (logical devices) it
// is one host copy; a device backend goes through `staging` (host memory reused across calls)
// until a peer copy (e.g. cudaMemcpyPeerAsync) slots in here.
absl::Status TransferActivations(kernels::Backend& from, kernels::TensorView src,  // [rows, cols]
                                 kernels::Backend& to, kernels::TensorView dst,    // [rows, cols]
                                 std::vector<uint8_t>& staging);

// What every architecture shares: its config and dims, weight dtype, backends, the device
// buffers that hold its weights, one activation arena per device, and the CausalLm accessors
// over them. An architecture derives from it and adds its tensors, Load and Forward.
//
// Devices: a model runs on one or more backends ("slots"), added by SlotFor as Load meets the
// backends its weights are placed on (LoadOptions::tensor_backend; without it, only the
// backend given to LoadCausalLm). Each slot has its own Activations; an architecture's Forward
// runs each stage on its slot and calls MoveActivations when the next stage is elsewhere.
class DecoderModelBase : public CausalLm {
 public:
  const ModelConfig& config() const override { return config_; }
  kernels::DType dtype() const override { return dtype_; }
  size_t weight_bytes() const override { return weight_bytes_; }
  std::vector<DeviceBytes> weight_bytes_by_device() const override;
  std::span<const LoraSite> lora_sites() const override { return lora_sites_; }
  absl::StatusOr<std::unique_ptr<KvCache>> CreateKvCache(const KvCacheOptions& options) override;

 protected:
  // `kv_heads`: the heads K and V have (GQA), which may differ from the config's spelling.
  DecoderModelBase(const ModelConfig& config, kernels::DType dtype, kernels::Backend& backend,
                   int64_t kv_heads);

  // Makes `lin` LoRA site number lora_sites_.size(), for the transformers module `module`,
  // applied on `backend`; `row_offset`/`module_out` place a slice of a fused module (GPT-2
  // c_attn) in its output.
  void AddLoraSite(kernels::Backend& backend, LinearWeights& lin, const std::string& module,
                   int64_t row_offset = 0, int64_t module_out = 0) {
    lin.lora_site = static_cast<int32_t>(lora_sites_.size());
    lora_sites_.push_back(
        {module, lin.out(), lin.in(), row_offset, module_out > 0 ? module_out : lin.out(), lin.w, &backend});
  }

  struct DeviceSlot {
    kernels::Backend* backend = nullptr;  // not owned
    Activations act;
  };
  // The slot of `backend`, added when new.
  int SlotFor(kernels::Backend* backend);
  kernels::Backend& backend(int slot) { return *slots_[static_cast<size_t>(slot)]->backend; }
  const kernels::Backend& backend(int slot) const { return *slots_[static_cast<size_t>(slot)]->backend; }
  Activations& act(int slot) { return slots_[static_cast<size_t>(slot)]->act; }
  int num_slots() const { return static_cast<int>(slots_.size()); }
  // Copies the given Activations fields (e.g. &Activations::hidden) from slot `from` to slot
  // `to` (both already Reserve()d for this pass); nothing when from == to.
  absl::Status MoveActivations(int from, int to, std::initializer_list<kernels::TensorView Activations::*> fields);

  ModelConfig config_;
  ModelDims dims_;
  kernels::DType dtype_;
  kernels::Backend& backend_;  // the backend given to LoadCausalLm (the default placement)
  std::vector<kernels::DeviceBuffer> buffers_;
  size_t weight_bytes_ = 0;
  std::vector<LoraSite> lora_sites_;
  std::vector<int> layer_slot_;  // [num_hidden_layers] the slot each decoder layer runs on

 private:
  std::vector<std::unique_ptr<DeviceSlot>> slots_;
  std::vector<uint8_t> staging_;  // TransferActivations' host bounce buffer
};

// Workspace one matmul with `m` rows through `lin` needs (dense or quantized).
size_t LinearWorkspace(const kernels::Backend& backend, const LinearWeights& lin, int64_t m);
// out = x · W^T (+ b): Backend::Matmul for dense weights, Backend::QuantMatmul for quantized;
// then, for the rows whose adapter targets this Linear, + s · (x Aᵀ) Bᵀ (engine/model/lora.h).
// The one place a Linear is applied. The workspace must also cover LoraSiteWorkspace.
absl::Status ApplyLinear(kernels::Backend& backend, const LinearWeights& lin, const LoraBatch& lora,
                         kernels::TensorView x,    // [m, in]
                         kernels::TensorView out,  // [m, out]
                         kernels::TensorView workspace);

struct AttentionLayer {
  LinearWeights q, k, v, o;
  int32_t sliding_window = 0;  // 0: full causal
  float scale = 1.0f;
};

// q/k/v projections, RoPE (when `rope` is non-null), KV write, paged attention, o projection.
absl::Status SelfAttention(kernels::Backend& backend, const AttentionLayer& layer,
                           const RotaryEmbedding* rope, const BatchPlan& plan,
                           const kernels::PagedKvLayer& cache, Activations& act,
                           kernels::TensorView x,     // [T, hidden]
                           kernels::TensorView out);  // [T, hidden]

struct GatedMlpLayer {
  LinearWeights gate, up, down;
};
// down(silu(gate(x)) * up(x)).
absl::Status GatedMlp(kernels::Backend& backend, const GatedMlpLayer& layer, const LoraBatch& lora,
                      Activations& act,
                      kernels::TensorView x, kernels::TensorView out);  // [T, hidden] both

struct GeluMlpLayer {
  LinearWeights fc, proj;
  kernels::GeluKind kind = kernels::GeluKind::kTanh;
};
// proj(gelu(fc(x))).
absl::Status GeluMlp(kernels::Backend& backend, const GeluMlpLayer& layer, const LoraBatch& lora,
                     Activations& act,
                     kernels::TensorView x, kernels::TensorView out);  // [T, hidden] both

// Logits of the plan's logit rows of `final_hidden` (already normed) into `out`.
absl::Status ComputeLogits(kernels::Backend& backend, kernels::TensorView lm_head,  // [vocab, hidden]
                           const BatchPlan& plan, Activations& act,
                           kernels::TensorView final_hidden,  // [T, hidden]
                           ForwardOutput* out);

// INVALID_ARGUMENT unless the cache matches the model's layers, kv heads and head_dim.
absl::Status CheckCacheShape(const KvCache& cache, int64_t layers, const ModelDims& dims);

}  // namespace kiln::engine
