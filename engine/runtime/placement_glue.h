// Placement in the LoadModel pipeline: the glue between LoadModelOptions / a loaded
// ModelConfig and engine/placement (planner + memory ledger). LoadResidentModel
// (model_loader.h) is the only intended caller besides the engine that owns the ledger.
//
// Order of use (DESIGN.md §2, before any weight is read):
//   1. ParsePlacementOptions(options)            device_map + max_memory, INVALID_ARGUMENT early
//   2. PlanModelPlacement(config, dtype, bnb, …)  layout + plan against what the ledger has free
//   3. ReservePlanned(ledger, plan, owner)       weights reserved per device before allocating
//   4. ReserveExactly(...) after the allocation  trues the reservation up to the real bytes
//
// The device inventory of this build is {"cpu": CpuMemoryBudget(limits)}: the engine has one
// backend (the CPU). GPU names in max_memory or device_map therefore resolve as transformers
// does on a machine without a GPU: INVALID_ARGUMENT naming the device ("cuda:0 is not
// available; devices: cpu"). A plan that puts a tensor on any device other than the CPU is
// UNIMPLEMENTED (multi-device execution is not in this build).
//
// Thread-safety: free functions; the ledger is internally synchronized. Planning reads a
// snapshot of the ledger, so two concurrent loads may both plan against the same free bytes:
// the reservations (all-or-nothing per call) are what finally arbitrates, and the loser gets
// RESOURCE_EXHAUSTED before it allocates.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/placement/ledger.h"
#include "engine/placement/memory_spec.h"
#include "engine/placement/module_sizes.h"
#include "engine/placement/planner.h"
#include "engine/quant/bnb_config.h"
#include "engine/runtime/api_types.h"
#include "engine/runtime/engine_options.h"
#include "kernels/dtype.h"

namespace kiln::engine {

class Checkpoint;

// limits.cpu_memory_bytes when > 0, else the machine's physical memory (sysconf), else 0.
int64_t CpuMemoryBudget(const EngineLimits& limits);

// The device inventory this build serves from: {cpu: CpuMemoryBudget(limits)}. The engine
// creates its MemoryLedger from it (placement::MemoryLedger::Create(DeviceInventory(limits))).
std::vector<placement::DeviceCapacity> DeviceInventory(const EngineLimits& limits);

// device_map and max_memory of a LoadModel, parsed.
struct PlacementOptions {
  placement::DeviceMapSpec device_map;
  std::optional<placement::MaxMemory> max_memory;  // nullopt: what the ledger has free
};

// device_map: "" is from_pretrained's default (device_map=None: everything on the CPU, checked
// against the CPU budget), a strategy ("auto", "balanced", "balanced_low_0", "sequential"), a
// device ("cpu", "cuda:N", N), or the explicit map (prefix → device). max_memory: sizes as
// accelerate reads them. INVALID_ARGUMENT naming the field and value; UNIMPLEMENTED for "disk".
absl::StatusOr<PlacementOptions> ParsePlacementOptions(const LoadModelOptions& options);

struct ModelPlacement {
  placement::ModelLayout layout;
  placement::PlacementPlan plan;
};

// Builds the model layout (sizes for `dtype` and `bnb`) and plans it against `inventory`
// (each device with the bytes free now). Then checks that every tensor lands on a device this
// build executes on (the CPU; else UNIMPLEMENTED naming the tensor and device) and, when
// `checkpoint` is given, that each checkpoint tensor the layout knows has a device
// (plan.DeviceOf; a tied lm_head follows its embedding). Status codes: the planner's
// (INVALID_ARGUMENT, UNIMPLEMENTED, RESOURCE_EXHAUSTED with bytes needed/available per device)
// and BuildModelLayout's.
absl::StatusOr<ModelPlacement> PlanModelPlacement(const ModelConfig& config, kernels::DType dtype,
                                                  const std::optional<quant::BnbQuantConfig>& bnb,
                                                  const PlacementOptions& options,
                                                  const std::vector<placement::DeviceCapacity>& inventory,
                                                  const Checkpoint* checkpoint);

// What the ledger has free now, per device, as a planner inventory (never negative).
std::vector<placement::DeviceCapacity> FreeInventory(const placement::MemoryLedger& ledger);

// plan.device_map as ModelInfo.device_map: module prefix → HfName() ("cpu", "0", ...).
std::map<std::string, std::string> HfDeviceMap(const placement::PlacementPlan& plan);

// Reserves, per device, the bytes the plan places there (kind kWeights, `owner`).
// All-or-nothing: on failure nothing stays reserved and the ledger's RESOURCE_EXHAUSTED
// (device, kind, bytes requested and available) comes back.
absl::StatusOr<std::vector<placement::Reservation>> ReservePlanned(placement::MemoryLedger& ledger,
                                                                   const placement::PlacementPlan& plan,
                                                                   const std::string& owner);

// Makes the reservations in `held` for (device, kind) add up to exactly `bytes`: a shortfall
// is reserved as one more Reservation (nothing is given back meanwhile), so growth fails
// with the ledger's RESOURCE_EXHAUSTED and `held` keeps what it had; a surplus is released and
// `bytes` reserved again (another load may take the freed bytes in that instant: then
// RESOURCE_EXHAUSTED and `held` holds nothing for that device and kind). INVALID_ARGUMENT for
// negative bytes.
absl::Status ReserveExactly(placement::MemoryLedger& ledger, std::vector<placement::Reservation>* held,
                            const placement::Device& device, placement::MemoryKind kind,
                            const std::string& owner, int64_t bytes);

}  // namespace kiln::engine
