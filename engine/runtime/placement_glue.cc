#include "engine/runtime/placement_glue.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/io/checkpoint.h"
#include "engine/io/json_util.h"

namespace kiln::engine {

using placement::Device;
using placement::DeviceCapacity;
using placement::MemoryKind;
using placement::MemoryLedger;
using placement::Reservation;

int64_t CpuMemoryBudget(const EngineLimits& limits) {
  if (limits.cpu_memory_bytes > 0) return limits.cpu_memory_bytes;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  // Saturate instead of overflowing on absurd values.
  if (pages > INT64_MAX / page_size) return INT64_MAX;
  return static_cast<int64_t>(pages) * static_cast<int64_t>(page_size);
}

int64_t CudaDeviceBudget(const EngineLimits& limits, const kernels::AcceleratorInfo& device) {
  const int64_t percent = std::clamp<int64_t>(limits.cuda_memory_percent, 0, 100);
  const int64_t share = device.total_bytes / 100 * percent + device.total_bytes % 100 * percent / 100;
  return std::max<int64_t>(0, std::min(device.free_bytes, share));
}

std::vector<DeviceCapacity> DeviceInventory(const EngineLimits& limits,
                                            std::span<const kernels::AcceleratorInfo> cuda_devices) {
  std::vector<DeviceCapacity> out;
  if (!limits.logical_cpu_device_bytes.empty()) {
    for (size_t i = 0; i < limits.logical_cpu_device_bytes.size(); ++i) {
      out.push_back(DeviceCapacity{Device::Gpu(static_cast<int>(i)), limits.logical_cpu_device_bytes[i]});
    }
  } else if (limits.use_cuda) {
    for (size_t i = 0; i < cuda_devices.size(); ++i) {
      out.push_back(DeviceCapacity{Device::Gpu(static_cast<int>(i)), CudaDeviceBudget(limits, cuda_devices[i])});
    }
  }
  out.push_back(DeviceCapacity{Device::Cpu(), CpuMemoryBudget(limits)});
  return out;
}

absl::Status ValidateDeviceBackends(const DeviceBackends& backends) {
  if (backends.empty()) return absl::InvalidArgumentError("device backends: none given");
  for (auto it = backends.begin(); it != backends.end(); ++it) {
    if (it->second == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("device backends: ", it->first.Name(), " has no backend"));
    }
    for (auto other = backends.begin(); other != it; ++other) {
      if (other->second->device() == it->second->device()) {
        return absl::InvalidArgumentError(absl::StrCat("device backends: ", other->first.Name(), " and ",
                                                       it->first.Name(), " report the same kernels device"));
      }
    }
  }
  return absl::OkStatus();
}

std::optional<Device> PlannerDeviceOf(const DeviceBackends& backends, const kernels::Device& device) {
  for (const auto& [planned, backend] : backends) {
    if (backend != nullptr && backend->device() == device) return planned;
  }
  return std::nullopt;
}

namespace {

std::optional<Device> LongestPrefixDevice(const placement::PlacementPlan& plan, const std::string& name) {
  std::optional<Device> best;
  size_t best_len = 0;
  for (const auto& [prefix, device] : plan.device_map) {
    const bool covers = prefix.empty() || name == prefix ||
                        (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
                         name[prefix.size()] == '.');
    if (covers && (!best.has_value() || prefix.size() >= best_len)) {
      best = device;
      best_len = prefix.size();
    }
  }
  return best;
}

}  // namespace

std::optional<Device> PlannedDeviceOf(const placement::PlacementPlan& plan, const std::string& name) {
  std::optional<Device> d = LongestPrefixDevice(plan, name);
  // A "" entry covers everything; a GPT-2 checkpoint without "transformer." is only covered by
  // its module's real (prefixed) name otherwise.
  if (!d.has_value()) d = LongestPrefixDevice(plan, "transformer." + name);
  return d;
}

std::function<kernels::Backend*(const std::string&)> TensorBackends(const placement::PlacementPlan& plan,
                                                                   const DeviceBackends& backends) {
  return [plan, backends](const std::string& tensor) -> kernels::Backend* {
    std::optional<Device> d = PlannedDeviceOf(plan, tensor);
    if (!d.has_value()) return nullptr;
    auto it = backends.find(*d);
    return it == backends.end() ? nullptr : it->second;
  };
}

std::vector<Device> LayerDevices(const placement::ModelLayout& layout, const placement::PlacementPlan& plan) {
  std::vector<Device> out;
  for (const placement::ModuleInfo& m : layout.modules) {
    if (std::find(layout.no_split_module_classes.begin(), layout.no_split_module_classes.end(), m.class_name) ==
        layout.no_split_module_classes.end()) {
      continue;
    }
    out.push_back(PlannedDeviceOf(plan, m.name).value_or(Device::Cpu()));
  }
  return out;
}

