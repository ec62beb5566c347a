// adapter_config.json → LoraConfig. The rules mirror peft 0.21.2 (LoraConfig.__post_init__,
// check_target_module_exists, get_pattern_key); see the header for what is refused and why.
#include "engine/adapter/adapter_config.h"

#include <cctype>
#include <cmath>
#include <set>
#include <type_traits>

#include "engine/common/status_macros.h"
#include "engine/io/path_util.h"
#include "engine/io/str_cat.h"

namespace kiln::engine {

using io_internal::Cat;
namespace {

using json = nlohmann::json;

// Every LoraConfig field of peft 0.21.2 (dataclasses.fields(LoraConfig)), plus fields older
// versions wrote that never carried a value that matters ("enable_lora", "merge_weights").
const std::set<std::string, std::less<>>& KnownFields() {
  static const auto* fields = new std::set<std::string, std::less<>>{
      "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path",
      "revision", "inference_mode", "r", "target_modules", "exclude_modules", "lora_alpha",
      "lora_dropout", "fan_in_fan_out", "bias", "use_rslora", "modules_to_save",
      "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern",
      "alpha_pattern", "megatron_config", "megatron_core", "trainable_token_indices",
      "loftq_config", "eva_config", "corda_config", "lora_ga_config", "use_dora", "velora_config",
      "alora_invocation_tokens", "use_qalora", "qalora_group_size", "monteclora_config",
      "layer_replication", "runtime_config", "lora_bias", "target_parameters", "use_bdlora",
      "arrow_config", "kasa_config", "ensure_weight_tying", "enable_lora", "merge_weights"};
  return *fields;
}

// Variants and features whose math kiln does not implement: refused when set.
constexpr std::string_view kRefusedWhenSet[] = {
    "use_dora",          "modules_to_save",   "lora_bias",         "target_parameters",
    "layer_replication", "trainable_token_indices", "use_qalora", "alora_invocation_tokens",
    "use_bdlora",        "arrow_config",      "velora_config",     "monteclora_config",
    "kasa_config",       "lora_ga_config"};

// null, false, 0, "", [] and {} are "not set" (PEFT's defaults for every optional feature).
bool IsSet(const json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v != 0;
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  return true;
}

absl::Status Unimplemented(std::string_view file, std::string_view field, const json& v,
                           std::string_view why) {
  return absl::UnimplementedError(Cat(file, ": ", field, " = ", JsonValueForMessage(v),
                                               " is not supported: ", why));
}

absl::StatusOr<CompiledRegex> Compile(std::string pattern, std::string_view file,
                                      std::string_view field, std::string_view shown,
                                      const AdapterConfigLimits& limits) {
  if (shown.size() > limits.max_pattern_bytes) {
    return absl::InvalidArgumentError(Cat(file, ": ", field, ": pattern of ", shown.size(),
                                                   " bytes exceeds the limit of ",
                                                   limits.max_pattern_bytes));
  }
  try {
    auto re = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
    return CompiledRegex{std::move(pattern), std::move(re)};
  } catch (const std::regex_error&) {
    return absl::InvalidArgumentError(Cat(
        file, ": ", field, ": ", QuoteForMessage(shown),
        " is not a regular expression kiln supports (ECMAScript syntax; Python-only constructs such "
        "as (?P<name>...) or inline flags are not)"));
  }
}

absl::StatusOr<std::string> BoundedString(const json& v, std::string_view file, std::string field,
                                          const AdapterConfigLimits& limits) {
  if (!v.is_string()) {
    return absl::InvalidArgumentError(
        Cat(file, ": ", field, ": expected a string, got ", JsonValueForMessage(v)));
  }
  std::string s = v.get<std::string>();
  if (s.empty() || s.size() > limits.max_pattern_bytes) {
    return absl::InvalidArgumentError(Cat(file, ": ", field, ": name of ", s.size(),
                                                   " bytes, expected 1 to ", limits.max_pattern_bytes));
  }
  return s;
}

absl::StatusOr<ModuleSelector> ParseSelector(const json& v, std::string_view file,
                                             std::string_view field, bool allow_all_linear,
                                             const AdapterConfigLimits& limits) {
  ModuleSelector sel;
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    std::string lower = s;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "all-linear") {
      if (!allow_all_linear) {
        return absl::InvalidArgumentError(Cat(file, ": ", field, ": \"all-linear\" is only valid for target_modules"));
      }
      sel.kind = ModuleSelector::Kind::kAllLinear;
      return sel;
    }
    sel.kind = ModuleSelector::Kind::kRegex;
    KILN_ASSIGN_OR_RETURN(sel.regex, Compile(s, file, field, s, limits));
    return sel;
  }
  if (!v.is_array()) {
    return absl::InvalidArgumentError(Cat(file, ": ", field, ": expected a list of names or a regex string, got ",
                                                   JsonValueForMessage(v)));
  }
  if (v.size() > limits.max_patterns) {
    return absl::InvalidArgumentError(Cat(file, ": ", field, ": ", v.size(),
                                                   " entries exceed the limit of ", limits.max_patterns));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    KILN_ASSIGN_OR_RETURN(std::string name,
                          BoundedString(v[i], file, Cat(field, "[", i, "]"), limits));
    sel.names.push_back(std::move(name));
  }
  return sel;
}

