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

std::vector<DeviceCapacity> DeviceInventory(const EngineLimits& limits) {
  return {DeviceCapacity{Device::Cpu(), CpuMemoryBudget(limits)}};
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
                                                  const Checkpoint* checkpoint) {
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

  // The CPU backend is the only executor in this build; a plan naming anything else (possible
  // once the inventory lists more devices) must fail here, before a byte is allocated.
  for (size_t i = 0; i < out.plan.tensor_devices.size() && i < out.layout.tensors.size(); ++i) {
    const Device& d = out.plan.tensor_devices[i];
    if (d != Device::Cpu()) {
      return absl::UnimplementedError(absl::StrCat(
          "device_map: ", out.layout.tensors[i].name, " is placed on ", d.Name(),
          ", but this build executes models on the cpu only"));
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
