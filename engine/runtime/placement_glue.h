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
// The device inventory is {"cpu": CpuMemoryBudget(limits)}, plus accelerators 0..n-1: the
// logical CPU devices of limits.logical_cpu_device_bytes (each executed by its own CPU backend)
// or else the visible CUDA devices. The planner treats both alike, so "auto"/"balanced"/
// "sequential" and max_memory {"0": ..., "1": ...} split models across them. GPU names the inventory lacks
// resolve as transformers does on a machine without them: INVALID_ARGUMENT naming the device
// ("cuda:0 is not available; devices: cpu"). A plan that puts a tensor on a device without a
// backend (DeviceBackends) is UNIMPLEMENTED naming the tensor and device.
//
// Thread-safety: free functions; the ledger is internally synchronized. Planning reads a
// snapshot of the ledger, so two concurrent loads may both plan against the same free bytes:
// the reservations (all-or-nothing per call) are what finally arbitrates, and the loser gets
// RESOURCE_EXHAUSTED before it allocates.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
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
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "kernels/dtype.h"

namespace kiln::engine {

class Checkpoint;

// limits.cpu_memory_bytes when > 0, else the machine's physical memory (sysconf), else 0.
int64_t CpuMemoryBudget(const EngineLimits& limits);

// The device inventory this build serves from, accelerators first, then
// {cpu: CpuMemoryBudget(limits)}:
//  - GPU i = logical CPU device i with limits.logical_cpu_device_bytes[i] for each configured
//    one (tests and the no-GPU multi-device path; CUDA devices are then not used), else
//  - GPU i = cuda_devices[i] (kernels::ListCudaDevices) when limits.use_cuda, with
//    CudaDeviceBudget bytes.
// The engine creates its MemoryLedger from it (placement::MemoryLedger::Create(DeviceInventory(...))).
std::vector<placement::DeviceCapacity> DeviceInventory(
    const EngineLimits& limits, std::span<const kernels::AcceleratorInfo> cuda_devices = {});

// min(device.free_bytes, limits.cuda_memory_percent % of device.total_bytes), the percent
// clamped to [0, 100].
int64_t CudaDeviceBudget(const EngineLimits& limits, const kernels::AcceleratorInfo& device);

// The backend that executes each planner device (not owned). placement::Device::Cpu() is the
// host CPU backend; Device::Gpu(i) a CUDA device or logical CPU device i. Every backend must
// report a distinct kernels::Device (CPU backends: distinct logical_device indices).
using DeviceBackends = std::map<placement::Device, kernels::Backend*>;

// INVALID_ARGUMENT for an empty table, a null backend, or two entries whose backends report
// the same kernels::Device.
absl::Status ValidateDeviceBackends(const DeviceBackends& backends);

// The planner device whose backend reports `device`; nullopt when none does.
std::optional<placement::Device> PlannerDeviceOf(const DeviceBackends& backends, const kernels::Device& device);

// The device of a module or tensor name under `plan` as accelerate dispatches it: the longest
// device_map prefix equal to the name or followed by "." ("" covers everything). GPT-2
// checkpoints saved without the "transformer." prefix are looked up with it too. nullopt when
// no prefix covers the name.
std::optional<placement::Device> PlannedDeviceOf(const placement::PlacementPlan& plan, const std::string& name);

// LoadOptions::tensor_backend for `plan`: each tensor to the backend of PlannedDeviceOf (null,
// which LoadCausalLm refuses by name, when the plan or the table has no entry). The returned
// function holds copies; the backends must outlive the load.
std::function<kernels::Backend*(const std::string&)> TensorBackends(const placement::PlacementPlan& plan,
                                                                   const DeviceBackends& backends);

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
// (each device with the bytes free now). Then checks that every tensor lands on a device in
// `executable` (the devices with a backend; else UNIMPLEMENTED naming the tensor and device) and, when
// `checkpoint` is given, that each checkpoint tensor the layout knows has a device
// (plan.DeviceOf; a tied lm_head follows its embedding). Status codes: the planner's
// (INVALID_ARGUMENT, UNIMPLEMENTED, RESOURCE_EXHAUSTED with bytes needed/available per device)
// and BuildModelLayout's.
absl::StatusOr<ModelPlacement> PlanModelPlacement(const ModelConfig& config, kernels::DType dtype,
                                                  const std::optional<quant::BnbQuantConfig>& bnb,
                                                  const PlacementOptions& options,
                                                  const std::vector<placement::DeviceCapacity>& inventory,
                                                  const Checkpoint* checkpoint,
                                                  const std::vector<placement::Device>& executable = {
                                                      placement::Device::Cpu()});

// Decoder layer i's device under the plan ([num layers]: the layout's no-split modules in
// order, each resolved with PlannedDeviceOf). Used to reserve each layer's KV on its device.
std::vector<placement::Device> LayerDevices(const placement::ModelLayout& layout,
                                            const placement::PlacementPlan& plan);

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
