// Llama family: LlamaForCausalLM, and via config flags MistralForCausalLM (sliding window) and
// Qwen2ForCausalLM (q/k/v biases, per-layer sliding window). Pre-norm decoder: RMSNorm,
// GQA self-attention with RoPE, SwiGLU MLP; lm_head optionally tied to the embeddings.
// Weight names as transformers saves them: model.embed_tokens.weight,
// model.layers.N.{input_layernorm,self_attn.{q,k,v,o}_proj,post_attention_layernorm,
// mlp.{gate,up,down}_proj}.*, model.norm.weight, lm_head.weight.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/arch/arch.h"
#include "engine/model/layers.h"
#include "engine/model/weights.h"

namespace kiln::engine::arch {
namespace {

struct LlamaLayer {
  kernels::TensorView input_norm, post_norm;  // [hidden]
  AttentionLayer attn;
  GatedMlpLayer mlp;
};

class LlamaModel final : public DecoderModelBase {
 public:
  LlamaModel(const ModelConfig& config, kernels::DType dtype, kernels::Backend& backend, RotaryEmbedding rope)
      : DecoderModelBase(config, dtype, backend, config.num_key_value_heads), rope_(std::move(rope)) {}

  absl::Status Load(const Checkpoint& checkpoint, const LoadOptions& options);

  absl::Status Forward(const ForwardBatch& batch, KvCache& cache, ForwardOutput* out) override;

 private:
  // Workspace of one pass on `slot`: its layers' Linears, attention, LoRA, and the lm_head
  // GEMM when `rows` > 0 (the head's slot).
  size_t Workspace(int slot, const BatchPlan& plan, int64_t tokens, int64_t rows, int64_t max_kv) const;

  RotaryEmbedding rope_;
  kernels::TensorView embed_, final_norm_, lm_head_;
  std::vector<LlamaLayer> layers_;
  int embed_slot_ = 0, norm_slot_ = 0, head_slot_ = 0;
};

absl::Status LlamaModel::Load(const Checkpoint& checkpoint, const LoadOptions& options) {
  const ModelConfig& c = config_;
  if (c.hidden_act != "silu") {
    return absl::UnimplementedError(absl::StrCat("hidden_act \"", c.hidden_act, "\" is not supported for ",
                                                 std::string(ArchitectureName(c.architecture)), "; supported: silu"));
  }
  WeightLoader w(checkpoint, backend_, options);
  const int64_t h = dims_.hidden, qd = dims_.heads * dims_.head_dim, kd = dims_.kv_heads * dims_.head_dim;
  KILN_ASSIGN_OR_RETURN(kernels::Backend * b, w.TargetFor("model.embed_tokens.weight"));
  embed_slot_ = SlotFor(b);
  KILN_ASSIGN_OR_RETURN(embed_, w.Load("model.embed_tokens.weight", {dims_.vocab, h}));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    KILN_ASSIGN_OR_RETURN(b, w.TargetFor(p + "input_layernorm.weight"));
    layer_slot_.push_back(SlotFor(b));
    LlamaLayer layer;
    KILN_ASSIGN_OR_RETURN(layer.input_norm, w.Load(p + "input_layernorm.weight", {h}));
    KILN_ASSIGN_OR_RETURN(layer.attn.q, w.LoadLinear(p + "self_attn.q_proj", qd, h, c.q_bias));
    KILN_ASSIGN_OR_RETURN(layer.attn.k, w.LoadLinear(p + "self_attn.k_proj", kd, h, c.k_bias));
    KILN_ASSIGN_OR_RETURN(layer.attn.v, w.LoadLinear(p + "self_attn.v_proj", kd, h, c.v_bias));
    KILN_ASSIGN_OR_RETURN(layer.attn.o, w.LoadLinear(p + "self_attn.o_proj", h, qd, c.o_bias));
    KILN_ASSIGN_OR_RETURN(layer.post_norm, w.Load(p + "post_attention_layernorm.weight", {h}));
    KILN_ASSIGN_OR_RETURN(layer.mlp.gate, w.LoadLinear(p + "mlp.gate_proj", dims_.intermediate, h, c.mlp_bias));
    KILN_ASSIGN_OR_RETURN(layer.mlp.up, w.LoadLinear(p + "mlp.up_proj", dims_.intermediate, h, c.mlp_bias));
    KILN_ASSIGN_OR_RETURN(layer.mlp.down, w.LoadLinear(p + "mlp.down_proj", h, dims_.intermediate, c.mlp_bias));
    const bool sliding = c.sliding_window.has_value() && static_cast<size_t>(l) < c.layer_is_sliding.size() &&
                         c.layer_is_sliding[static_cast<size_t>(l)];
    AddLoraSite(*b, layer.attn.q, p + "self_attn.q_proj");
    AddLoraSite(*b, layer.attn.k, p + "self_attn.k_proj");
    AddLoraSite(*b, layer.attn.v, p + "self_attn.v_proj");
    AddLoraSite(*b, layer.attn.o, p + "self_attn.o_proj");
    AddLoraSite(*b, layer.mlp.gate, p + "mlp.gate_proj");
    AddLoraSite(*b, layer.mlp.up, p + "mlp.up_proj");
    AddLoraSite(*b, layer.mlp.down, p + "mlp.down_proj");
    layer.attn.sliding_window = sliding ? static_cast<int32_t>(*c.sliding_window) : 0;
    layer.attn.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dims_.head_dim)));
    layers_.push_back(layer);
  }
  KILN_ASSIGN_OR_RETURN(b, w.TargetFor("model.norm.weight"));
  norm_slot_ = SlotFor(b);
  KILN_ASSIGN_OR_RETURN(final_norm_, w.Load("model.norm.weight", {h}));
  if (c.tie_word_embeddings) {
    lm_head_ = embed_;  // a tied head is the embedding's storage, on its device
    head_slot_ = embed_slot_;
  } else {
    KILN_ASSIGN_OR_RETURN(b, w.TargetFor("lm_head.weight"));
    head_slot_ = SlotFor(b);
    KILN_ASSIGN_OR_RETURN(lm_head_, w.Load("lm_head.weight", {dims_.vocab, h}));
  }
  const bool tied = c.tie_word_embeddings;
  KILN_RETURN_IF_ERROR(w.CheckAllUsed([tied](const std::string& name) {
    return absl::EndsWith(name, ".rotary_emb.inv_freq") || (tied && name == "lm_head.weight");
  }));
  weight_bytes_ = w.bytes();
  buffers_ = w.TakeBuffers();
  return absl::OkStatus();
}

