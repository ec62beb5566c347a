#include "engine/placement/module_sizes.h"

#include <algorithm>
#include <limits>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiln::engine::placement {
namespace {

using kernels::DType;

std::string ActivationClass(const std::string& act) {
  if (act == "silu") return "SiLUActivation";
  if (act == "swish") return "SiLU";
  if (act == "gelu") return "GELUActivation";
  if (act == "gelu_new") return "NewGELUActivation";
  if (act == "gelu_fast") return "FastGELUActivation";
  if (act == "gelu_pytorch_tanh") return "GELUTanh";
  if (act == "quick_gelu") return "QuickGELUActivation";
  if (act == "relu") return "ReLU";
  return "Activation";  // parameterless either way; only the name shows in messages
}

// Builds the tree in definition order; tensors are appended in named_parameters() order
// because every Add* call happens in the order transformers' __init__ registers them.
class Builder {
 public:
  explicit Builder(ModelLayout* layout) : layout_(layout) {
    layout_->modules.push_back(ModuleInfo{"", "", {}, {}, {}});
  }

  int AddModule(int parent, const std::string& local, const std::string& class_name) {
    ModuleInfo m;
    m.name = Join(layout_->modules[parent].name, local);
    m.class_name = class_name;
    layout_->modules.push_back(std::move(m));
    const int id = static_cast<int>(layout_->modules.size()) - 1;
    layout_->modules[parent].children.push_back(id);
    return id;
  }

  void AddTensor(int module, const std::string& local, std::vector<int64_t> shape, DType dtype,
                 TensorKind kind) {
    TensorInfo t;
    t.name = Join(layout_->modules[module].name, local);
    t.shape = std::move(shape);
    t.dtype = dtype;
    t.kind = kind;
    layout_->tensors.push_back(std::move(t));
    const int id = static_cast<int>(layout_->tensors.size()) - 1;
    (kind == TensorKind::kParameter ? layout_->modules[module].params
                                    : layout_->modules[module].buffers)
        .push_back(id);
  }

  // nn.Linear / Conv1D: weight (+ bias).
  int AddLinear(int parent, const std::string& local, const std::string& class_name,
                std::vector<int64_t> weight_shape, int64_t bias_size, bool bias, DType dtype) {
    const int m = AddModule(parent, local, class_name);
    AddTensor(m, "weight", std::move(weight_shape), dtype, TensorKind::kParameter);
    if (bias) AddTensor(m, "bias", {bias_size}, dtype, TensorKind::kParameter);
    return m;
  }

  void AddLeaf(int parent, const std::string& local, const std::string& class_name) {
    AddModule(parent, local, class_name);
  }

 private:
  static std::string Join(const std::string& prefix, const std::string& local) {
    return prefix.empty() ? local : absl::StrCat(prefix, ".", local);
  }
  ModelLayout* layout_;
};

std::string ClassPrefix(Architecture a) {
  switch (a) {
    case Architecture::kLlama: return "Llama";
    case Architecture::kMistral: return "Mistral";
    case Architecture::kQwen2: return "Qwen2";
    case Architecture::kGpt2: return "GPT2";
  }
  return "";
}

void BuildLlamaLike(const ModelConfig& c, DType dt, ModelLayout* layout) {
  Builder b(layout);
  const std::string p = ClassPrefix(c.architecture);
  layout->modules[0].class_name = std::string(ArchitectureName(c.architecture));
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim, inter = c.intermediate_size;
  const int model = b.AddModule(0, "model", p + "Model");
  const int embed = b.AddModule(model, "embed_tokens", "Embedding");
  b.AddTensor(embed, "weight", {c.vocab_size, h}, dt, TensorKind::kParameter);
  const int layers = b.AddModule(model, "layers", "ModuleList");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const int layer = b.AddModule(layers, absl::StrCat(i), p + "DecoderLayer");
    const int attn = b.AddModule(layer, "self_attn", p + "Attention");
    b.AddLinear(attn, "q_proj", "Linear", {q, h}, q, c.q_bias, dt);
    b.AddLinear(attn, "k_proj", "Linear", {kv, h}, kv, c.k_bias, dt);
    b.AddLinear(attn, "v_proj", "Linear", {kv, h}, kv, c.v_bias, dt);
    b.AddLinear(attn, "o_proj", "Linear", {h, q}, h, c.o_bias, dt);
    const int mlp = b.AddModule(layer, "mlp", p + "MLP");
    b.AddLinear(mlp, "gate_proj", "Linear", {inter, h}, inter, c.mlp_bias, dt);
    b.AddLinear(mlp, "up_proj", "Linear", {inter, h}, inter, c.mlp_bias, dt);
    b.AddLinear(mlp, "down_proj", "Linear", {h, inter}, h, c.mlp_bias, dt);
    b.AddLeaf(mlp, "act_fn", ActivationClass(c.hidden_act));
    for (const char* norm : {"input_layernorm", "post_attention_layernorm"}) {
      const int n = b.AddModule(layer, norm, p + "RMSNorm");
      b.AddTensor(n, "weight", {h}, dt, TensorKind::kParameter);
    }
  }
  const int norm = b.AddModule(model, "norm", p + "RMSNorm");
  b.AddTensor(norm, "weight", {h}, dt, TensorKind::kParameter);
  const int rotary = b.AddModule(model, "rotary_emb", p + "RotaryEmbedding");
  b.AddLinear(0, "lm_head", "Linear", {c.vocab_size, h}, 0, false, dt);
  // inv_freq = 1 / base^(arange(0, dim, 2) / dim): ceil(dim / 2) float32 values, registered
  // after every parameter in named_buffers() order (buffers list after parameters).
  const auto rotary_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * c.rope.partial_rotary_factor);
  const int64_t n_freq = (rotary_dim + 1) / 2;
  b.AddTensor(rotary, "inv_freq", {n_freq}, DType::kF32, TensorKind::kBuffer);
  b.AddTensor(rotary, "original_inv_freq", {n_freq}, DType::kF32, TensorKind::kBuffer);
  layout->no_split_module_classes = {p + "DecoderLayer"};
}

