#include "engine/model/model_config.h"

#include <array>
#include <cmath>
#include <utility>

#include "engine/common/status_macros.h"
#include "engine/io/checkpoint.h"
#include "engine/io/path_util.h"
#include "engine/io/str_cat.h"

namespace kiln::engine {

using io_internal::Cat;
using nlohmann::json;

namespace {

struct ArchInfo {
  Architecture arch;
  std::string_view class_name;
  std::string_view model_type;
};
constexpr std::array<ArchInfo, 4> kArchs = {{
    {Architecture::kLlama, "LlamaForCausalLM", "llama"},
    {Architecture::kMistral, "MistralForCausalLM", "mistral"},
    {Architecture::kQwen2, "Qwen2ForCausalLM", "qwen2"},
    {Architecture::kGpt2, "GPT2LMHeadModel", "gpt2"},
}};
constexpr std::string_view kSupportedArchs =
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel";
constexpr std::array<std::string_view, 9> kActivations = {
    "silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_python",
    "quick_gelu", "relu"};

absl::Status Invalid(std::string_view file, std::string_view msg) {
  return absl::InvalidArgumentError(Cat(file, ": ", msg));
}

// Positive int with an upper bound; `fallback` when absent (nullopt = required).
absl::StatusOr<int64_t> SizeField(const JsonFields& f, std::string_view key,
                                  std::optional<int64_t> fallback, int64_t max) {
  const json* raw = f.Get(key);
  if (raw == nullptr || raw->is_null()) {
    if (fallback.has_value()) return *fallback;
    return f.RequiredPositiveInt(key);  // "missing ..." / "expected ..., got null"
  }
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> v, f.OptionalPositiveInt(key));
  if (*v > max) return f.Invalid(key, Cat("must be at most ", max));
  return *v;
}

// The first present key among `keys` (GPT-2 aliases), or keys[0].
std::string_view FirstPresent(const JsonFields& f, std::initializer_list<std::string_view> keys) {
  for (std::string_view k : keys) {
    if (f.Get(k) != nullptr) return k;
  }
  return *keys.begin();
}

absl::StatusOr<double> PositiveNumber(const JsonFields& f, std::string_view key,
                                      std::optional<double> fallback) {
  KILN_ASSIGN_OR_RETURN(std::optional<double> v, f.OptionalNumber(key));
  if (!v.has_value()) {
    if (fallback.has_value()) return *fallback;
    return f.Invalid(key, "missing required number");
  }
  if (!(*v > 0)) return f.Invalid(key, "must be a positive number");
  return *v;
}

absl::Status ParseRope(const JsonFields& top, std::string_view file, const ModelConfig& cfg,
                       RopeConfig* rope) {
  // convert_rope_params_to_dict: rope_scaling (legacy) if truthy, else rope_parameters.
  const json* rs = top.Get("rope_scaling");
  const json* rp = top.Get("rope_parameters");
  const bool rs_set = rs != nullptr && !rs->is_null() && !(rs->is_object() && rs->empty());
  const json* params = rs_set ? rs : (rp != nullptr && !rp->is_null() ? rp : nullptr);
  const std::string key = rs_set ? "rope_scaling" : "rope_parameters";
  static const json kEmpty = json::object();
  if (params != nullptr && !params->is_object()) return top.TypeError(key, "an object");
  const JsonFields p(params != nullptr ? *params : kEmpty, file, key + ".");
  for (std::string_view nested : {"full_attention", "sliding_attention"}) {
    if (p.Has(nested)) {
      return absl::UnimplementedError(Cat(file, ": ", key, ".", nested,
                                          ": per-layer-type RoPE parameters are not supported"));
    }
  }
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> type, p.OptionalString("rope_type"));
  if (!type.has_value()) {
    KILN_ASSIGN_OR_RETURN(type, p.OptionalString("type"));
  }
  const std::string t = type.value_or("default");
  const std::string_view type_key = p.Has("rope_type") ? "rope_type" : "type";
  if (t == "default") {
    rope->type = RopeType::kDefault;
  } else if (t == "linear") {
    rope->type = RopeType::kLinear;
  } else if (t == "dynamic") {
    rope->type = RopeType::kDynamic;
  } else if (t == "llama3") {
    rope->type = RopeType::kLlama3;
  } else if (t == "yarn") {
    rope->type = RopeType::kYarn;
  } else {
    return absl::UnimplementedError(Cat(file, ": ", p.FieldName(type_key), ": rope type ",
                                        QuoteForMessage(t),
                                        " is not supported (supported: default, linear, dynamic, "
                                        "llama3, yarn)"));
  }
  // theta: the dict, else top-level rope_theta, else 10000.
  if (p.Has("rope_theta")) {
    KILN_ASSIGN_OR_RETURN(rope->theta, PositiveNumber(p, "rope_theta", std::nullopt));
  } else {
    KILN_ASSIGN_OR_RETURN(rope->theta, PositiveNumber(top, "rope_theta", 10000.0));
  }
  const JsonFields& prf = p.Has("partial_rotary_factor") ? p : top;
  KILN_ASSIGN_OR_RETURN(rope->partial_rotary_factor,
                        PositiveNumber(prf, "partial_rotary_factor", 1.0));
  if (rope->partial_rotary_factor > 1.0) {
    return prf.Invalid("partial_rotary_factor", "must be in (0, 1]");
  }
  if (rope->type == RopeType::kDefault) return absl::OkStatus();