size_t LlamaModel::Workspace(int slot, const BatchPlan& plan, int64_t tokens, int64_t rows, int64_t max_kv) const {
  const kernels::Backend& be = backend(slot);
  size_t ws = std::max(be.AttentionWorkspaceBytes(max_kv), LoraSiteWorkspace(be, plan.lora, tokens));
  if (rows > 0) ws = std::max(ws, be.MatmulWorkspaceBytes(rows, dims_.vocab, dims_.hidden, lm_head_.dtype()));
  // Every layer: with llm_int8_skip_modules some layers may be dense and others quantized.
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (layer_slot_[i] != slot) continue;
    const LlamaLayer& l = layers_[i];
    for (const LinearWeights* lin : {&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o, &l.mlp.gate, &l.mlp.up, &l.mlp.down}) {
      ws = std::max(ws, LinearWorkspace(be, *lin, tokens));
    }
  }
  return ws;
}

absl::Status LlamaModel::Forward(const ForwardBatch& batch, KvCache& cache, ForwardOutput* out) {
  KILN_RETURN_IF_ERROR(CheckCacheShape(cache, config_.num_hidden_layers, dims_));
  KILN_ASSIGN_OR_RETURN(BatchPlan plan, PlanBatch(batch, cache, /*max_positions=*/0, lora_sites_.size()));
  const int64_t t = plan.num_tokens(), r = static_cast<int64_t>(plan.logit_rows.size());
  for (int s = 0; s < num_slots(); ++s) {  // one arena per device; logit rows only on the head's
    const int64_t rows = s == head_slot_ ? r : 0;
    KILN_RETURN_IF_ERROR(act(s).Reserve(backend(s), dims_, t, rows, Workspace(s, plan, t, rows, plan.max_kv_len)));
  }
  const float eps = static_cast<float>(config_.norm_eps);
  int cur = embed_slot_;
  KILN_RETURN_IF_ERROR(backend(cur).Embedding(embed_, plan.token_ids, act(cur).hidden));
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LlamaLayer& layer = layers_[l];
    // The residual stream crosses devices with the previous MLP output not yet folded in.
    if (l == 0) {
      KILN_RETURN_IF_ERROR(MoveActivations(cur, layer_slot_[l], {&Activations::hidden}));
    } else {
      KILN_RETURN_IF_ERROR(MoveActivations(cur, layer_slot_[l], {&Activations::hidden, &Activations::proj}));
    }
    cur = layer_slot_[l];
    kernels::Backend& be = backend(cur);
    Activations& a = act(cur);
    if (l == 0) {
      KILN_RETURN_IF_ERROR(be.RmsNorm(a.hidden, layer.input_norm, eps, a.normed));
    } else {  // fold the previous layer's MLP output into the residual
      KILN_RETURN_IF_ERROR(be.AddRmsNorm(a.hidden, a.proj, layer.input_norm, eps, a.normed));
    }
    KILN_RETURN_IF_ERROR(SelfAttention(be, layer.attn, &rope_, plan, cache.layer(static_cast<int64_t>(l)),
                                       a, a.normed, a.proj));
    KILN_RETURN_IF_ERROR(be.AddRmsNorm(a.hidden, a.proj, layer.post_norm, eps, a.normed));
    KILN_RETURN_IF_ERROR(GatedMlp(be, layer.mlp, plan.lora, a, a.normed, a.proj));
  }
  if (layers_.empty()) {
    KILN_RETURN_IF_ERROR(MoveActivations(cur, norm_slot_, {&Activations::hidden}));
    cur = norm_slot_;
    KILN_RETURN_IF_ERROR(backend(cur).RmsNorm(act(cur).hidden, final_norm_, eps, act(cur).normed));
  } else {
    KILN_RETURN_IF_ERROR(MoveActivations(cur, norm_slot_, {&Activations::hidden, &Activations::proj}));
    cur = norm_slot_;
    KILN_RETURN_IF_ERROR(backend(cur).AddRmsNorm(act(cur).hidden, act(cur).proj, final_norm_, eps, act(cur).normed));
  }
  KILN_RETURN_IF_ERROR(MoveActivations(cur, head_slot_, {&Activations::normed}));
  return ComputeLogits(backend(head_slot_), lm_head_, plan, act(head_slot_), act(head_slot_).normed, out);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CausalLm>> LoadLlama(const ModelConfig& config, const Checkpoint& checkpoint,
                                                    const LoadOptions& options, kernels::Backend& backend) {
  if (!config.uses_rope) return absl::InvalidArgumentError("llama family: config has no rotary embedding");
  KILN_ASSIGN_OR_RETURN(RotaryEmbedding rope, RotaryEmbedding::Create(config));
  auto model = std::make_unique<LlamaModel>(config, options.dtype, backend, std::move(rope));
  KILN_RETURN_IF_ERROR(model->Load(checkpoint, options));
  return std::unique_ptr<CausalLm>(std::move(model));
}

}  // namespace kiln::engine::arch