void BuildGpt2(const ModelConfig& c, DType dt, ModelLayout* layout) {
  Builder b(layout);
  layout->modules[0].class_name = "GPT2LMHeadModel";
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  const int tr = b.AddModule(0, "transformer", "GPT2Model");
  const int wte = b.AddModule(tr, "wte", "Embedding");
  b.AddTensor(wte, "weight", {c.vocab_size, h}, dt, TensorKind::kParameter);
  const int wpe = b.AddModule(tr, "wpe", "Embedding");
  b.AddTensor(wpe, "weight", {c.max_position_embeddings, h}, dt, TensorKind::kParameter);
  b.AddLeaf(tr, "drop", "Dropout");
  const int hs = b.AddModule(tr, "h", "ModuleList");
  auto layer_norm = [&](int parent, const char* name) {
    const int n = b.AddModule(parent, name, "LayerNorm");
    b.AddTensor(n, "weight", {h}, dt, TensorKind::kParameter);
    b.AddTensor(n, "bias", {h}, dt, TensorKind::kParameter);
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const int block = b.AddModule(hs, absl::StrCat(i), "GPT2Block");
    layer_norm(block, "ln_1");
    const int attn = b.AddModule(block, "attn", "GPT2Attention");
    b.AddLinear(attn, "c_attn", "Conv1D", {h, 3 * h}, 3 * h, true, dt);
    b.AddLinear(attn, "c_proj", "Conv1D", {h, h}, h, true, dt);
    b.AddLeaf(attn, "attn_dropout", "Dropout");
    b.AddLeaf(attn, "resid_dropout", "Dropout");
    layer_norm(block, "ln_2");
    const int mlp = b.AddModule(block, "mlp", "GPT2MLP");
    b.AddLinear(mlp, "c_fc", "Conv1D", {h, inter}, inter, true, dt);
    b.AddLinear(mlp, "c_proj", "Conv1D", {inter, h}, h, true, dt);
    b.AddLeaf(mlp, "act", ActivationClass(c.hidden_act));
    b.AddLeaf(mlp, "dropout", "Dropout");
  }
  layer_norm(tr, "ln_f");
  b.AddLinear(0, "lm_head", "Linear", {c.vocab_size, h}, 0, false, dt);
  layout->no_split_module_classes = {"GPT2Block"};
}

// transformers' get_keys_to_not_convert: tied keys, the last parameter's module and the
// output embedding, with ".weight" stripped.
std::set<std::string> DefaultUnconverted(const ModelLayout& layout) {
  std::set<std::string> keys{"lm_head"};
  auto strip = [](std::string s) {
    if (absl::EndsWith(s, ".weight")) s.resize(s.size() - 7);
    return s;
  };
  std::string last;
  for (const TensorInfo& t : layout.tensors) {
    if (t.kind != TensorKind::kParameter) continue;
    if (t.tied_to) {
      keys.insert(strip(t.name));
      keys.insert(strip(*t.tied_to));
      continue;  // named_parameters() drops the tied duplicate
    }
    last = t.name;
  }
  if (!last.empty()) keys.insert(strip(last));
  return keys;
}

}  // namespace

