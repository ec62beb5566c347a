#include "engine/tokenizer/transformers_compat.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/common/status_macros.h"

namespace kiln::tokenizer {
namespace {

std::string StripFast(std::string name) {
  constexpr std::string_view kFast = "Fast";
  if (name.size() >= kFast.size() && name.compare(name.size() - kFast.size(), kFast.size(), kFast) == 0) {
    name.resize(name.size() - kFast.size());
  }
  return name;
}

std::string StringOr(const Json& j, absl::string_view key) {
  const Json* v = Member(j, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

// transformers 5.23 TOKENIZER_MAPPING_NAMES for the model types kiln serves (without
// mistral_common installed), and whether the type is in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS.
struct Registered {
  std::string class_name;  // empty: no mapping
  bool hub_class_incorrect = false;
};
Registered RegisteredFor(const std::string& model_type) {
  if (model_type == "gpt2") return {"GPT2Tokenizer", false};
  if (model_type == "qwen2") return {"Qwen2Tokenizer", true};
  if (model_type == "qwen3" || model_type == "qwen2_moe" || model_type == "qwen3_moe") {
    return {"Qwen2Tokenizer", false};
  }
  if (model_type == "mistral" || model_type == "mixtral") return {"TokenizersBackend", false};
  return {"", false};  // llama and unknown types have no registered class
}

HfTokenizerClass FromClassName(const std::string& name) {
  if (name == "LlamaTokenizer") return HfTokenizerClass::kLlama;
  if (name == "GPT2Tokenizer") return HfTokenizerClass::kGpt2;
  if (name == "Qwen2Tokenizer") return HfTokenizerClass::kQwen2;
  return HfTokenizerClass::kTokenizersBackend;
}

Json BpeModelFrom(const Json& model, bool fuse_unk, bool byte_fallback) {
  Json m = Json::object();
  m["type"] = "BPE";
  m["dropout"] = nullptr;
  m["unk_token"] = nullptr;
  m["continuing_subword_prefix"] = nullptr;
  m["end_of_word_suffix"] = nullptr;
  m["fuse_unk"] = fuse_unk;
  m["byte_fallback"] = byte_fallback;
  m["ignore_merges"] = false;
  if (const Json* v = Member(model, "vocab"); v != nullptr) m["vocab"] = *v;
  if (const Json* v = Member(model, "merges"); v != nullptr) m["merges"] = *v;
  return m;
}

absl::StatusOr<bool> OptionalBool(const Json& config, absl::string_view key, bool fallback) {
  return GetBool(config, key, "tokenizer_config.json", fallback);
}

}  // namespace

HfTokenizerClass ResolveTokenizerClass(const Json& tokenizer_config, const Json& model_config,
                                       bool tokenizer_json_has_byte_level) {
  if (Member(tokenizer_config, "auto_map") != nullptr) {
    return HfTokenizerClass::kTokenizersBackend;  // remote code is never run; use the JSON
  }
  std::string hub = StringOr(tokenizer_config, "tokenizer_class");
  if (hub.empty()) hub = StringOr(model_config, "tokenizer_class");
  hub = StripFast(hub);
  const std::string model_type = StringOr(model_config, "model_type");
  const Registered reg = RegisteredFor(model_type);
  if (hub == "LlamaTokenizer" && !reg.hub_class_incorrect && tokenizer_json_has_byte_level) {
    return HfTokenizerClass::kTokenizersBackend;
  }
  if (!hub.empty() && !reg.class_name.empty() && StripFast(reg.class_name) != hub) {
    const std::string& r = reg.class_name;
    if (r == "TokenizersBackend" || r == "PythonBackend" || r == "PreTrainedTokenizerFast" ||
        r == "MistralCommonBackend") {
      return HfTokenizerClass::kTokenizersBackend;
    }
    return FromClassName(reg.hub_class_incorrect ? StripFast(r) : hub);
  }
  if (hub.empty()) return FromClassName(StripFast(reg.class_name));
  return FromClassName(hub);
}

absl::Status ApplyClassPipeline(HfTokenizerClass cls, const Json& tokenizer_config,
                                Json* tokenizer_json) {
  Json& tj = *tokenizer_json;
  const Json model = tj.contains("model") ? tj["model"] : Json();
  switch (cls) {
    case HfTokenizerClass::kTokenizersBackend:
      return absl::OkStatus();
    case HfTokenizerClass::kLlama: {
      KILN_ASSIGN_OR_RETURN(const bool prefix, OptionalBool(tokenizer_config, "add_prefix_space", true));
      KILN_ASSIGN_OR_RETURN(const bool legacy, OptionalBool(tokenizer_config, "legacy", false));
      const char* scheme = !prefix ? "never" : (legacy ? "always" : "first");
      tj["normalizer"] = nullptr;
      tj["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                             {"prepend_scheme", scheme}, {"split", false}};
      Json decoders = Json::array();
      decoders.push_back({{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}},
                          {"content", " "}});
      decoders.push_back({{"type", "ByteFallback"}});
      decoders.push_back({{"type", "Fuse"}});
      if (prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
      tj["decoder"] = {{"type", "Sequence"}, {"decoders", std::move(decoders)}};
      tj["model"] = BpeModelFrom(model, /*fuse_unk=*/true, /*byte_fallback=*/true);
      return absl::OkStatus();
    }
    case HfTokenizerClass::kGpt2: {
      KILN_ASSIGN_OR_RETURN(const bool prefix, OptionalBool(tokenizer_config, "add_prefix_space", false));
      tj["normalizer"] = nullptr;
      tj["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", prefix},
                             {"trim_offsets", true}, {"use_regex", true}};
      tj["decoder"] = {{"type", "ByteLevel"}};
      tj["model"] = BpeModelFrom(model, false, false);
      return absl::OkStatus();
    }
    case HfTokenizerClass::kQwen2: {
      KILN_ASSIGN_OR_RETURN(const bool prefix, OptionalBool(tokenizer_config, "add_prefix_space", false));
      tj["normalizer"] = {{"type", "NFC"}};
      Json split = {{"type", "Split"}, {"pattern", {{"Regex", kQwen2Pattern}}},
                    {"behavior", "Isolated"}, {"invert", false}};
      Json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", prefix},
                         {"trim_offsets", true}, {"use_regex", false}};
      tj["pre_tokenizer"] = {{"type", "Sequence"},
                             {"pretokenizers", Json::array({std::move(split), std::move(byte_level)})}};
      tj["decoder"] = {{"type", "ByteLevel"}};
      tj["model"] = BpeModelFrom(model, false, false);
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> SpecialTokenContent(const Json& tokenizer_config,
                                                               absl::string_view key) {
  const Json* v = Member(tokenizer_config, key);
  if (v == nullptr) return std::optional<std::string>();
  if (v->is_string()) return std::optional<std::string>(v->get<std::string>());
  if (v->is_object()) {
    KILN_ASSIGN_OR_RETURN(std::string content,
                          GetString(*v, "content", absl::StrCat("tokenizer_config.json.", key), ""));
    return std::optional<std::string>(std::move(content));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer_config.json.", key, " must be a string, an object or null"));
}

absl::StatusOr<std::vector<AddedToken>> NamedSpecialTokens(const Json& tokenizer_config) {
  std::vector<std::pair<std::string, const Json*>> entries;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (const Json* v = Member(tokenizer_config, key); v != nullptr) entries.emplace_back(key, v);
  }
  for (const char* key : {"additional_special_tokens", "extra_special_tokens"}) {
    const Json* list = Member(tokenizer_config, key);
    if (list == nullptr || !list->is_array()) continue;
    for (const Json& v : *list) entries.emplace_back(key, &v);
  }
  std::vector<AddedToken> out;
  for (const auto& [key, v] : entries) {
    AddedToken t;
    t.special = true;
    if (v->is_string()) {
      t.content = v->get<std::string>();
    } else if (v->is_object()) {
      const std::string path = "tokenizer_config.json." + key;
      KILN_ASSIGN_OR_RETURN(t.content, GetString(*v, "content", path, ""));
      KILN_ASSIGN_OR_RETURN(t.single_word, GetBool(*v, "single_word", path, false));
      KILN_ASSIGN_OR_RETURN(t.lstrip, GetBool(*v, "lstrip", path, false));
      KILN_ASSIGN_OR_RETURN(t.rstrip, GetBool(*v, "rstrip", path, false));
      KILN_ASSIGN_OR_RETURN(t.normalized, GetBool(*v, "normalized", path, false));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer_config.json.", key, " must be a string, an object or null"));
    }
    if (!t.content.empty()) out.push_back(std::move(t));
  }
  return out;
}

std::string CleanUpTokenizationSpaces(std::string text) {
  // Sequential, like Python's chained str.replace calls.
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},    {" ?", "?"},    {" !", "!"},    {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    absl::StrReplaceAll({{absl::string_view(from.data(), from.size()),
                          absl::string_view(to.data(), to.size())}},
                        &text);
  }
  return text;
}

}  // namespace kiln::tokenizer
