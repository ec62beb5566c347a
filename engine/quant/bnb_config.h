// BitsAndBytesConfig as transformers defines it (src/transformers/utils/quantization_config.py,
// transformers 5.23), validated into the settings kiln's loader uses.
//
// Semantics reproduced:
//  - load_in_4bit and load_in_8bit are mutually exclusive; one of them must be set (a config
//    with neither quantizes nothing, which LoadModel treats as a mistake: INVALID_ARGUMENT).
//  - bnb_4bit_quant_type: "fp4" (default) or "nf4" (bitsandbytes rejects anything else).
//  - bnb_4bit_compute_dtype: float32 (default), float16 or bfloat16 (the dtypes a Linear4bit
//    computes in; "torch." prefixes accepted as transformers' getattr(torch, name) does).
//  - bnb_4bit_quant_storage: float16|float32|int8|uint8|float64|bfloat16 (default uint8). It
//    only changes the dtype the packed bytes are serialized as; the bytes are the same.
//  - llm_int8_threshold: default 6.0; must be a number (NaN refused). <= 0 disables the
//    outlier decomposition, as in bitsandbytes (`threshold > 0.0`).
//  - llm_int8_skip_modules: modules kept unquantized. When empty, transformers keeps the output
//    embedding (lm_head) unquantized; kiln never quantizes embeddings or lm_head either way.
//    Matching follows transformers' should_convert_module: a pattern matches a module name from
//    the start up to a module boundary ("model.layers.1" matches "model.layers.1.mlp.up_proj",
//    not "model.layers.11..."), or as a suffix ("down_proj"). Patterns are literal: regex
//    metacharacters other than '.' are UNIMPLEMENTED (named), '.' matches only itself.
//  - llm_int8_enable_fp32_cpu_offload: accepted; kiln serves on the CPU, where every module
//    is on the same device, so it changes nothing.
// Every error names the field, the value and what is allowed.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/api_types.h"
#include "kernels/dtype.h"

namespace kiln::engine::quant {

enum class BnbMode : uint8_t { k4Bit, k8Bit };
enum class Bnb4Type : uint8_t { kFp4, kNf4 };

struct BnbQuantConfig {
  BnbMode mode = BnbMode::k4Bit;
  Bnb4Type quant_type = Bnb4Type::kFp4;
  kernels::DType compute_dtype = kernels::DType::kF32;
  bool double_quant = false;
  std::string quant_storage = "uint8";
  float int8_threshold = 6.0f;
  std::vector<std::string> skip_modules;
  bool fp32_cpu_offload = false;
  int64_t blocksize = 64;  // bitsandbytes' default for Linear4bit

  // "nf4", "fp4" or "llm_int8" (transformers' quantization_method()).
  std::string MethodName() const;
  // Whether the Linear module `name` (e.g. "model.layers.0.mlp.up_proj") is quantized.
  bool ShouldQuantize(const std::string& name) const;
};

absl::StatusOr<BnbQuantConfig> ValidateBitsAndBytes(const BitsAndBytesOptions& options);

}  // namespace kiln::engine::quant
