// ModelConfig: the validated content of a Hugging Face config.json for the causal-LM
// architectures kiln implements (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
// GPT2LMHeadModel), with transformers 5.23's defaults for absent optional keys.
//
// Parsing follows `PreTrainedConfig.from_dict`:
//  - architecture: config["architectures"][0] when present, else the default causal-LM class
//    of "model_type" (configs saved without a model carry no "architectures"). "auto_map" and
//    trust_remote_code-style keys are ignored. Unknown architectures -> UNIMPLEMENTED.
//  - RoPE: accepts the v5 spelling (a "rope_parameters" dict holding rope_type + rope_theta)
//    and the legacy one ("rope_theta" + "rope_scaling" with "type" or "rope_type"), with the
//    same precedence as convert_rope_params_to_dict: rope_scaling, else rope_parameters;
//    theta from the dict, else top-level rope_theta, else 10000.
//  - GPT-2 names (n_embd, n_layer, n_head, n_positions, n_inner, layer_norm_epsilon,
//    activation_function) are mapped onto the common fields.
// Core sizes (vocab_size, hidden_size, intermediate_size (not GPT-2), num_hidden_layers,
// num_attention_heads) are required: a config without them is not a usable artifact.
//
// Status codes: INVALID_ARGUMENT naming the field and value for any invalid or inconsistent
// field ("config.json: hidden_size: expected a positive integer, got \"4096\""); UNIMPLEMENTED
// for an unsupported architecture, rope type or activation (listing the supported ones).
// Thread-safety: plain value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/io/json_util.h"
#include "kernels/dtype.h"

namespace kiln::engine {

class Checkpoint;

enum class Architecture { kLlama, kMistral, kQwen2, kGpt2 };
// "LlamaForCausalLM", ...
std::string_view ArchitectureName(Architecture a);

enum class RopeType { kDefault, kLinear, kDynamic, kLlama3, kYarn };
std::string_view RopeTypeName(RopeType t);  // transformers' rope_type strings

struct RopeConfig {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  double factor = 1.0;  // linear, dynamic, llama3, yarn
  // llama3 and yarn; transformers defaults it to max_position_embeddings.
  std::optional<int64_t> original_max_position_embeddings;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  double beta_fast = 32.0;        // yarn
  double beta_slow = 1.0;         // yarn
  std::optional<double> attention_factor;  // yarn; absent -> computed by the rope init
  std::optional<double> mscale;            // yarn
  std::optional<double> mscale_all_dim;    // yarn
  bool truncate = true;                    // yarn
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string model_type;  // "llama", "mistral", "qwen2", "gpt2"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // GPT-2: n_inner, or 4 * n_embd when null
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 0;
  double norm_eps = 1e-6;  // rms_norm_eps, or GPT-2's layer_norm_epsilon
  std::string hidden_act;  // "silu", "gelu_new", ... (GPT-2: activation_function)

  bool uses_rope = true;  // false for GPT-2 (learned absolute positions)
  RopeConfig rope;

  bool tie_word_embeddings = false;
  bool q_bias = false, k_bias = false, v_bias = false, o_bias = false;  // Llama attention_bias;
                                                                       // Qwen2: q/k/v only
  bool mlp_bias = false;  // Llama mlp_bias; GPT-2 always has biases (true)

  // Sliding-window attention: per-layer flags (transformers' layer_types) and the window.
  std::optional<int64_t> sliding_window;
  std::vector<bool> layer_is_sliding;  // size num_hidden_layers

  std::vector<int64_t> bos_token_ids;  // int or list in config.json; empty when null
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;

  // "dtype" (v5) or "torch_dtype" (v4), when present.
  std::optional<kernels::DType> dtype;

  // GPT-2 attention flags.
  bool scale_attn_weights = true;
  bool scale_attn_by_inverse_layer_idx = false;
  bool reorder_and_upcast_attn = false;

  // The raw "quantization_config" object, serialized, for engine/quant (empty when absent).
  std::string quantization_config_json;
  // AutoGPTQ's quantize_config.json beside config.json, serialized (LoadModelConfig reads it
  // only when config.json has no quantization_config; empty when absent).
  std::string quantize_config_file_json;
};

struct ModelConfigLimits {
  JsonLimits json{4u << 20, 64};
  int64_t max_position_embeddings = int64_t{1} << 24;
  int64_t max_vocab_size = int64_t{1} << 24;
  int64_t max_hidden_size = int64_t{1} << 20;
  int64_t max_layers = 4096;
  int64_t max_heads = 4096;
};

// Parses config.json text; `display_name` prefixes errors (usually "config.json").
absl::StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text,
                                             std::string_view display_name = "config.json",
                                             const ModelConfigLimits& limits = {});
absl::StatusOr<ModelConfig> ParseModelConfigJson(const nlohmann::json& j,
                                                 std::string_view display_name = "config.json",
                                                 const ModelConfigLimits& limits = {});
// Reads <model_dir>/config.json; it must resolve inside `containment_root` (canonical; empty =
// ContainmentRootFor(realpath(model_dir)), so hub snapshot symlinks into blobs/ work).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir,
                                            const ModelConfigLimits& limits = {},
                                            const std::string& containment_root = "");

// Parses a dtype name as transformers accepts it: "float32"/"float"/"fp32", "float16"/"half"/
// "fp16", "bfloat16"/"bf16", optionally prefixed "torch.". nullopt otherwise.
std::optional<kernels::DType> DTypeFromTorchName(std::string_view name);

// transformers' dtype semantics: an explicit `requested` ("float32", "float16", "bfloat16")
// wins; "auto" (or empty) takes the config's dtype, else the index metadata "dtype", else the
// checkpoint's first floating-point weight (Checkpoint::FirstFloatingPointDType), else F32.
// INVALID_ARGUMENT for an unknown requested name; `checkpoint` may be null (then F32).
absl::StatusOr<kernels::DType> ResolveDType(std::string_view requested, const ModelConfig& config,
                                            const Checkpoint* checkpoint);

}  // namespace kiln::engine