absl::Status ParseLayers(const JsonFields& f, const json& obj, std::string_view file,
                         const AdapterConfigLimits& limits, LoraConfig& c) {
  if (f.Has("layers_to_transform")) {
    const json& v = obj["layers_to_transform"];
    std::vector<json> items = v.is_array() ? std::vector<json>(v.begin(), v.end()) : std::vector<json>{v};
    if (items.size() > limits.max_patterns) {
      return f.Invalid("layers_to_transform", Cat("more than ", limits.max_patterns, " entries"));
    }
    for (const json& item : items) {
      if (!item.is_number_integer() || item.get<int64_t>() < 0 || item.get<int64_t>() > limits.max_layer_index) {
        return f.Invalid("layers_to_transform",
                         Cat("expected an integer or a list of integers in [0, ",
                                      limits.max_layer_index, "]"));
      }
      c.layers_to_transform.push_back(item.get<int64_t>());
    }
  }
  if (f.Has("layers_pattern")) {
    const json& v = obj["layers_pattern"];
    std::vector<json> items = v.is_array() ? std::vector<json>(v.begin(), v.end()) : std::vector<json>{v};
    if (items.size() > limits.max_patterns) {
      return f.Invalid("layers_pattern", Cat("more than ", limits.max_patterns, " entries"));
    }
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string field = Cat("layers_pattern", v.is_array() ? Cat("[", i, "]") : "");
      KILN_ASSIGN_OR_RETURN(std::string p, BoundedString(items[i], file, field, limits));
      KILN_ASSIGN_OR_RETURN(CompiledRegex re,
                            Compile(Cat("(?:^|.*?\\.)", p, "\\.(\\d+)\\."), file, field, p, limits));
      c.layers_pattern.push_back(std::move(re));
    }
  }
  // LoraConfig.__post_init__: "When `layers_pattern` is specified, `layers_to_transform` must
  // also be specified" (an empty list counts as specified there, and then selects every layer).
  if (!c.layers_pattern.empty() && !f.Has("layers_to_transform")) {
    return f.Invalid("layers_pattern", "requires layers_to_transform");
  }
  return absl::OkStatus();
}

