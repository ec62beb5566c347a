#include "engine/quant/prequant/prequant_config.h"

#include <sys/stat.h>

#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/io/json_util.h"

namespace kiln::engine::quant {
namespace {

using nlohmann::json;

constexpr char kConfigJson[] = "config.json";
constexpr char kQuantizeConfigJson[] = "quantize_config.json";

// A quantization config is a few hundred bytes; anything deeper than this is not one.
constexpr JsonLimits kQuantizeConfigLimits{1u << 20, 8};

// A value given under two names (bits / w_bit) must agree; returns the one that is set.
absl::StatusOr<std::optional<int64_t>> IntWithSynonym(const JsonFields& f, std::string_view key,
                                                      std::string_view synonym) {
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> a, f.OptionalInt(key));
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> b, f.OptionalInt(synonym));
  if (a.has_value() && b.has_value() && *a != *b) {
    return f.Invalid(synonym, absl::StrCat("conflicts with ", f.FieldName(key), " = ", *a));
  }
  return a.has_value() ? a : b;
}

absl::StatusOr<std::vector<std::string>> StringList(const JsonFields& f, std::string_view key) {
  std::vector<std::string> out;
  const json* v = f.Get(key);
  if (v == nullptr || v->is_null()) return out;
  if (!v->is_array()) return f.TypeError(key, "a list of module names");
  for (const json& item : *v) {
    if (!item.is_string()) return f.TypeError(key, "a list of module names");
    out.push_back(item.get_ref<const std::string&>());
  }
  return out;
}

absl::Status ParseBnb(const JsonFields& f, const std::string& display, PrequantConfig& c) {
  BitsAndBytesOptions o;
  // transformers serializes both load_in_4bit and the private _load_in_4bit; the public one wins.
  for (auto [key, fallback, dst] : {std::tuple{"load_in_4bit", "_load_in_4bit", &o.load_in_4bit},
                                    std::tuple{"load_in_8bit", "_load_in_8bit", &o.load_in_8bit}}) {
    KILN_ASSIGN_OR_RETURN(std::optional<bool> v, f.OptionalBool(key));
    KILN_ASSIGN_OR_RETURN(std::optional<bool> p, f.OptionalBool(fallback));
    *dst = v.has_value() ? *v : p.value_or(false);
  }
  KILN_ASSIGN_OR_RETURN(std::optional<double> threshold, f.OptionalNumber("llm_int8_threshold"));
  if (threshold.has_value()) o.llm_int8_threshold = static_cast<float>(*threshold);
  KILN_ASSIGN_OR_RETURN(o.llm_int8_skip_modules, StringList(f, "llm_int8_skip_modules"));
  KILN_ASSIGN_OR_RETURN(std::optional<bool> offload, f.OptionalBool("llm_int8_enable_fp32_cpu_offload"));
  o.llm_int8_enable_fp32_cpu_offload = offload.value_or(false);
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> compute, f.OptionalString("bnb_4bit_compute_dtype"));
  o.bnb_4bit_compute_dtype = compute.value_or("");
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> type, f.OptionalString("bnb_4bit_quant_type"));
  o.bnb_4bit_quant_type = type.value_or("");
  KILN_ASSIGN_OR_RETURN(std::optional<bool> dq, f.OptionalBool("bnb_4bit_use_double_quant"));
  o.bnb_4bit_use_double_quant = dq.value_or(false);
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> storage, f.OptionalString("bnb_4bit_quant_storage"));
  o.bnb_4bit_quant_storage = storage.value_or("");
  absl::StatusOr<BnbQuantConfig> bnb = ValidateBitsAndBytes(o);
  if (!bnb.ok()) {
    // ValidateBitsAndBytes names "quantization.<field>" (the LoadModel request); say which file.
    return absl::Status(bnb.status().code(), absl::StrCat(display, ": ", bnb.status().message()));
  }
  c.bnb = *std::move(bnb);
  c.modules_to_not_convert = c.bnb.skip_modules;
  return absl::OkStatus();
}

absl::Status ParseGptq(const JsonFields& f, PrequantConfig& c) {
  GptqSettings& g = c.gptq;
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> bits, IntWithSynonym(f, "bits", "w_bit"));
  const std::string_view bits_key = f.Has("bits") ? "bits" : "w_bit";
  if (bits.has_value()) {
    if (*bits == 3) {
      return absl::UnimplementedError(absl::StrCat(
          f.FieldName(bits_key), " = 3 is not supported (3-bit GPTQ values straddle 32-bit words); supported: 2, 4, 8"));
    }
    if (*bits != 2 && *bits != 4 && *bits != 8) return f.Invalid(bits_key, "must be 2, 4 or 8");
    g.bits = static_cast<int>(*bits);
  }
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> group, IntWithSynonym(f, "group_size", "q_group_size"));
  if (group.has_value()) {
    if (*group != -1 && *group <= 0) {
      return f.Invalid(f.Has("group_size") ? "group_size" : "q_group_size",
                       "must be -1 (one group over all input channels) or positive");
    }
    g.group_size = *group;
  }
  KILN_ASSIGN_OR_RETURN(std::optional<bool> desc_act, f.OptionalBool("desc_act"));
  g.desc_act = desc_act.value_or(false);
  KILN_ASSIGN_OR_RETURN(std::optional<bool> sym, f.OptionalBool("sym"));
  g.sym = sym.value_or(true);
  for (std::string_view key : {"checkpoint_format", "format"}) {
    KILN_ASSIGN_OR_RETURN(std::optional<std::string> format, f.OptionalString(key));
    if (!format.has_value()) continue;
    const std::string lower = absl::AsciiStrToLower(*format);
    if (lower == "gptq") {
      g.zero_offset = 1;
    } else if (lower == "gptq_v2") {
      g.zero_offset = 0;
    } else if (lower == "marlin" || lower == "bitblas" || lower == "qqq") {
      return absl::UnimplementedError(absl::StrCat(f.FieldName(key), " ", QuoteForMessage(*format),
                                                   " is not supported (needs repacking); supported: gptq, gptq_v2"));
    } else {
      return f.Invalid(key, "must be \"gptq\" or \"gptq_v2\"");
    }
    break;
  }
  KILN_ASSIGN_OR_RETURN(c.modules_to_not_convert, StringList(f, "modules_to_not_convert"));
  return absl::OkStatus();
}

