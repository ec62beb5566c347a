// check_target_module_exists, transcribed. The layer-index regexes are re.match (anchored at
// the start, not the end), hence regex_search with match_continuous.
#include "engine/adapter/target_match.h"

#include <algorithm>
#include <charconv>
#include <optional>

#include "engine/common/status_macros.h"
#include "engine/io/str_cat.h"

namespace kiln::engine {

using io_internal::Cat;
namespace {

bool ListMatches(const std::vector<std::string>& names, std::string_view key) {
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) {
    return key == n || (key.size() > n.size() && key.ends_with(n) && key[key.size() - n.size() - 1] == '.');
  });
}

absl::StatusOr<std::optional<int64_t>> PrefixIndex(const std::regex& re, std::string_view key,
                                                   std::string_view source) {
  std::match_results<std::string_view::const_iterator> m;
  try {
    if (!std::regex_search(key.begin(), key.end(), m, re, std::regex_constants::match_continuous)) {
      return std::optional<int64_t>();
    }
  } catch (const std::regex_error&) {
    return absl::InvalidArgumentError(
        Cat("layers_pattern: regex ", QuoteForMessage(source), " is too complex to evaluate"));
  }
  int64_t idx = 0;
  const std::string digits = m[1].str();
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), idx);
  if (ec != std::errc() || ptr != digits.data() + digits.size()) return std::optional<int64_t>();
  return std::optional<int64_t>(idx);
}

// The layer index PEFT reads from `key`, or nullopt.
absl::StatusOr<std::optional<int64_t>> LayerIndex(const LoraConfig& c, std::string_view key) {
  if (c.layers_pattern.empty()) {
    static const std::regex* kDefault = new std::regex(R"(.*?\.[^.]*\.(\d+)\.)", std::regex::ECMAScript);
    return PrefixIndex(*kDefault, key, "(default)");
  }
  for (const CompiledRegex& p : c.layers_pattern) {
    KILN_ASSIGN_OR_RETURN(std::optional<int64_t> idx, PrefixIndex(*p.re, key, p.source));
    if (idx.has_value()) return idx;
  }
  return std::optional<int64_t>();
}

absl::StatusOr<bool> SelectorMatches(const ModuleSelector& s, std::string_view key, std::string_view field) {
  switch (s.kind) {
    case ModuleSelector::Kind::kNames:
      return ListMatches(s.names, key);
    case ModuleSelector::Kind::kRegex:
      return RegexFullMatch(s.regex, key, field);
    case ModuleSelector::Kind::kAllLinear:
      return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<bool> IsTargetModule(const LoraConfig& c, std::string_view key,
                                    const AdapterConfigLimits& limits) {
  if (key.size() > limits.max_module_name_bytes) {
    return absl::InvalidArgumentError(Cat("module name of ", key.size(),
                                                   " bytes exceeds the limit of ", limits.max_module_name_bytes));
  }
  if (c.exclude_modules.has_value()) {
    KILN_ASSIGN_OR_RETURN(bool excluded, SelectorMatches(*c.exclude_modules, key, "exclude_modules"));
    if (excluded) return false;
  }
  const ModuleSelector& t = c.target_modules;
  if (t.kind != ModuleSelector::Kind::kNames) return SelectorMatches(t, key, "target_modules");
  // An exact entry targets the module whatever layers_to_transform says (PEFT checks the
  // layer only on the suffix path).
  if (std::find(t.names.begin(), t.names.end(), key) != t.names.end()) return true;
  if (!ListMatches(t.names, key)) return false;
  if (c.layers_to_transform.empty()) return true;
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> idx, LayerIndex(c, key));
  if (!idx.has_value()) return false;
  return std::find(c.layers_to_transform.begin(), c.layers_to_transform.end(), *idx) !=
         c.layers_to_transform.end();
}

absl::StatusOr<std::vector<const BaseLinear*>> SelectTargetModules(const LoraConfig& c, const BaseModules& base,
                                                                   const AdapterConfigLimits& limits) {
  // "all-linear" never reaches embeddings or the output layer (not Linear, or excluded by PEFT).
  if (c.target_modules.kind != ModuleSelector::Kind::kAllLinear) {
    for (const std::string& name : base.unsupported) {
      KILN_ASSIGN_OR_RETURN(bool hit, IsTargetModule(c, name, limits));
      if (hit) {
        return absl::UnimplementedError(Cat(
            "adapter_config.json: target_modules selects ", QuoteForMessage(name),
            ": LoRA on embeddings or the output layer is not supported"));
      }
    }
  }
  std::vector<const BaseLinear*> out;
  for (const BaseLinear& m : base.linears) {
    KILN_ASSIGN_OR_RETURN(bool hit, IsTargetModule(c, m.name, limits));
    if (hit) out.push_back(&m);
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "adapter_config.json: target_modules (with exclude_modules / layers_to_transform) selects no "
        "Linear module of the base model");
  }
  return out;
}

}  // namespace kiln::engine