double ModelLayout::TotalBytes() const { return SizeOf(""); }

double ModelLayout::SizeOf(const std::string& name) const {
  auto it = sizes.find(name);
  return it == sizes.end() ? 0.0 : it->second;
}

int ModelLayout::FindModule(const std::string& name) const {
  for (size_t i = 0; i < modules.size(); ++i) {
    if (modules[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int ModelLayout::FindTensor(const std::string& name) const {
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

absl::StatusOr<ModelLayout> BuildModelLayout(const ModelConfig& config, const LayoutOptions& options) {
  if (!kernels::IsFloatingPoint(options.dtype) || options.dtype == DType::kF64) {
    return absl::InvalidArgumentError(absl::StrCat("dtype: ", std::string(kernels::DTypeName(options.dtype)),
                                                   " is not a load dtype; use F32, F16 or BF16"));
  }
  // Every tensor is at most vocab * max(hidden, intermediate, positions) elements, and the
  // config limits keep the whole model far below 2^53 bytes; refuse anything that is not.
  const double hidden = static_cast<double>(config.hidden_size);
  const double widest = std::max({hidden * 3, static_cast<double>(config.intermediate_size),
                                  static_cast<double>(config.max_position_embeddings),
                                  static_cast<double>(config.num_attention_heads) * static_cast<double>(config.head_dim)});
  const double rough = (static_cast<double>(config.num_hidden_layers) + 4) *
                       std::max(static_cast<double>(config.vocab_size), hidden * 4) * widest * 8;
  if (!(rough < 9.0e15) || config.hidden_size <= 0 || config.vocab_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: model dimensions (hidden_size ", config.hidden_size, ", vocab_size ",
        config.vocab_size, ", num_hidden_layers ", config.num_hidden_layers,
        ") give a model too large to plan (limit 9e15 bytes)"));
  }
  ModelLayout layout;
  layout.architecture = std::string(ArchitectureName(config.architecture));
  switch (config.architecture) {
    case Architecture::kLlama:
    case Architecture::kMistral:
    case Architecture::kQwen2:
      BuildLlamaLike(config, options.dtype, &layout);
      break;
    case Architecture::kGpt2:
      BuildGpt2(config, options.dtype, &layout);
      break;
  }
  const std::string embed = config.architecture == Architecture::kGpt2 ? "transformer.wte.weight"
                                                                       : "model.embed_tokens.weight";
  if (config.tie_word_embeddings) {
    layout.tensors[layout.FindTensor("lm_head.weight")].tied_to = embed;
    layout.tied_groups.push_back({embed, "lm_head.weight"});
    std::sort(layout.tied_groups.back().begin(), layout.tied_groups.back().end());
  }

  // Which Linear/Conv1D weights the bnb quantizer converts.
  std::set<int> quantized_modules;
  if (options.bnb) {
    const std::set<std::string> keep = DefaultUnconverted(layout);
    for (size_t i = 0; i < layout.modules.size(); ++i) {
      const ModuleInfo& m = layout.modules[i];
      if (m.class_name != "Linear" && m.class_name != "Conv1D") continue;
      bool convert = options.bnb->ShouldQuantize(m.name);
      for (const std::string& k : keep) {
        if (m.name == k || absl::StartsWith(m.name, k + ".") || absl::EndsWith(m.name, k)) convert = false;
      }
      if (convert) quantized_modules.insert(static_cast<int>(i));
    }
  }
  for (int mi : quantized_modules) {
    for (int ti : layout.modules[mi].params) {
      if (absl::EndsWith(layout.tensors[ti].name, ".weight")) layout.tensors[ti].quantized = true;
    }
  }

  for (TensorInfo& t : layout.tensors) {
    double numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<double>(d);
    if (t.tied_to) {
      t.bytes = 0;
      continue;  // transformers skips tied keys entirely: no entry for them or their prefixes
    }
    if (t.quantized) {
      t.bytes = numel * (options.bnb->mode == quant::BnbMode::k4Bit ? 0.5 : 1.0);
    } else {
      t.bytes = numel * static_cast<double>(kernels::DTypeSize(t.dtype));
    }
    // The tensor itself and every prefix of its name, the root "" included.
    layout.sizes[t.name] += t.bytes;
    for (size_t pos = 0;; ++pos) {
      pos = t.name.find('.', pos);
      if (pos == std::string::npos) break;
      layout.sizes[t.name.substr(0, pos)] += t.bytes;
    }
    layout.sizes[""] += t.bytes;
  }
  return layout;
}

}  // namespace kiln::engine::placement
