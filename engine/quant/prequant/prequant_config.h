// Detection and validation of a pre-quantized checkpoint's quantization settings: the
// `quantization_config` object of config.json (ModelConfig::quantization_config_json) or, when
// config.json has none, an AutoGPTQ-style `quantize_config.json` beside it.
//
// quant_method (anchors-features.md §4.3–4.6):
//  - "bitsandbytes": the serialized BitsAndBytesConfig (load_in_4bit / load_in_8bit,
//    bnb_4bit_quant_type, bnb_4bit_compute_dtype, bnb_4bit_use_double_quant,
//    bnb_4bit_quant_storage, llm_int8_threshold, llm_int8_skip_modules, ...), validated with
//    ValidateBitsAndBytes (same semantics as a LoadModel quantization request).
//  - "gptq" (also assumed for a quantize_config.json without quant_method): bits (default 4;
//    2, 4, 8; 3 → UNIMPLEMENTED), group_size (default 128; -1 = one group over all input
//    channels), desc_act (default false), sym (default true), checkpoint_format (or format;
//    "gptq" = classic zeros stored minus one, "gptq_v2" = stored as is, "marlin" →
//    UNIMPLEMENTED); synonyms w_bit → bits, q_group_size → group_size.
//  - "awq": bits / w_bit (4 only), group_size / q_group_size (default 128, positive),
//    zero_point (default true; false → UNIMPLEMENTED), version (default "gemm", any case;
//    "gemv", "gemv_fast", "marlin", "exllama", "ipex" → UNIMPLEMENTED naming the version),
//    modules_to_not_convert (list of module names kept dense).
//  - anything else (fp8, compressed-tensors, aqlm, hqq, ...): UNIMPLEMENTED naming quant_method.
// A value of the wrong JSON type, out of range or conflicting with its synonym is
// INVALID_ARGUMENT naming the field ("quantization_config.<field>" or
// "quantize_config.json: <field>") and the value.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/quant/bnb_config.h"

namespace kiln::engine::quant {

enum class PrequantMethod : uint8_t { kBitsAndBytes, kGptq, kAwq };
std::string PrequantMethodName(PrequantMethod method);  // "bitsandbytes", "gptq", "awq"

struct GptqSettings {
  int bits = 4;
  int64_t group_size = 128;  // -1: one group over all input channels
  bool desc_act = false;
  bool sym = true;
  int zero_offset = 1;  // 1 for checkpoint_format "gptq" (zeros stored minus one), 0 for "gptq_v2"
};

struct AwqSettings {
  int bits = 4;
  int64_t group_size = 128;
  bool zero_point = true;
};

struct PrequantConfig {
  PrequantMethod method = PrequantMethod::kGptq;
  BnbQuantConfig bnb;  // kBitsAndBytes
  GptqSettings gptq;   // kGptq
  AwqSettings awq;     // kAwq
  // Modules kept dense (bnb llm_int8_skip_modules / AWQ modules_to_not_convert).
  std::vector<std::string> modules_to_not_convert;
  // "config.json" or "quantize_config.json": where the settings came from (for messages).
  std::string source;

  // Whether the Linear module `name` is stored quantized (never true for lm_head/embeddings,
  // which callers do not ask about). Same matching as BnbQuantConfig::ShouldQuantize.
  bool IsQuantized(const std::string& name) const;
};

// Parses config.json's quantization_config object (serialized JSON text, as ModelConfig keeps
// it). Empty text → nullopt (not pre-quantized).
absl::StatusOr<std::optional<PrequantConfig>> ParseQuantizationConfig(const std::string& json_text);

// Parses the text of a quantize_config.json (AutoGPTQ: GPTQ unless quant_method says otherwise).
absl::StatusOr<PrequantConfig> ParseQuantizeConfigFile(const std::string& json_text);

// The whole detection rule for a model directory: config.json's quantization_config wins;
// otherwise `model_dir`/quantize_config.json if it exists (read with the strict JSON limits,
// messages name the file, never the path); otherwise nullopt.
absl::StatusOr<std::optional<PrequantConfig>> DetectPrequantConfig(const std::string& model_dir,
                                                                   const std::string& quantization_config_json);

}  // namespace kiln::engine::quant