absl::Status ParseAwq(const JsonFields& f, PrequantConfig& c) {
  AwqSettings& a = c.awq;
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> bits, IntWithSynonym(f, "bits", "w_bit"));
  if (bits.has_value() && *bits != 4) return f.Invalid(f.Has("bits") ? "bits" : "w_bit", "AWQ supports only 4 bits");
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> group, IntWithSynonym(f, "group_size", "q_group_size"));
  if (group.has_value()) {
    if (*group <= 0) return f.Invalid(f.Has("group_size") ? "group_size" : "q_group_size", "must be positive");
    a.group_size = *group;
  }
  KILN_ASSIGN_OR_RETURN(std::optional<bool> zero_point, f.OptionalBool("zero_point"));
  a.zero_point = zero_point.value_or(true);
  if (!a.zero_point) {
    return absl::UnimplementedError(
        absl::StrCat(f.FieldName("zero_point"), " = false (symmetric AWQ) is not supported; supported: true"));
  }
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> version, f.OptionalString("version"));
  const std::string lower = absl::AsciiStrToLower(version.value_or("gemm"));
  if (lower == "gemv" || lower == "gemv_fast" || lower == "marlin" || lower == "exllama" || lower == "ipex") {
    return absl::UnimplementedError(absl::StrCat(f.FieldName("version"), " ", QuoteForMessage(*version),
                                                 " is not supported; supported: gemm"));
  }
  if (lower != "gemm") return f.Invalid("version", "must be \"gemm\"");
  KILN_ASSIGN_OR_RETURN(c.modules_to_not_convert, StringList(f, "modules_to_not_convert"));
  return absl::OkStatus();
}

// `gptq_by_default`: a quantize_config.json (AutoGPTQ) need not name its method.
absl::StatusOr<PrequantConfig> ParseObject(const json& obj, const std::string& display, const std::string& prefix,
                                           bool gptq_by_default) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(display, ": ", prefix.empty() ? std::string("the file") : prefix,
                                                   " must be a JSON object"));
  }
  JsonFields f(obj, display, prefix);
  PrequantConfig c;
  c.source = display;
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> method, f.OptionalString("quant_method"));
  if (!method.has_value()) {
    if (!gptq_by_default) return f.Invalid("quant_method", "is missing (expected bitsandbytes, gptq or awq)");
    method = "gptq";
  }
  if (*method == "bitsandbytes") {
    c.method = PrequantMethod::kBitsAndBytes;
    KILN_RETURN_IF_ERROR(ParseBnb(f, display, c));
  } else if (*method == "gptq") {
    c.method = PrequantMethod::kGptq;
    KILN_RETURN_IF_ERROR(ParseGptq(f, c));
  } else if (*method == "awq") {
    c.method = PrequantMethod::kAwq;
    KILN_RETURN_IF_ERROR(ParseAwq(f, c));
  } else {
    return absl::UnimplementedError(absl::StrCat(display, ": ", f.FieldName("quant_method"), " ",
                                                 QuoteForMessage(*method),
                                                 " is not supported; supported: bitsandbytes, gptq, awq"));
  }
  return c;
}

}  // namespace

std::string PrequantMethodName(PrequantMethod method) {
  switch (method) {
    case PrequantMethod::kBitsAndBytes: return "bitsandbytes";
    case PrequantMethod::kGptq: return "gptq";
    case PrequantMethod::kAwq: return "awq";
  }
  return "unknown";
}

bool PrequantConfig::IsQuantized(const std::string& name) const {
  BnbQuantConfig matcher;
  matcher.skip_modules = modules_to_not_convert;
  return matcher.ShouldQuantize(name);
}

absl::StatusOr<std::optional<PrequantConfig>> ParseQuantizationConfig(const std::string& json_text) {
  if (json_text.empty()) return std::optional<PrequantConfig>();
  KILN_ASSIGN_OR_RETURN(json obj, ParseJson(json_text, kConfigJson, kQuantizeConfigLimits));
  KILN_ASSIGN_OR_RETURN(PrequantConfig c, ParseObject(obj, kConfigJson, "quantization_config.", false));
  return std::optional<PrequantConfig>(std::move(c));
}

absl::StatusOr<PrequantConfig> ParseQuantizeConfigFile(const std::string& json_text) {
  KILN_ASSIGN_OR_RETURN(json obj, ParseJson(json_text, kQuantizeConfigJson, kQuantizeConfigLimits));
  return ParseObject(obj, kQuantizeConfigJson, "", true);
}

absl::StatusOr<std::optional<PrequantConfig>> DetectPrequantConfig(const std::string& model_dir,
                                                                   const std::string& quantization_config_json) {
  if (!quantization_config_json.empty()) return ParseQuantizationConfig(quantization_config_json);
  const std::string path = absl::StrCat(model_dir, "/", kQuantizeConfigJson);
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return std::optional<PrequantConfig>();
  KILN_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kQuantizeConfigJson, kQuantizeConfigLimits.max_bytes));
  KILN_ASSIGN_OR_RETURN(PrequantConfig c, ParseQuantizeConfigFile(text));
  return std::optional<PrequantConfig>(std::move(c));
}

}  // namespace kiln::engine::quant
