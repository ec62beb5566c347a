// GPT2LMHeadModel: learned absolute position embeddings, pre-LayerNorm blocks, fused c_attn
// projection, GELU MLP, lm_head tied to wte (unless the config unties it). Conv1D weights are
// stored [in, out] and transposed to [out, in] at load. Weight names: transformer.wte.weight,
// transformer.wpe.weight, transformer.h.N.{ln_1,attn.c_attn,attn.c_proj,ln_2,mlp.c_fc,
// mlp.c_proj}.{weight,bias}, transformer.ln_f.*; very old checkpoints omit "transformer.".
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

struct Gpt2Layer {
  kernels::TensorView ln1_w, ln1_b, ln2_w, ln2_b;  // [hidden]
  AttentionLayer attn;
  GeluMlpLayer mlp;
};

class Gpt2Model final : public DecoderModelBase {
 public:
  // GPT-2 has no GQA: K and V have every head.
  Gpt2Model(const ModelConfig& config, kernels::DType dtype, kernels::Backend& backend)
      : DecoderModelBase(config, dtype, backend, config.num_attention_heads) {}

  absl::Status Load(const Checkpoint& checkpoint, const LoadOptions& options);

  absl::Status Forward(const ForwardBatch& batch, KvCache& cache, ForwardOutput* out) override;

 private:
  size_t Workspace(int slot, const BatchPlan& plan, int64_t tokens, int64_t rows) const;

  kernels::TensorView wte_, wpe_, lnf_w_, lnf_b_, lm_head_;
  std::vector<Gpt2Layer> layers_;
  int wte_slot_ = 0, wpe_slot_ = 0, lnf_slot_ = 0, head_slot_ = 0;
};

// Conv1D stores [in, out]; LoadLinear transposes (before quantizing, as transformers does).
absl::StatusOr<LinearWeights> LoadConv1D(WeightLoader& w, const std::string& prefix, int64_t in, int64_t out) {
  return w.LoadLinear(prefix, out, in, /*bias=*/true, WeightLoader::LinearLayout::kConv1D);
}

absl::StatusOr<kernels::GeluKind> GeluFor(const std::string& act) {
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") return kernels::GeluKind::kTanh;
  if (act == "gelu") return kernels::GeluKind::kErf;
  return absl::UnimplementedError(absl::StrCat("activation_function \"", act,
                                               "\" is not supported for GPT2LMHeadModel; supported: gelu_new, "
                                               "gelu_pytorch_tanh, gelu"));
}

