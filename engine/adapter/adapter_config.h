// LoraConfig: the validated content of a PEFT `adapter_config.json` (peft 0.21.2, LoraConfig;
// anchors-features.md §4.7), and PEFT's module-selection rules evaluated against a base model's
// modules (target_match.h).
//
// Supported: peft_type "LORA", r, lora_alpha, use_rslora, target_modules (list / regex string /
// "all-linear"), exclude_modules (list / regex string), layers_to_transform (int or list) with
// layers_pattern (string or list), rank_pattern / alpha_pattern (ordered, first key that matches
// wins, as PEFT iterates the dict), fan_in_fan_out, bias "none", task_type CAUSAL_LM.
// Training-only fields (lora_dropout, init_lora_weights "gaussian"/"eva"/"orthogonal"/bools,
// loftq/eva/megatron settings, runtime_config, inference_mode) are accepted and ignored.
//
// Refused, never silently ignored (the message names the field):
//  - UNIMPLEMENTED: peft_type other than LORA, task_type other than CAUSAL_LM, use_dora,
//    modules_to_save, lora_bias, bias "all"/"lora_only", target_parameters, layer_replication,
//    trainable_token_indices, use_qalora, alora_invocation_tokens, use_bdlora, arrow_config,
//    velora_config, monteclora_config, kasa_config, lora_ga_config, init_lora_weights
//    "mica" (a forward variant) and "pissa*"/"olora"/"corda"/"loftq" (adapters saved without
//    weight conversion expect base weights that were modified at init), and any field this
//    version does not know whose value is set (not null/false/0/empty).
//  - INVALID_ARGUMENT: malformed JSON or types, r <= 0 or r > limits.max_rank, non-finite
//    lora_alpha, missing target_modules, a regex that std::regex (ECMAScript) cannot compile,
//    names/patterns longer than the limits, layers_to_transform/layers_pattern combined with a
//    regex target_modules, layers_pattern without layers_to_transform (PEFT's own checks).
// Regular expressions use std::regex ECMAScript syntax, which covers what PEFT configs use in
// practice ((?:...), alternation, classes, lazy quantifiers); Python-only syntax ((?P<..>),
// inline flags, \Z) is refused at parse time. Names and patterns are length-bounded so that
// matching stays cheap.
//
// Thread-safety: LoraConfig is an immutable value after parsing (compiled regexes are shared
// const objects); concurrent use is safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/io/json_util.h"

namespace kiln::engine {

inline constexpr std::string_view kAdapterConfigFile = "adapter_config.json";
inline constexpr std::string_view kAdapterWeightsFile = "adapter_model.safetensors";

struct AdapterConfigLimits {
  JsonLimits json{1u << 20, 16};
  int64_t max_rank = 1024;          // r and every rank_pattern value
  size_t max_pattern_bytes = 256;   // each target/exclude name, regex, pattern key
  size_t max_patterns = 4096;       // entries of target_modules / exclude_modules / patterns
  size_t max_module_name_bytes = 256;  // module names matched against the patterns
  int64_t max_layer_index = 1 << 20;
};

// A regex compiled once at parse time (ECMAScript), with its source for messages.
struct CompiledRegex {
  std::string source;
  std::shared_ptr<const std::regex> re;
};

// target_modules / exclude_modules.
struct ModuleSelector {
  enum class Kind { kNames, kRegex, kAllLinear };
  Kind kind = Kind::kNames;
  std::vector<std::string> names;  // kNames: exact name or suffix at a '.' boundary
  CompiledRegex regex;             // kRegex: full match
};

template <typename T>
struct PatternEntry {
  std::string key;       // as written in the config
  CompiledRegex regex;   // "(.*\.)?(key)" full match (get_pattern_key)
  T value;
};

struct LoraConfig {
  int64_t r = 8;
  double lora_alpha = 8.0;
  bool use_rslora = false;
  bool fan_in_fan_out = false;  // recorded; see adapter_loader.h (never changes A/B orientation)
  ModuleSelector target_modules;
  std::optional<ModuleSelector> exclude_modules;  // never kAllLinear
  // Empty: every layer. An int in the config becomes a one-element list (same semantics).
  std::vector<int64_t> layers_to_transform;
  std::vector<CompiledRegex> layers_pattern;  // "(?:^|.*?\.)<p>\.(\d+)\." prefix matches
  std::vector<PatternEntry<int64_t>> rank_pattern;  // in file order
  std::vector<PatternEntry<double>> alpha_pattern;  // in file order
  std::optional<std::string> base_model_name_or_path;
  std::optional<std::string> revision;
  std::optional<std::string> peft_version;
};

// Parses adapter_config.json text. `display_name` prefixes messages.
absl::StatusOr<LoraConfig> ParseLoraConfig(std::string_view json_text,
                                           std::string_view display_name = kAdapterConfigFile,
                                           const AdapterConfigLimits& limits = {});

// Reads <adapter_dir>/adapter_config.json, which must resolve inside `containment_root`
// (canonical; empty = ContainmentRootFor(realpath(adapter_dir))). NOT_FOUND when absent.
absl::StatusOr<LoraConfig> LoadLoraConfig(const std::string& adapter_dir,
                                          const AdapterConfigLimits& limits = {},
                                          const std::string& containment_root = "");

// The rank and alpha PEFT uses for `module` (get_pattern_key over rank_pattern/alpha_pattern,
// falling back to r / lora_alpha), and the resulting scale: alpha / r, or alpha / sqrt(r)
// with use_rslora.
struct ModuleRank {
  int64_t r = 0;
  double alpha = 0;
  double scale = 0;
};
absl::StatusOr<ModuleRank> RankForModule(const LoraConfig& config, std::string_view module);

// Full-match / prefix-match helpers over CompiledRegex; INVALID_ARGUMENT (naming `field`) if
// the regex engine gives up (complexity or stack limits).
absl::StatusOr<bool> RegexFullMatch(const CompiledRegex& re, std::string_view text,
                                    std::string_view field);

}  // namespace kiln::engine