  if (!p.Has("factor")) return p.Invalid("factor", Cat("required for rope type ", t));
  KILN_ASSIGN_OR_RETURN(rope->factor, PositiveNumber(p, "factor", std::nullopt));
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> orig,
                        p.OptionalPositiveInt("original_max_position_embeddings"));
  rope->original_max_position_embeddings = orig;
  if (!orig.has_value() && (rope->type == RopeType::kLlama3 || rope->type == RopeType::kYarn)) {
    rope->original_max_position_embeddings = cfg.max_position_embeddings;
  }
  if (rope->type == RopeType::kLlama3) {
    for (std::string_view k : {"low_freq_factor", "high_freq_factor"}) {
      if (!p.Has(k)) return p.Invalid(k, "required for rope type llama3");
    }
    KILN_ASSIGN_OR_RETURN(rope->low_freq_factor, PositiveNumber(p, "low_freq_factor", 1.0));
    KILN_ASSIGN_OR_RETURN(rope->high_freq_factor, PositiveNumber(p, "high_freq_factor", 4.0));
    if (!(rope->high_freq_factor > rope->low_freq_factor)) {
      return p.Invalid("high_freq_factor", "must be greater than low_freq_factor");
    }
  }
  if (rope->type == RopeType::kYarn) {
    KILN_ASSIGN_OR_RETURN(rope->beta_fast, PositiveNumber(p, "beta_fast", 32.0));
    KILN_ASSIGN_OR_RETURN(rope->beta_slow, PositiveNumber(p, "beta_slow", 1.0));
    for (auto [k, dst] : {std::pair<std::string_view, std::optional<double>*>{
                              "attention_factor", &rope->attention_factor},
                          {"mscale", &rope->mscale},
                          {"mscale_all_dim", &rope->mscale_all_dim}}) {
      if (p.Has(k)) {
        KILN_ASSIGN_OR_RETURN(*dst, PositiveNumber(p, k, std::nullopt));
      }
    }
    KILN_ASSIGN_OR_RETURN(std::optional<bool> truncate, p.OptionalBool("truncate"));
    rope->truncate = truncate.value_or(true);
  }
  return absl::OkStatus();
}