absl::Status Gpt2Model::Load(const Checkpoint& checkpoint, const LoadOptions& options) {
  const ModelConfig& c = config_;
  KILN_ASSIGN_OR_RETURN(kernels::GeluKind gelu, GeluFor(c.hidden_act));
  WeightLoader w(checkpoint, backend_, options);
  const std::string root = w.Has("transformer.wte.weight") || !w.Has("wte.weight") ? "transformer." : "";
  const int64_t h = dims_.hidden;
  KILN_ASSIGN_OR_RETURN(kernels::Backend * b, w.TargetFor(root + "wte.weight"));
  wte_slot_ = SlotFor(b);
  KILN_ASSIGN_OR_RETURN(wte_, w.Load(root + "wte.weight", {dims_.vocab, h}));
  KILN_ASSIGN_OR_RETURN(b, w.TargetFor(root + "wpe.weight"));
  wpe_slot_ = SlotFor(b);
  KILN_ASSIGN_OR_RETURN(wpe_, w.Load(root + "wpe.weight", {c.max_position_embeddings, h}));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat(root, "h.", l, ".");
    KILN_ASSIGN_OR_RETURN(b, w.TargetFor(p + "ln_1.weight"));
    layer_slot_.push_back(SlotFor(b));
    Gpt2Layer layer;
    KILN_ASSIGN_OR_RETURN(layer.ln1_w, w.Load(p + "ln_1.weight", {h}));
    KILN_ASSIGN_OR_RETURN(layer.ln1_b, w.Load(p + "ln_1.bias", {h}));
    KILN_ASSIGN_OR_RETURN(LinearWeights qkv, LoadConv1D(w, p + "attn.c_attn", h, 3 * h));
    KILN_ASSIGN_OR_RETURN(layer.attn.q, SliceLinearRows(qkv, 0, h, p + "attn.c_attn"));
    KILN_ASSIGN_OR_RETURN(layer.attn.k, SliceLinearRows(qkv, h, h, p + "attn.c_attn"));
    KILN_ASSIGN_OR_RETURN(layer.attn.v, SliceLinearRows(qkv, 2 * h, h, p + "attn.c_attn"));
    KILN_ASSIGN_OR_RETURN(layer.attn.o, LoadConv1D(w, p + "attn.c_proj", h, h));
    double scale = c.scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(dims_.head_dim)) : 1.0;
    if (c.scale_attn_by_inverse_layer_idx) scale /= static_cast<double>(l + 1);
    layer.attn.scale = static_cast<float>(scale);
    KILN_ASSIGN_OR_RETURN(layer.ln2_w, w.Load(p + "ln_2.weight", {h}));
    KILN_ASSIGN_OR_RETURN(layer.ln2_b, w.Load(p + "ln_2.bias", {h}));
    KILN_ASSIGN_OR_RETURN(layer.mlp.fc, LoadConv1D(w, p + "mlp.c_fc", h, dims_.intermediate));
    KILN_ASSIGN_OR_RETURN(layer.mlp.proj, LoadConv1D(w, p + "mlp.c_proj", dims_.intermediate, h));
    layer.mlp.kind = gelu;
    // LoRA sites carry transformers' module names (GPT2LMHeadModel: "transformer.h.N..."),
    // whatever prefix the checkpoint used; c_attn is fused, its q/k/v are three slices.
    const std::string m = absl::StrCat("transformer.h.", l, ".");
    AddLoraSite(*b, layer.attn.q, m + "attn.c_attn", 0, 3 * h);
    AddLoraSite(*b, layer.attn.k, m + "attn.c_attn", h, 3 * h);
    AddLoraSite(*b, layer.attn.v, m + "attn.c_attn", 2 * h, 3 * h);
    AddLoraSite(*b, layer.attn.o, m + "attn.c_proj");
    AddLoraSite(*b, layer.mlp.fc, m + "mlp.c_fc");
    AddLoraSite(*b, layer.mlp.proj, m + "mlp.c_proj");
    layers_.push_back(layer);
  }
  KILN_ASSIGN_OR_RETURN(b, w.TargetFor(root + "ln_f.weight"));
  lnf_slot_ = SlotFor(b);
  KILN_ASSIGN_OR_RETURN(lnf_w_, w.Load(root + "ln_f.weight", {h}));
  KILN_ASSIGN_OR_RETURN(lnf_b_, w.Load(root + "ln_f.bias", {h}));
  if (c.tie_word_embeddings) {
    lm_head_ = wte_;  // a tied head is wte's storage, on its device
    head_slot_ = wte_slot_;
  } else {
    KILN_ASSIGN_OR_RETURN(b, w.TargetFor("lm_head.weight"));
    head_slot_ = SlotFor(b);
    KILN_ASSIGN_OR_RETURN(lm_head_, w.Load("lm_head.weight", {dims_.vocab, h}));
  }
  const bool tied = c.tie_word_embeddings;
  KILN_RETURN_IF_ERROR(w.CheckAllUsed([tied](const std::string& name) {
    // Causal-mask buffers some exports still carry, and a redundant tied head.
    return absl::EndsWith(name, ".attn.bias") || absl::EndsWith(name, ".attn.masked_bias") ||
           (tied && name == "lm_head.weight");
  }));
  weight_bytes_ = w.bytes();
  buffers_ = w.TakeBuffers();
  return absl::OkStatus();
}

