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
  kernels::TensorView wte_, wpe_, lnf_w_, lnf_b_, lm_head_;
  std::vector<Gpt2Layer> layers_;
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
  KILN_ASSIGN_OR_RETURN(wte_, w.Load(root + "wte.weight", {dims_.vocab, h}));
  KILN_ASSIGN_OR_RETURN(wpe_, w.Load(root + "wpe.weight", {c.max_position_embeddings, h}));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat(root, "h.", l, ".");
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
    AddLoraSite(layer.attn.q, m + "attn.c_attn", 0, 3 * h);
    AddLoraSite(layer.attn.k, m + "attn.c_attn", h, 3 * h);
    AddLoraSite(layer.attn.v, m + "attn.c_attn", 2 * h, 3 * h);
    AddLoraSite(layer.attn.o, m + "attn.c_proj");
    AddLoraSite(layer.mlp.fc, m + "mlp.c_fc");
    AddLoraSite(layer.mlp.proj, m + "mlp.c_proj");
    layers_.push_back(layer);
  }
  KILN_ASSIGN_OR_RETURN(lnf_w_, w.Load(root + "ln_f.weight", {h}));
  KILN_ASSIGN_OR_RETURN(lnf_b_, w.Load(root + "ln_f.bias", {h}));
  if (c.tie_word_embeddings) {
    lm_head_ = wte_;
  } else {
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

absl::Status Gpt2Model::Forward(const ForwardBatch& batch, KvCache& cache, ForwardOutput* out) {
  KILN_RETURN_IF_ERROR(CheckCacheShape(cache, config_.num_hidden_layers, dims_));
  KILN_ASSIGN_OR_RETURN(BatchPlan plan, PlanBatch(batch, cache, config_.max_position_embeddings, lora_sites_.size()));
  const int64_t t = plan.num_tokens(), r = static_cast<int64_t>(plan.logit_rows.size());
  size_t ws = std::max({backend_.AttentionWorkspaceBytes(plan.max_kv_len),
                        backend_.MatmulWorkspaceBytes(r, dims_.vocab, dims_.hidden, lm_head_.dtype()),
                        LoraSiteWorkspace(backend_, plan.lora, t)});
  for (const Gpt2Layer& l : layers_) {  // every layer: skip modules may leave some dense
    for (const LinearWeights* lin : {&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o, &l.mlp.fc, &l.mlp.proj}) {
      ws = std::max(ws, LinearWorkspace(backend_, *lin, t));
    }
  }
  KILN_RETURN_IF_ERROR(act_.Reserve(backend_, dims_, t, r, ws));
  const float eps = static_cast<float>(config_.norm_eps);
  KILN_RETURN_IF_ERROR(backend_.Embedding(wte_, plan.token_ids, act_.hidden));
  KILN_RETURN_IF_ERROR(backend_.Embedding(wpe_, plan.positions, act_.normed));
  KILN_RETURN_IF_ERROR(backend_.Add(act_.hidden, act_.normed, act_.hidden));
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Gpt2Layer& layer = layers_[l];
    KILN_RETURN_IF_ERROR(backend_.LayerNorm(act_.hidden, layer.ln1_w, layer.ln1_b, eps, act_.normed));
    KILN_RETURN_IF_ERROR(SelfAttention(backend_, layer.attn, /*rope=*/nullptr, plan,
                                       cache.layer(static_cast<int64_t>(l)), act_, act_.normed, act_.proj));
    KILN_RETURN_IF_ERROR(backend_.Add(act_.hidden, act_.proj, act_.hidden));
    KILN_RETURN_IF_ERROR(backend_.LayerNorm(act_.hidden, layer.ln2_w, layer.ln2_b, eps, act_.normed));
    KILN_RETURN_IF_ERROR(GeluMlp(backend_, layer.mlp, plan.lora, act_, act_.normed, act_.proj));
    KILN_RETURN_IF_ERROR(backend_.Add(act_.hidden, act_.proj, act_.hidden));
  }
  KILN_RETURN_IF_ERROR(backend_.LayerNorm(act_.hidden, lnf_w_, lnf_b_, eps, act_.normed));
  return ComputeLogits(backend_, lm_head_, plan, act_, act_.normed, out);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CausalLm>> LoadGpt2(const ModelConfig& config, const Checkpoint& checkpoint,
                                                   const LoadOptions& options, kernels::Backend& backend) {
  auto model = std::make_unique<Gpt2Model>(config, options.dtype, backend);
  KILN_RETURN_IF_ERROR(model->Load(checkpoint, options));
  return std::unique_ptr<CausalLm>(std::move(model));
}

}  // namespace kiln::engine::arch