// rank_pattern / alpha_pattern in file order: PEFT iterates the dict json.load built, and the
// first key that matches wins.
template <typename T>
absl::Status ParsePatterns(const nlohmann::ordered_json& ordered, std::string_view key,
                           std::string_view file, const AdapterConfigLimits& limits,
                           std::vector<PatternEntry<T>>& out) {
  auto it = ordered.find(std::string(key));
  if (it == ordered.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) {
    return absl::InvalidArgumentError(Cat(file, ": ", key, ": expected an object"));
  }
  if (it->size() > limits.max_patterns) {
    return absl::InvalidArgumentError(Cat(file, ": ", key, ": ", it->size(),
                                                   " entries exceed the limit of ", limits.max_patterns));
  }
  for (auto e = it->begin(); e != it->end(); ++e) {
    const std::string field = Cat(key, "[", QuoteForMessage(e.key()), "]");
    if (e.key().empty() || e.key().size() > limits.max_pattern_bytes) {
      return absl::InvalidArgumentError(Cat(file, ": ", field, ": key of ", e.key().size(),
                                                     " bytes, expected 1 to ", limits.max_pattern_bytes));
    }
    PatternEntry<T> entry;
    entry.key = e.key();
    KILN_ASSIGN_OR_RETURN(entry.regex,
                          Compile(Cat("(.*\\.)?(", e.key(), ")"), file, field, e.key(), limits));
    const auto& v = e.value();
    if constexpr (std::is_same_v<T, int64_t>) {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > limits.max_rank) {
        return absl::InvalidArgumentError(Cat(file, ": ", field, ": rank ", v.dump(),
                                                       ", expected an integer in [1, ", limits.max_rank, "]"));
      }
      entry.value = v.get<int64_t>();
    } else {
      if (!v.is_number() || !std::isfinite(v.get<double>())) {
        return absl::InvalidArgumentError(Cat(file, ": ", field, ": alpha ", v.dump(),
                                                       ", expected a finite number"));
      }
      entry.value = v.get<double>();
    }
    out.push_back(std::move(entry));
  }
  return absl::OkStatus();
}

absl::Status CheckRefusals(const json& obj, const JsonFields& f, std::string_view file) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!KnownFields().contains(it.key()) && IsSet(it.value())) {
      return absl::UnimplementedError(Cat(
          file, ": ", QuoteForMessage(it.key()), " = ", JsonValueForMessage(it.value()),
          " is not a LoRA field kiln knows (peft 0.21.2); refusing rather than ignoring it"));
    }
  }
  for (std::string_view field : kRefusedWhenSet) {
    if (const json* v = f.Get(field); v != nullptr && IsSet(*v)) {
      return Unimplemented(file, field, *v, "kiln serves plain LoRA (y = Wx + s·B(Ax)) only");
    }
  }
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> bias, f.OptionalString("bias"));
  if (bias.has_value() && *bias != "none") {
    if (*bias != "all" && *bias != "lora_only") return f.Invalid("bias", "expected \"none\", \"all\" or \"lora_only\"");
    return Unimplemented(file, "bias", obj["bias"], "trained biases change the base model; only \"none\" is served");
  }
  if (const json* v = f.Get("init_lora_weights"); v != nullptr && v->is_string()) {
    std::string init = v->get<std::string>();
    for (char& c : init) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (init == "mica") return Unimplemented(file, "init_lora_weights", *v, "MiCA is a forward variant");
    if (init.starts_with("pissa") || init == "olora" || init == "corda" || init == "loftq") {
      return Unimplemented(file, "init_lora_weights", *v,
                           "this initialization modifies the base weights; save the adapter with "
                           "path_initial_model_for_weight_conversion to get a plain LoRA");
    }
  }
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> task, f.OptionalString("task_type"));
  if (task.has_value() && *task != "CAUSAL_LM") {
    return Unimplemented(file, "task_type", obj["task_type"], "only CAUSAL_LM adapters are served");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bool> RegexFullMatch(const CompiledRegex& re, std::string_view text,
                                    std::string_view field) {
  try {
    return std::regex_match(text.begin(), text.end(), *re.re);
  } catch (const std::regex_error&) {
    return absl::InvalidArgumentError(Cat(field, ": regex ", QuoteForMessage(re.source),
                                                   " is too complex to evaluate"));
  }
}

absl::StatusOr<LoraConfig> ParseLoraConfig(std::string_view json_text, std::string_view display_name,
                                           const AdapterConfigLimits& limits) {
  KILN_ASSIGN_OR_RETURN(json obj, ParseJson(json_text, display_name, limits.json));
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(Cat(display_name, ": expected a JSON object"));
  }
  JsonFields f(obj, display_name);
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> peft_type, f.OptionalString("peft_type"));
  if (!peft_type.has_value()) return f.Invalid("peft_type", "missing");
  if (*peft_type != "LORA") {
    return Unimplemented(display_name, "peft_type", obj["peft_type"], "only LORA adapters are served");
  }
  KILN_RETURN_IF_ERROR(CheckRefusals(obj, f, display_name));

  LoraConfig c;
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> r, f.OptionalInt("r"));
  if (r.has_value()) c.r = *r;
  if (c.r < 1 || c.r > limits.max_rank) {
    return f.Invalid("r", Cat("expected 1 <= r <= ", limits.max_rank));
  }
  KILN_ASSIGN_OR_RETURN(std::optional<double> alpha, f.OptionalNumber("lora_alpha"));
  if (alpha.has_value()) c.lora_alpha = *alpha;
  KILN_ASSIGN_OR_RETURN(std::optional<bool> rslora, f.OptionalBool("use_rslora"));
  c.use_rslora = rslora.value_or(false);
  KILN_ASSIGN_OR_RETURN(std::optional<bool> fifo, f.OptionalBool("fan_in_fan_out"));
  c.fan_in_fan_out = fifo.value_or(false);
  KILN_ASSIGN_OR_RETURN(c.base_model_name_or_path, f.OptionalString("base_model_name_or_path"));
  KILN_ASSIGN_OR_RETURN(c.revision, f.OptionalString("revision"));
  KILN_ASSIGN_OR_RETURN(c.peft_version, f.OptionalString("peft_version"));

  if (!f.Has("target_modules")) {
    return f.Invalid("target_modules", "missing (kiln does not guess PEFT's per-architecture defaults)");
  }
  KILN_ASSIGN_OR_RETURN(c.target_modules,
                        ParseSelector(obj["target_modules"], display_name, "target_modules", true, limits));
  if (f.Has("exclude_modules")) {
    KILN_ASSIGN_OR_RETURN(c.exclude_modules,
                          ParseSelector(obj["exclude_modules"], display_name, "exclude_modules", false, limits));
    if (c.exclude_modules->kind == ModuleSelector::Kind::kNames && c.exclude_modules->names.empty()) {
      c.exclude_modules.reset();
    }
  }
  KILN_RETURN_IF_ERROR(ParseLayers(f, obj, display_name, limits, c));
  // LoraConfig.__post_init__ refuses layer selection with a regex (or "all-linear") target.
  if (c.target_modules.kind != ModuleSelector::Kind::kNames &&
      (f.Has("layers_to_transform") || f.Has("layers_pattern"))) {
    return f.Invalid(f.Has("layers_to_transform") ? "layers_to_transform" : "layers_pattern",
                     "cannot be used when target_modules is a string");
  }

  const auto ordered = nlohmann::ordered_json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (ordered.is_discarded()) return absl::InternalError(Cat(display_name, ": reparse failed"));
  KILN_RETURN_IF_ERROR(ParsePatterns(ordered, "rank_pattern", display_name, limits, c.rank_pattern));
  KILN_RETURN_IF_ERROR(ParsePatterns(ordered, "alpha_pattern", display_name, limits, c.alpha_pattern));
  return c;
}