size_t Gpt2Model::Workspace(int slot, const BatchPlan& plan, int64_t tokens, int64_t rows) const {
  const kernels::Backend& be = backend(slot);
  size_t ws = std::max(be.AttentionWorkspaceBytes(plan.max_kv_len), LoraSiteWorkspace(be, plan.lora, tokens));
  if (rows > 0) ws = std::max(ws, be.MatmulWorkspaceBytes(rows, dims_.vocab, dims_.hidden, lm_head_.dtype()));
  for (size_t i = 0; i < layers_.size(); ++i) {  // every layer: skip modules may leave some dense
    if (layer_slot_[i] != slot) continue;
    const Gpt2Layer& l = layers_[i];
    for (const LinearWeights* lin : {&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o, &l.mlp.fc, &l.mlp.proj}) {
      ws = std::max(ws, LinearWorkspace(be, *lin, tokens));
    }
  }
  return ws;
}

absl::Status Gpt2Model::Forward(const ForwardBatch& batch, KvCache& cache, ForwardOutput* out) {
  KILN_RETURN_IF_ERROR(CheckCacheShape(cache, config_.num_hidden_layers, dims_));
  KILN_ASSIGN_OR_RETURN(BatchPlan plan, PlanBatch(batch, cache, config_.max_position_embeddings, lora_sites_.size()));
  const int64_t t = plan.num_tokens(), r = static_cast<int64_t>(plan.logit_rows.size());
  for (int s = 0; s < num_slots(); ++s) {  // one arena per device; logit rows only on the head's
    const int64_t rows = s == head_slot_ ? r : 0;
    KILN_RETURN_IF_ERROR(act(s).Reserve(backend(s), dims_, t, rows, Workspace(s, plan, t, rows)));
  }
  const float eps = static_cast<float>(config_.norm_eps);
  KILN_RETURN_IF_ERROR(backend(wte_slot_).Embedding(wte_, plan.token_ids, act(wte_slot_).hidden));
  KILN_RETURN_IF_ERROR(MoveActivations(wte_slot_, wpe_slot_, {&Activations::hidden}));
  int cur = wpe_slot_;
  KILN_RETURN_IF_ERROR(backend(cur).Embedding(wpe_, plan.positions, act(cur).normed));
  KILN_RETURN_IF_ERROR(backend(cur).Add(act(cur).hidden, act(cur).normed, act(cur).hidden));
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Gpt2Layer& layer = layers_[l];
    KILN_RETURN_IF_ERROR(MoveActivations(cur, layer_slot_[l], {&Activations::hidden}));  // the residual stream
    cur = layer_slot_[l];
    kernels::Backend& be = backend(cur);
    Activations& a = act(cur);
    KILN_RETURN_IF_ERROR(be.LayerNorm(a.hidden, layer.ln1_w, layer.ln1_b, eps, a.normed));
    KILN_RETURN_IF_ERROR(SelfAttention(be, layer.attn, /*rope=*/nullptr, plan,
                                       cache.layer(static_cast<int64_t>(l)), a, a.normed, a.proj));
    KILN_RETURN_IF_ERROR(be.Add(a.hidden, a.proj, a.hidden));
    KILN_RETURN_IF_ERROR(be.LayerNorm(a.hidden, layer.ln2_w, layer.ln2_b, eps, a.normed));
    KILN_RETURN_IF_ERROR(GeluMlp(be, layer.mlp, plan.lora, a, a.normed, a.proj));
    KILN_RETURN_IF_ERROR(be.Add(a.hidden, a.proj, a.hidden));
  }
  KILN_RETURN_IF_ERROR(MoveActivations(cur, lnf_slot_, {&Activations::hidden}));
  cur = lnf_slot_;
  KILN_RETURN_IF_ERROR(backend(cur).LayerNorm(act(cur).hidden, lnf_w_, lnf_b_, eps, act(cur).normed));
  KILN_RETURN_IF_ERROR(MoveActivations(cur, head_slot_, {&Activations::normed}));
  return ComputeLogits(backend(head_slot_), lm_head_, plan, act(head_slot_), act(head_slot_).normed, out);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CausalLm>> LoadGpt2(const ModelConfig& config, const Checkpoint& checkpoint,
                                                   const LoadOptions& options, kernels::Backend& backend) {
  auto model = std::make_unique<Gpt2Model>(config, options.dtype, backend);
  KILN_RETURN_IF_ERROR(model->Load(checkpoint, options));
  return std::unique_ptr<CausalLm>(std::move(model));
}

}  // namespace kiln::engine::arch
