// LoadLoraAdapter: reads a PEFT LoRA adapter directory (adapter_config.json +
// adapter_model.safetensors) and validates it against the base model's Linear modules before
// anything is uploaded anywhere. The result is host fp32 A/B per module plus its scale, ready
// for Backend::LoraApply (kernels/backend.h: LoraPair).
//
// Format (anchors-features.md §4.7): tensors `base_model.model.<module>.lora_A.weight` [r, in]
// and `base_model.model.<module>.lora_B.weight` [out, r], F32/F16/BF16; the forward adds
// scale · (x Aᵀ) Bᵀ to the module's output, scale = alpha / r (alpha / sqrt(r) with rslora),
// with r and alpha per module from rank_pattern / alpha_pattern (adapter_config.h).
//
// GPT-2 Conv1D (fan_in_fan_out): PEFT builds lora_A as nn.Linear(in, r) and lora_B as
// nn.Linear(r, out) for Conv1D exactly as for nn.Linear (in/out taken from the transposed
// Conv1D weight), and its forward is `base(x) + lora_B(lora_A(x)) * scaling`; fan_in_fan_out
// only transposes the dense delta when merging into the [in, out] Conv1D weight. So A/B are
// used as stored, whatever fan_in_fan_out says (PEFT itself forces it to true for Conv1D and
// false for Linear, with a warning), and the fixtures check delta = scale · B · A in the
// forward orientation [out, in].
//
// Validation (all before the weights are read; every message names the tensor or field):
//  - base_model_name_or_path vs options.expected_base (when both are set): they match when
//    their trailing path components agree over the shorter one's length, a hub-cache
//    snapshot path counting as its repo id ("/home/me/llama" matches "llama",
//    ".../models--org--m/snapshots/<rev>" matches "org/m" and "m"). A mismatch is
//    INVALID_ARGUMENT unless options.allow_base_mismatch (the request's override). Absolute
//    paths in the config are shown by their last component.
//  - adapter_model.safetensors must exist inside the containment root; an adapter that only
//    has adapter_model.bin (pickle) is INVALID_ARGUMENT and the pickle is never opened.
//  - every tensor maps to a module the config targets, with dtype F32/F16/BF16 and shapes
//    [r_m, in] / [out, r_m] where r_m is the module's rank; every targeted module has both.
//    Anything else (lora_magnitude_vector, lora_B.bias, modules_to_save copies, embedding
//    LoRA, unknown modules) is INVALID_ARGUMENT naming the tensor.
//  - values must be finite; the fp32 total stays under options.max_adapter_bytes
//    (RESOURCE_EXHAUSTED).
// Config refusals come from ParseLoraConfig / SelectTargetModules (UNIMPLEMENTED / INVALID).
//
// Thread-safety: LoadLoraAdapter is reentrant; a LoraAdapter is immutable after loading.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/adapter/adapter_config.h"
#include "engine/adapter/base_modules.h"
#include "engine/io/safetensors.h"

namespace kiln::engine {

inline constexpr std::string_view kAdapterPickleFile = "adapter_model.bin";

struct AdapterLoadOptions {
  // The name the base model was loaded as (e.g. the ModelStore name "llama_tiny" or a hub id);
  // empty: base_model_name_or_path is not checked.
  std::string expected_base;
  bool allow_base_mismatch = false;
  AdapterConfigLimits config_limits;
  SafetensorsLimits safetensors_limits;
  uint64_t max_adapter_bytes = uint64_t{4} << 30;  // fp32 host bytes of all A/B
  // Canonical folder every adapter file must resolve into; empty: ContainmentRootFor(the dir).
  std::string containment_root;
};

struct LoraModule {
  const BaseLinear* base = nullptr;  // points into the BaseModules passed to the loader
  std::string name;
  int64_t r = 0;
  double alpha = 0;
  float scale = 0;          // float(alpha / r) or float(alpha / sqrt(r)), as PEFT multiplies
  std::vector<float> a;     // [r, in]
  std::vector<float> b;     // [out, r]
};

struct LoraAdapter {
  LoraConfig config;
  std::vector<LoraModule> modules;  // in base module order
  int64_t max_rank = 0;
  uint64_t total_bytes = 0;  // fp32 bytes of every A and B

  const LoraModule* Find(std::string_view module) const;  // nullptr when not adapted
};

// Loads with an already parsed config (e.g. one the caller validated earlier).
absl::StatusOr<std::unique_ptr<LoraAdapter>> LoadLoraAdapter(const std::string& adapter_dir,
                                                             LoraConfig config,
                                                             const BaseModules& base,
                                                             const AdapterLoadOptions& options = {});
// Reads adapter_config.json from the directory first.
absl::StatusOr<std::unique_ptr<LoraAdapter>> LoadLoraAdapter(const std::string& adapter_dir,
                                                             const BaseModules& base,
                                                             const AdapterLoadOptions& options = {});

// The base-name rule alone (exposed for LoadModel-time checks and tests).
absl::Status CheckBaseModelName(const LoraConfig& config, const AdapterLoadOptions& options);

}  // namespace kiln::engine
