// The device-map planner: where each module of a model goes, computed before any weight is
// read, with the semantics of `from_pretrained(device_map=..., max_memory=...)` in
// transformers 5.23 (its `_get_device_map`, `get_balanced_memory`, `get_max_memory` and
// `infer_auto_device_map`, derived from accelerate 1.15's).
//
// Device maps:
//  - "auto" / "balanced": budgets balanced over the GPUs (get_balanced_memory), then the greedy
//    placement in module order; "balanced_low_0": the same but GPU 0 gets only what does not fit
//    on the others; "sequential": fill GPU 0, then 1, ..., then the CPU.
//  - a single device ("cpu", "cuda:1", "cuda", 0, "1"): everything there ({"": device}).
//  - an explicit map {module prefix → device}: each prefix must name a module or parameter of
//    the model; together they must cover every parameter exactly once (a prefix covers itself
//    and everything below it; "" covers all). Buffers not covered go with the first parameter.
// Budgets: `max_memory` when given (only the devices it names are used, as in accelerate);
// otherwise the inventory's capacities, of which the CPU keeps 90% and, for balanced
// strategies with one GPU, that GPU keeps 90%. bitsandbytes quantization scales every budget
// by 0.9 (the quantizer's adjust_max_memory). While something is offloaded, room for the
// largest remaining layer is kept free on the first GPU and on the CPU; decoder layers are
// never split; tied parameters stay with their module.
// A device that must appear in the inventory: every max_memory key and every device a map names.
//
// Status codes:
//  - INVALID_ARGUMENT: an unknown strategy or device name, a max_memory or map device missing
//    from the inventory, an unknown module prefix, overlapping prefixes, parameters not covered
//    (each named); "balanced_low_0" without GPUs 0..n-1.
//  - UNIMPLEMENTED: "disk" anywhere.
//  - RESOURCE_EXHAUSTED: the model does not fit: the greedy plan would spill to disk, or a
//    single-device/explicit plan exceeds a device's budget, or bnb quantized modules would land
//    on the CPU without llm_int8_enable_fp32_cpu_offload. The message gives the bytes needed
//    and, per device, the budget and bytes placed.
// Thread-safety: PlanDeviceMap is a pure function.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/placement/memory_spec.h"
#include "engine/placement/module_sizes.h"

namespace kiln::engine::placement {

enum class Strategy : uint8_t { kAuto, kBalanced, kBalancedLow0, kSequential };

// A device_map argument: a strategy, one device, or an explicit prefix → device map.
struct DeviceMapSpec {
  using Explicit = std::vector<std::pair<std::string, Device>>;
  std::variant<Strategy, Device, Explicit> value = Strategy::kAuto;
};

// Parses a device_map string the way transformers' check_and_set_device_map does: a strategy
// name, else a device name. INVALID_ARGUMENT / UNIMPLEMENTED ("disk") naming the value.
absl::StatusOr<DeviceMapSpec> ParseDeviceMapString(std::string_view value);
// Parses an explicit map (values are device names, "disk" refused).
absl::StatusOr<DeviceMapSpec> ParseExplicitDeviceMap(
    const std::vector<std::pair<std::string, std::string>>& entries);

struct PlacementRequest {
  const ModelLayout* layout = nullptr;  // not owned; must outlive the call
  DeviceMapSpec device_map;
  std::optional<MaxMemory> max_memory;  // nullopt: the inventory's capacities
  std::vector<DeviceCapacity> inventory;
  bool bnb_quantized = false;             // the layout was built with a bnb config
  bool bnb_fp32_cpu_offload = false;      // llm_int8_enable_fp32_cpu_offload
};

struct DeviceUsage {
  Device device;
  double budget_bytes = 0;  // what the planner allowed on it (after balancing/adjustments)
  int64_t planned_bytes = 0;  // bytes of the tensors placed there (half bytes rounded up)
};

struct PlacementPlan {
  // hf_device_map equivalent, cleaned as accelerate's clean_device_map does ({"": 0} when all
  // on one device), in the order transformers produces it.
  std::vector<std::pair<std::string, Device>> device_map;
  // Every tensor of the layout (ModelLayout::tensors order) and its device. A tied parameter
  // goes where its target goes.
  std::vector<Device> tensor_devices;
  std::vector<DeviceUsage> usage;  // devices with a budget, accelerate order

  // The device of a tensor name; nullopt when unknown.
  std::optional<Device> DeviceOf(const ModelLayout& layout, const std::string& tensor) const;
};

absl::StatusOr<PlacementPlan> PlanDeviceMap(const PlacementRequest& request);

}  // namespace kiln::engine::placement
