#include "engine/quant/bnb_config.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiln::engine::quant {
namespace {

std::string Quoted(const std::string& s) { return absl::StrCat("\"", s.substr(0, 64), "\""); }

std::string StripTorch(const std::string& s) {
  return absl::StartsWith(s, "torch.") ? s.substr(6) : s;
}

}  // namespace

std::string BnbQuantConfig::MethodName() const {
  if (mode == BnbMode::k8Bit) return "llm_int8";
  return quant_type == Bnb4Type::kNf4 ? "nf4" : "fp4";
}

bool BnbQuantConfig::ShouldQuantize(const std::string& name) const {
  for (const std::string& key : skip_modules) {
    if (absl::EndsWith(name, key)) return false;
    // From the start, ending at a module boundary: the next char is '.' or the end, or the
    // pattern itself ends with '.'.
    if (absl::StartsWith(name, key) &&
        (name.size() == key.size() || name[key.size()] == '.' || absl::EndsWith(key, "."))) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<BnbQuantConfig> ValidateBitsAndBytes(const BitsAndBytesOptions& o) {
  BnbQuantConfig c;
  if (o.load_in_4bit && o.load_in_8bit) {
    return absl::InvalidArgumentError(
        "quantization.load_in_4bit: load_in_4bit and load_in_8bit are both true, but only one can be used at "
        "the same time");
  }
  if (!o.load_in_4bit && !o.load_in_8bit) {
    return absl::InvalidArgumentError(
        "quantization.load_in_4bit: a BitsAndBytesConfig needs load_in_4bit or load_in_8bit set to true");
  }
  c.mode = o.load_in_4bit ? BnbMode::k4Bit : BnbMode::k8Bit;
  if (o.bnb_4bit_quant_type.empty() || o.bnb_4bit_quant_type == "fp4") {
    c.quant_type = Bnb4Type::kFp4;
  } else if (o.bnb_4bit_quant_type == "nf4") {
    c.quant_type = Bnb4Type::kNf4;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("quantization.bnb_4bit_quant_type: must be \"nf4\" or \"fp4\", got ",
                                                   Quoted(o.bnb_4bit_quant_type)));
  }
  const std::string compute = StripTorch(o.bnb_4bit_compute_dtype);
  if (compute.empty() || compute == "float32" || compute == "float") {
    c.compute_dtype = kernels::DType::kF32;
  } else if (compute == "float16" || compute == "half") {
    c.compute_dtype = kernels::DType::kF16;
  } else if (compute == "bfloat16") {
    c.compute_dtype = kernels::DType::kBF16;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantization.bnb_4bit_compute_dtype: must be float32, float16 or bfloat16, got ",
        Quoted(o.bnb_4bit_compute_dtype)));
  }
  const std::string storage = StripTorch(o.bnb_4bit_quant_storage);
  static constexpr std::string_view kStorage[] = {"float16", "float32", "int8", "uint8", "float64", "bfloat16"};
  bool storage_ok = storage.empty();
  for (std::string_view s : kStorage) storage_ok = storage_ok || storage == s;
  if (!storage_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantization.bnb_4bit_quant_storage: must be one of float16, float32, int8, uint8, float64, bfloat16; "
        "got ", Quoted(o.bnb_4bit_quant_storage)));
  }
  c.quant_storage = storage.empty() ? "uint8" : storage;
  c.int8_threshold = o.llm_int8_threshold.value_or(6.0f);
  if (std::isnan(c.int8_threshold)) {
    return absl::InvalidArgumentError("quantization.llm_int8_threshold: must be a number, got nan");
  }
  for (const std::string& m : o.llm_int8_skip_modules) {
    if (m.empty() || m.size() > 256) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantization.llm_int8_skip_modules: entries must be 1-256 characters, got ", m.size()));
    }
    const size_t bad = m.find_first_of("*+?[](){}|^$\\");
    if (bad != std::string::npos) {
      return absl::UnimplementedError(absl::StrCat(
          "quantization.llm_int8_skip_modules: ", Quoted(m), " uses regex syntax ('", std::string(1, m[bad]),
          "'); kiln matches module names literally (prefix up to a '.' boundary, or suffix)"));
    }
  }
  c.skip_modules = o.llm_int8_skip_modules;
  c.double_quant = o.bnb_4bit_use_double_quant;
  c.fp32_cpu_offload = o.llm_int8_enable_fp32_cpu_offload;
  return c;
}

}  // namespace kiln::engine::quant
