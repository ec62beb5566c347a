// GenerationConfig: the optional generation_config.json next to config.json (transformers'
// GenerationConfig.from_pretrained). Every field is optional; absent or null -> unset.
// The runtime uses eos_token_ids as default stop tokens and the sampling values as request
// defaults.
//
// Status codes: INVALID_ARGUMENT naming "generation_config.json: <field>" and the value for a
// wrong type or out-of-range value (temperature < 0, top_p outside [0, 1], ...).
// Thread-safety: plain value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/json_util.h"

namespace kiln::engine {

struct GenerationConfig {
  std::vector<int64_t> eos_token_ids;  // int or list in the file
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> pad_token_id;

  std::optional<bool> do_sample;
  std::optional<double> temperature;         // >= 0
  std::optional<int64_t> top_k;              // >= 0 (0 disables)
  std::optional<double> top_p;               // [0, 1]
  std::optional<double> min_p;               // [0, 1]
  std::optional<double> repetition_penalty;  // > 0
  std::optional<int64_t> max_new_tokens;     // > 0
  std::optional<int64_t> max_length;         // > 0
};

absl::StatusOr<GenerationConfig> ParseGenerationConfig(
    std::string_view json_text, std::string_view display_name = "generation_config.json",
    const JsonLimits& limits = {1u << 20, 32});

// Reads <model_dir>/generation_config.json (resolved inside `containment_root`, empty =
// ContainmentRootFor(realpath(model_dir))). nullopt when the file does not exist.
absl::StatusOr<std::optional<GenerationConfig>> LoadGenerationConfig(
    const std::string& model_dir, const std::string& containment_root = "",
    const JsonLimits& limits = {1u << 20, 32});

}  // namespace kiln::engine
