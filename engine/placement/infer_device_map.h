// Internal to engine/placement: transformers 5.23's infer_auto_device_map and accelerate's
// clean_device_map over a ModelLayout. Use planner.h; this header exists so the planner's
// two halves stay small.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/placement/memory_spec.h"
#include "engine/placement/module_sizes.h"

namespace kiln::engine::placement::internal {

// A placement target in accelerate's device order; `device` nullopt is "disk" (unbounded).
struct Slot {
  std::optional<Device> device;
  double budget_bytes = 0;
};

struct InferredMap {
  // Cleaned module prefix → index into the slots, in transformers' dict order.
  std::vector<std::pair<std::string, int>> map;
  std::vector<double> used_bytes;  // per slot, including the reserved largest-layer room
};

// `slots` must end with the disk slot. INTERNAL only on a broken invariant (a tied parameter
// whose module is not in the work list, which transformers would hit as an IndexError).
absl::StatusOr<InferredMap> InferAutoDeviceMap(const ModelLayout& layout, const std::vector<Slot>& slots);

// accelerate.utils.modeling.clean_device_map, in place.
template <typename V>
void CleanDeviceMap(std::vector<std::pair<std::string, V>>* map, const std::string& module_name);

}  // namespace kiln::engine::placement::internal