absl::Status ParseTokenIds(const JsonFields& f, ModelConfig* cfg, int64_t default_bos,
                           int64_t default_eos) {
  // Absent -> the class default; null -> none. Range checks against the vocabulary are the
  // consumer's job (transformers only warns; tiny test configs keep GPT-2's 50256).
  if (f.Get("bos_token_id") == nullptr) {
    if (default_bos >= 0) cfg->bos_token_ids = {default_bos};
  } else {
    KILN_ASSIGN_OR_RETURN(cfg->bos_token_ids, f.IntOrIntList("bos_token_id"));
  }
  if (f.Get("eos_token_id") == nullptr) {
    if (default_eos >= 0) cfg->eos_token_ids = {default_eos};
  } else {
    KILN_ASSIGN_OR_RETURN(cfg->eos_token_ids, f.IntOrIntList("eos_token_id"));
  }
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> pad, f.IntOrIntList("pad_token_id"));
  if (!pad.empty()) cfg->pad_token_id = pad.front();
  for (const auto* ids : {&cfg->bos_token_ids, &cfg->eos_token_ids}) {
    for (int64_t id : *ids) {
      if (id < 0) {
        return f.Invalid(ids == &cfg->bos_token_ids ? "bos_token_id" : "eos_token_id",
                         "token ids must be non-negative");
      }
    }
  }
  if (cfg->pad_token_id.has_value() && *cfg->pad_token_id < 0) {
    return f.Invalid("pad_token_id", "token ids must be non-negative");
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view ArchitectureName(Architecture a) {
  for (const ArchInfo& i : kArchs) {
    if (i.arch == a) return i.class_name;
  }
  return "?";
}

std::string_view RopeTypeName(RopeType t) {
  switch (t) {
    case RopeType::kDefault: return "default";
    case RopeType::kLinear: return "linear";
    case RopeType::kDynamic: return "dynamic";
    case RopeType::kLlama3: return "llama3";
    case RopeType::kYarn: return "yarn";
  }
  return "?";
}

std::optional<kernels::DType> DTypeFromTorchName(std::string_view name) {
  if (name.starts_with("torch.")) name.remove_prefix(6);
  if (name == "float32" || name == "float" || name == "fp32") return kernels::DType::kF32;
  if (name == "float16" || name == "half" || name == "fp16") return kernels::DType::kF16;
  if (name == "bfloat16" || name == "bf16") return kernels::DType::kBF16;
  if (name == "float64" || name == "double") return kernels::DType::kF64;
  return std::nullopt;
}

absl::StatusOr<ModelConfig> ParseModelConfigJson(const json& j, std::string_view file,
                                                 const ModelConfigLimits& limits) {
  if (!j.is_object()) return Invalid(file, "expected a JSON object");
  const JsonFields f(j, file);
  ModelConfig cfg;

  KILN_ASSIGN_OR_RETURN(std::optional<std::string> model_type, f.OptionalString("model_type"));
  const ArchInfo* arch = nullptr;
  if (const json* a = f.Get("architectures"); a != nullptr && !a->is_null()) {
    if (!a->is_array() || a->empty() || !(*a)[0].is_string()) {
      return f.TypeError("architectures", "a non-empty list of class names");
    }
    const std::string& name = (*a)[0].get_ref<const std::string&>();
    for (const ArchInfo& i : kArchs) {
      if (i.class_name == name) arch = &i;
    }
    if (arch == nullptr) {
      return absl::UnimplementedError(Cat(file, ": architectures: ", QuoteForMessage(name),
                                          " is not supported (supported: ", kSupportedArchs,
                                          ")"));
    }
  } else {
    if (!model_type.has_value()) {
      return Invalid(file, "architectures: missing (and no model_type to infer it from)");
    }
    for (const ArchInfo& i : kArchs) {
      if (i.model_type == *model_type) arch = &i;
    }
    if (arch == nullptr) {
      return absl::UnimplementedError(Cat(file, ": model_type: ", QuoteForMessage(*model_type),
                                          " is not supported (supported architectures: ",
                                          kSupportedArchs, ")"));
    }
  }
  cfg.architecture = arch->arch;
  cfg.model_type = model_type.value_or(std::string(arch->model_type));
  const bool gpt2 = cfg.architecture == Architecture::kGpt2;

  // Sizes (GPT-2 spells them differently; transformers' attribute_map accepts both).
  KILN_ASSIGN_OR_RETURN(cfg.vocab_size, SizeField(f, "vocab_size", std::nullopt, limits.max_vocab_size));
  KILN_ASSIGN_OR_RETURN(cfg.hidden_size,
                        SizeField(f, gpt2 ? FirstPresent(f, {"n_embd", "hidden_size"}) : "hidden_size",
                                  std::nullopt, limits.max_hidden_size));
  KILN_ASSIGN_OR_RETURN(
      cfg.num_hidden_layers,
      SizeField(f, gpt2 ? FirstPresent(f, {"n_layer", "num_hidden_layers"}) : "num_hidden_layers",
                std::nullopt, limits.max_layers));
  const std::string_view heads_key =
      gpt2 ? FirstPresent(f, {"n_head", "num_attention_heads"}) : "num_attention_heads";
  KILN_ASSIGN_OR_RETURN(cfg.num_attention_heads,
                        SizeField(f, heads_key, std::nullopt, limits.max_heads));
  if (gpt2) {
    KILN_ASSIGN_OR_RETURN(cfg.intermediate_size,
                          SizeField(f, "n_inner", 4 * cfg.hidden_size, 4 * limits.max_hidden_size));
  } else {
    KILN_ASSIGN_OR_RETURN(cfg.intermediate_size, SizeField(f, "intermediate_size", std::nullopt,
                                                           4 * limits.max_hidden_size));
  }
  // MistralConfig defaults the key to 8 when absent; null means "= num_attention_heads".
  const int64_t default_kv =
      cfg.architecture == Architecture::kMistral && f.Get("num_key_value_heads") == nullptr
          ? 8
          : cfg.num_attention_heads;
  KILN_ASSIGN_OR_RETURN(cfg.num_key_value_heads,
                        SizeField(f, "num_key_value_heads", default_kv, limits.max_heads));
  if (cfg.num_attention_heads % cfg.num_key_value_heads != 0) {
    return f.Invalid("num_key_value_heads",
                     Cat("must divide num_attention_heads (", cfg.num_attention_heads, ")"));
  }
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> head_dim,
                        gpt2 ? absl::StatusOr<std::optional<int64_t>>(std::nullopt)
                             : f.OptionalPositiveInt("head_dim"));
  // LlamaConfig.validate_architecture checks divisibility even when head_dim is given.
  if ((!head_dim.has_value() || cfg.architecture == Architecture::kLlama) &&
      cfg.hidden_size % cfg.num_attention_heads != 0) {
    return f.Invalid(heads_key, Cat("must divide hidden_size (", cfg.hidden_size, ")"));
  }
  cfg.head_dim = head_dim.value_or(cfg.hidden_size / cfg.num_attention_heads);
  if (cfg.head_dim > limits.max_hidden_size) return f.Invalid("head_dim", "is too large");

  const std::string_view pos_key =
      gpt2 ? FirstPresent(f, {"n_positions", "max_position_embeddings"}) : "max_position_embeddings";
  int64_t default_pos = 2048;
  if (cfg.architecture == Architecture::kMistral) default_pos = 4096 * 32;
  if (cfg.architecture == Architecture::kQwen2) default_pos = 32768;
  if (gpt2) default_pos = 1024;
  KILN_ASSIGN_OR_RETURN(cfg.max_position_embeddings,
                        SizeField(f, pos_key, default_pos, limits.max_position_embeddings));

  KILN_ASSIGN_OR_RETURN(cfg.norm_eps, PositiveNumber(f, gpt2 ? "layer_norm_epsilon" : "rms_norm_eps",
                                                     gpt2 ? 1e-5 : 1e-6));
  const std::string_view act_key = gpt2 ? "activation_function" : "hidden_act";
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> act, f.OptionalString(act_key));
  cfg.hidden_act = act.value_or(gpt2 ? "gelu_new" : "silu");
  bool act_ok = false;
  for (std::string_view a : kActivations) act_ok = act_ok || a == cfg.hidden_act;
  if (!act_ok) {
    return absl::UnimplementedError(Cat(file, ": ", act_key, ": activation ",
                                        QuoteForMessage(cfg.hidden_act), " is not supported"));
  }

  KILN_ASSIGN_OR_RETURN(std::optional<bool> tie, f.OptionalBool("tie_word_embeddings"));
  cfg.tie_word_embeddings = tie.value_or(gpt2);

  switch (cfg.architecture) {
    case Architecture::kLlama: {
      KILN_ASSIGN_OR_RETURN(std::optional<bool> ab, f.OptionalBool("attention_bias"));
      KILN_ASSIGN_OR_RETURN(std::optional<bool> mb, f.OptionalBool("mlp_bias"));
      cfg.q_bias = cfg.k_bias = cfg.v_bias = cfg.o_bias = ab.value_or(false);
      cfg.mlp_bias = mb.value_or(false);
      break;
    }
    case Architecture::kMistral:
      break;
    case Architecture::kQwen2:
      cfg.q_bias = cfg.k_bias = cfg.v_bias = true;
      break;
    case Architecture::kGpt2:
      cfg.q_bias = cfg.k_bias = cfg.v_bias = cfg.o_bias = cfg.mlp_bias = true;
      break;
  }

  // Sliding windows.
  cfg.layer_is_sliding.assign(static_cast<size_t>(cfg.num_hidden_layers), false);
  if (cfg.architecture == Architecture::kMistral || cfg.architecture == Architecture::kQwen2) {
    KILN_ASSIGN_OR_RETURN(std::optional<int64_t> sw, f.OptionalPositiveInt("sliding_window"));
    if (f.Get("sliding_window") == nullptr) sw = 4096;  // class default when the key is absent
    if (cfg.architecture == Architecture::kMistral) {
      cfg.sliding_window = sw;
      if (sw.has_value()) cfg.layer_is_sliding.assign(cfg.layer_is_sliding.size(), true);
    } else {
      KILN_ASSIGN_OR_RETURN(std::optional<bool> use, f.OptionalBool("use_sliding_window"));
      KILN_ASSIGN_OR_RETURN(std::optional<int64_t> mwl, f.OptionalInt("max_window_layers"));
      if (mwl.has_value() && *mwl < 0) return f.Invalid("max_window_layers", "must be >= 0");
      cfg.sliding_window = use.value_or(false) ? sw : std::nullopt;
      if (const json* lt = f.Get("layer_types"); lt != nullptr && !lt->is_null()) {
        if (!lt->is_array() || static_cast<int64_t>(lt->size()) != cfg.num_hidden_layers) {
          return f.TypeError("layer_types", Cat("a list of ", cfg.num_hidden_layers, " layer types"));
        }
        for (size_t i = 0; i < lt->size(); ++i) {
          const json& e = (*lt)[i];
          const bool sliding = e == "sliding_attention";
          if (!sliding && e != "full_attention") {
            return f.Invalid("layer_types",
                             Cat("entry ", i, " must be \"full_attention\" or \"sliding_attention\""));
          }
          cfg.layer_is_sliding[i] = sliding && cfg.sliding_window.has_value();
        }
      } else if (cfg.sliding_window.has_value()) {
        for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
          cfg.layer_is_sliding[static_cast<size_t>(i)] = i >= mwl.value_or(28);
        }
      }
    }
  }

  if (gpt2) {
    cfg.uses_rope = false;
    KILN_ASSIGN_OR_RETURN(std::optional<bool> s1, f.OptionalBool("scale_attn_weights"));
    KILN_ASSIGN_OR_RETURN(std::optional<bool> s2, f.OptionalBool("scale_attn_by_inverse_layer_idx"));
    KILN_ASSIGN_OR_RETURN(std::optional<bool> s3, f.OptionalBool("reorder_and_upcast_attn"));
    cfg.scale_attn_weights = s1.value_or(true);
    cfg.scale_attn_by_inverse_layer_idx = s2.value_or(false);
    cfg.reorder_and_upcast_attn = s3.value_or(false);
    KILN_RETURN_IF_ERROR(ParseTokenIds(f, &cfg, 50256, 50256));
  } else {
    KILN_RETURN_IF_ERROR(ParseRope(f, file, cfg, &cfg.rope));
    const bool llama_like = cfg.architecture != Architecture::kQwen2;
    KILN_RETURN_IF_ERROR(ParseTokenIds(f, &cfg, llama_like ? 1 : -1, llama_like ? 2 : -1));
  }

  // dtype (v5) or torch_dtype (v4).
  const std::string_view dtype_key = f.Has("dtype") ? "dtype" : "torch_dtype";
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> dtype, f.OptionalString(dtype_key));
  if (dtype.has_value()) {
    cfg.dtype = DTypeFromTorchName(*dtype);
    if (!cfg.dtype.has_value()) {
      return f.Invalid(dtype_key, "unknown dtype (expected float32, float16 or bfloat16)");
    }
  }
  if (const json* q = f.Get("quantization_config"); q != nullptr && !q->is_null()) {
    if (!q->is_object()) return f.TypeError("quantization_config", "an object");
    cfg.quantization_config_json = q->dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return cfg;
}

absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view file,
                                             const ModelConfigLimits& limits) {
  KILN_ASSIGN_OR_RETURN(json j, ParseJson(json_text, file, limits.json));
  return ParseModelConfigJson(j, file, limits);
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir,
                                            const ModelConfigLimits& limits,
                                            const std::string& containment_root) {
  absl::StatusOr<std::string> dir = RealPath(model_dir);
  if (!dir.ok()) return absl::NotFoundError("model directory not found");
  const std::string root = containment_root.empty() ? ContainmentRootFor(*dir) : containment_root;
  absl::StatusOr<std::string> path = ResolveFileInside(*dir, "config.json", root, "model config");
  if (!path.ok()) {
    if (absl::IsNotFound(path.status())) {
      return absl::InvalidArgumentError(
          "config.json: missing; the model directory has no config.json (save it with "
          "transformers' save_pretrained)");
    }
    return path.status();
  }
  KILN_ASSIGN_OR_RETURN(json j, ReadJsonFile(*path, "config.json", limits.json));
  KILN_ASSIGN_OR_RETURN(ModelConfig cfg, ParseModelConfigJson(j, "config.json", limits));
  if (cfg.quantization_config_json.empty()) {
    // Older GPTQ checkpoints describe their quantization only in quantize_config.json.
    absl::StatusOr<std::string> qpath = ResolveFileInside(*dir, "quantize_config.json", root, "quantize config");
    if (qpath.ok()) {
      KILN_ASSIGN_OR_RETURN(json q, ReadJsonFile(*qpath, "quantize_config.json", limits.json));
      if (!q.is_object()) return absl::InvalidArgumentError("quantize_config.json: must be a JSON object");
      cfg.quantize_config_file_json = q.dump(-1, ' ', false, json::error_handler_t::replace);
    } else if (!absl::IsNotFound(qpath.status())) {
      return qpath.status();
    }
  }
  return cfg;
}

absl::StatusOr<kernels::DType> ResolveDType(std::string_view requested, const ModelConfig& config,
                                            const Checkpoint* checkpoint) {
  if (!requested.empty() && requested != "auto") {
    std::optional<kernels::DType> d = DTypeFromTorchName(requested);
    if (!d.has_value() || *d == kernels::DType::kF64) {
      return absl::InvalidArgumentError(Cat("dtype: ", QuoteForMessage(requested),
                                            " is not one of auto, float32, float16, bfloat16"));
    }
    return *d;
  }
  if (config.dtype.has_value()) return *config.dtype;
  if (checkpoint != nullptr) {
    auto it = checkpoint->index_metadata().find("dtype");
    if (checkpoint->sharded() && it != checkpoint->index_metadata().end()) {
      if (std::optional<kernels::DType> d = DTypeFromTorchName(it->second)) return *d;
    }
    if (std::optional<kernels::DType> d = checkpoint->FirstFloatingPointDType()) return *d;
  }
  return kernels::DType::kF32;
}

}  // namespace kiln::engine