absl::StatusOr<LoraConfig> LoadLoraConfig(const std::string& adapter_dir, const AdapterConfigLimits& limits,
                                          const std::string& containment_root) {
  KILN_ASSIGN_OR_RETURN(std::string dir, RealPath(adapter_dir));
  const std::string root = containment_root.empty() ? ContainmentRootFor(dir) : containment_root;
  KILN_ASSIGN_OR_RETURN(std::string path,
                        ResolveFileInside(dir, kAdapterConfigFile, root, "adapter config"));
  KILN_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kAdapterConfigFile, limits.json.max_bytes));
  return ParseLoraConfig(text, kAdapterConfigFile, limits);
}

absl::StatusOr<ModuleRank> RankForModule(const LoraConfig& config, std::string_view module) {
  ModuleRank out{config.r, config.lora_alpha, 0};
  for (const auto& e : config.rank_pattern) {
    KILN_ASSIGN_OR_RETURN(bool hit, RegexFullMatch(e.regex, module, "rank_pattern"));
    if (hit) {
      out.r = e.value;
      break;
    }
  }
  for (const auto& e : config.alpha_pattern) {
    KILN_ASSIGN_OR_RETURN(bool hit, RegexFullMatch(e.regex, module, "alpha_pattern"));
    if (hit) {
      out.alpha = e.value;
      break;
    }
  }
  const double r = static_cast<double>(out.r);
  out.scale = config.use_rslora ? out.alpha / std::sqrt(r) : out.alpha / r;
  return out;
}

}  // namespace kiln::engine