absl::StatusOr<PlacementOptions> ParsePlacementOptions(const LoadModelOptions& options) {
  PlacementOptions out;
  if (!options.device_map_explicit.empty()) {
    if (!options.device_map_strategy.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device_map: give either a strategy/device (got ", QuoteForMessage(options.device_map_strategy),
          ") or an explicit module map, not both"));
    }
    std::vector<std::pair<std::string, std::string>> entries(options.device_map_explicit.begin(),
                                                             options.device_map_explicit.end());
    KILN_ASSIGN_OR_RETURN(out.device_map, placement::ParseExplicitDeviceMap(entries));
  } else if (options.device_map_strategy.empty()) {
    // from_pretrained(device_map=None) loads everything on the CPU.
    out.device_map.value = Device::Cpu();
  } else {
    KILN_ASSIGN_OR_RETURN(out.device_map, placement::ParseDeviceMapString(options.device_map_strategy));
  }
  if (!options.max_memory.empty()) {
    std::vector<std::pair<std::string, std::string>> entries(options.max_memory.begin(),
                                                             options.max_memory.end());
    KILN_ASSIGN_OR_RETURN(out.max_memory, placement::ParseMaxMemory(entries));
  }
  return out;
}

absl::StatusOr<ModelPlacement> PlanModelPlacement(const ModelConfig& config, kernels::DType dtype,
                                                  const std::optional<quant::BnbQuantConfig>& bnb,
                                                  const PlacementOptions& options,
                                                  const std::vector<DeviceCapacity>& inventory,
                                                  const Checkpoint* checkpoint,
                                                  const std::vector<Device>& executable) {
  ModelPlacement out;
  KILN_ASSIGN_OR_RETURN(out.layout, placement::BuildModelLayout(config, {.dtype = dtype, .bnb = bnb}));
  placement::PlacementRequest request;
  request.layout = &out.layout;
  request.device_map = options.device_map;
  request.max_memory = options.max_memory;
  request.inventory = inventory;
  request.bnb_quantized = bnb.has_value();
  request.bnb_fp32_cpu_offload = bnb.has_value() && bnb->fp32_cpu_offload;
  KILN_ASSIGN_OR_RETURN(out.plan, placement::PlanDeviceMap(request));

  // A plan naming a device no backend executes must fail here, before a byte is allocated.
  for (size_t i = 0; i < out.plan.tensor_devices.size() && i < out.layout.tensors.size(); ++i) {
    const Device& d = out.plan.tensor_devices[i];
    if (std::find(executable.begin(), executable.end(), d) == executable.end()) {
      std::string names;
      for (const Device& e : executable) absl::StrAppend(&names, names.empty() ? "" : ", ", e.Name());
      return absl::UnimplementedError(absl::StrCat("device_map: ", out.layout.tensors[i].name, " is placed on ",
                                                   d.Name(), ", but this engine executes models on ", names,
                                                   " only"));
    }
  }
  if (checkpoint != nullptr) {
    // Every checkpoint tensor the layout knows goes where the plan says (a tied lm_head.weight
    // follows its embedding); names the layout does not know are left to the model loader,
    // which refuses unexpected tensors by name.
    for (const std::string& name : checkpoint->TensorNames()) {
      if (out.layout.FindTensor(name) < 0) continue;
      std::optional<Device> d = out.plan.DeviceOf(out.layout, name);
      if (!d.has_value()) {
        return absl::InternalError(absl::StrCat("device_map: the plan has no device for ", name));
      }
    }
  }
  return out;
}

std::vector<DeviceCapacity> FreeInventory(const MemoryLedger& ledger) {
  std::vector<DeviceCapacity> out;
  for (const placement::DeviceMemorySnapshot& s : ledger.Snapshot()) {
    out.push_back(DeviceCapacity{s.device, std::max<int64_t>(0, s.available_bytes())});
  }
  return out;
}

std::map<std::string, std::string> HfDeviceMap(const placement::PlacementPlan& plan) {
  std::map<std::string, std::string> out;
  for (const auto& [prefix, device] : plan.device_map) out[prefix] = device.HfName();
  return out;
}

absl::StatusOr<std::vector<Reservation>> ReservePlanned(MemoryLedger& ledger, const placement::PlacementPlan& plan,
                                                        const std::string& owner) {
  std::vector<Reservation> held;  // destroyed (released) on every error return
  for (const placement::DeviceUsage& u : plan.usage) {
    if (u.planned_bytes <= 0) continue;
    KILN_ASSIGN_OR_RETURN(Reservation r, ledger.Reserve(u.device, MemoryKind::kWeights, owner, u.planned_bytes));
    held.push_back(std::move(r));
  }
  return held;
}

absl::Status ReserveExactly(MemoryLedger& ledger, std::vector<Reservation>* held, const Device& device,
                            MemoryKind kind, const std::string& owner, int64_t bytes) {
  if (bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("memory reservation on ", device.Name(), ": ", bytes,
                                                   " bytes is negative"));
  }
  auto matches = [&](const Reservation& r) {
    return r.active() && r.device() == device && r.kind() == kind && r.owner() == owner;
  };
  int64_t have = 0;
  for (const Reservation& r : *held) {
    if (matches(r)) have += r.bytes();
  }
  if (bytes == have) return absl::OkStatus();
  if (bytes > have) {
    KILN_ASSIGN_OR_RETURN(Reservation extra, ledger.Reserve(device, kind, owner, bytes - have));
    held->push_back(std::move(extra));
    return absl::OkStatus();
  }
  // Shrinking: the ledger has no resize, so give the old handles back and take the exact size.
  held->erase(std::remove_if(held->begin(), held->end(), matches), held->end());
  if (bytes == 0) return absl::OkStatus();
  KILN_ASSIGN_OR_RETURN(Reservation exact, ledger.Reserve(device, kind, owner, bytes));
  held->push_back(std::move(exact));
  return absl::OkStatus();
}

}  // namespace kiln::engine
