// Devices and memory budgets as `from_pretrained(device_map=..., max_memory=...)` spells them.
//
// A Device is an abstract placement target: a GPU ("cuda:N", written N in hf_device_map) or
// the CPU ("cpu"). Tests and CPU-only hosts configure several logical GPUs with their own
// budgets; nothing here touches a real device.
//
// Parsing follows accelerate 1.15 (`accelerate.utils.modeling.convert_file_size_to_int` and
// `get_max_memory`) and transformers 5.23 (`check_and_set_device_map`):
//  - sizes: an integer is bytes; a string ends in GiB/MiB/KiB (powers of 2) or GB/MB/KB
//    (powers of 10), case-insensitive, with a decimal number before it ("1.5GB", "20GiB");
//    a unit written with a lowercase final "b" ("8Gb", "500mb") means bits (bytes // 8), as
//    accelerate does. The number is float-parsed, multiplied in double precision and truncated
//    toward zero. A string of plain digits ("1000") is bytes: that is how an integer
//    max_memory value arrives through the proto's string map. Negative, NaN, infinite, empty
//    or unit-less strings are refused.
//  - device names: "cpu"; "cuda:N", "cuda" (= cuda:0) or a non-negative integer N (as an int
//    or a digit string) for GPU N. "disk" is UNIMPLEMENTED (kiln does not offload to disk);
//    "mps" and anything else is INVALID_ARGUMENT.
// Every error names the field and the value ("max_memory[\"0\"]: ...").
// Thread-safety: plain functions and value types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::engine::placement {

enum class DeviceKind : uint8_t { kGpu, kCpu };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;  // GPU ordinal; 0 for the CPU

  static Device Cpu() { return Device{DeviceKind::kCpu, 0}; }
  static Device Gpu(int i) { return Device{DeviceKind::kGpu, i}; }
  bool is_gpu() const { return kind == DeviceKind::kGpu; }
  // "cuda:N" or "cpu".
  std::string Name() const;
  // hf_device_map spelling: "N" for GPU N (an int in Python), "cpu".
  std::string HfName() const;
  // GPUs by index first, then the CPU: accelerate's device order.
  friend bool operator<(const Device& a, const Device& b) {
    if (a.kind != b.kind) return a.kind == DeviceKind::kGpu;
    return a.index < b.index;
  }
  friend bool operator==(const Device& a, const Device& b) {
    return a.kind == b.kind && a.index == b.index;
  }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
};

// One entry of the device inventory: a device and the bytes it can give to model weights.
// GPUs: free memory at startup (or a configured budget); CPU: the configured budget.
struct DeviceCapacity {
  Device device;
  int64_t capacity_bytes = 0;
};

// convert_file_size_to_int for a string value. `field` names the value in errors.
absl::StatusOr<int64_t> ParseMemorySize(std::string_view field, std::string_view value);
// An integer value (bytes): refused when negative.
absl::StatusOr<int64_t> ParseMemorySize(std::string_view field, int64_t value);

// A device name as a max_memory key, a device_map value or a single-device device_map.
absl::StatusOr<Device> ParseDeviceName(std::string_view field, std::string_view name);
absl::StatusOr<Device> ParseDeviceIndex(std::string_view field, int64_t index);

// A parsed max_memory: devices in accelerate's order (GPUs by index, then "cpu"), each once.
using MaxMemory = std::vector<std::pair<Device, int64_t>>;

// Parses {"0": "20GiB", "cuda:1": "10GB", "cpu": "30GiB"} (keys and values as above; the
// same device named twice, e.g. "0" and "cuda:0", is INVALID_ARGUMENT).
absl::StatusOr<MaxMemory> ParseMaxMemory(const std::vector<std::pair<std::string, std::string>>& entries);

}  // namespace kiln::engine::placement
