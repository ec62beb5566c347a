// PEFT's module selection (peft 0.21.2 tuners_utils.check_target_module_exists and
// _maybe_include_all_linear_layers) over a base model's modules.
//
// For a module name, in PEFT's order:
//  1. exclude_modules: regex string → full match; list → exact name or ".<entry>" suffix.
//     A hit excludes the module.
//  2. target_modules: regex string → full match; "all-linear" → every Linear/Conv1D except the
//     output layer (PEFT expands it to the full names, so it behaves as an exact-name list);
//     list → exact name (layers_to_transform is then NOT applied, as in PEFT) or ".<entry>"
//     suffix, in which case layers_to_transform applies: the layer index is the first
//     "<layers_pattern>.<digits>." (any pattern, first that matches) or, without
//     layers_pattern, the first ".<segment>.<digits>." in the name; no index → not targeted.
//
// Thread-safety: reentrant.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/adapter/adapter_config.h"
#include "engine/adapter/base_modules.h"

namespace kiln::engine {

// Whether PEFT would put a LoRA layer on `name` (kAllLinear: true for every name passed, the
// caller passes only Linear names). INVALID_ARGUMENT when `name` exceeds
// limits.max_module_name_bytes or a regex gives up.
absl::StatusOr<bool> IsTargetModule(const LoraConfig& config, std::string_view name,
                                    const AdapterConfigLimits& limits = {});

// The Linear modules of `base` the config targets, in base order.
// UNIMPLEMENTED when the config targets an embedding or the output layer (named);
// INVALID_ARGUMENT when it targets no module at all (PEFT refuses such a config too).
absl::StatusOr<std::vector<const BaseLinear*>> SelectTargetModules(
    const LoraConfig& config, const BaseModules& base, const AdapterConfigLimits& limits = {});

}  // namespace kiln::engine
