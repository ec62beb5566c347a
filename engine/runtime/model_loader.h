// LoadResidentModel: the LoadModel pipeline (DESIGN.md §2): resolve the name under the model
// roots / hub cache → read config, generation config, tokenizer and safetensors headers
// (never weights yet) → plan placement → load weights tensor by tensor (converting dtype) →
// warm up with one forward pass. Progress goes to `progress` at every stage.
//
// Placement (placement_glue.h, engine/placement): before any weight is read, the model's
// layout (sizes for the resolved dtype and any bitsandbytes config, so a 4-bit model fits where
// fp32 would not) is planned with the device-map planner against what the memory ledger has
// free now, honouring device_map (a strategy, one device, or an explicit module map that must
// cover every parameter) and max_memory. With the CPU alone in the inventory every strategy
// gives {"": "cpu"}, and GPU names ("cuda:0", 0) are INVALID_ARGUMENT naming the device, as
// transformers refuses them on a machine without a GPU; with logical CPU devices (or GPUs) and
// a backend per device, models split across them. ModelInfo.device_map is the plan's
// hf_device_map.
//
// Memory: the planned weight bytes and the KV cache bytes are reserved in the ledger (owner =
// served name, kinds kWeights / kKv) before they are allocated, and trued up to the real
// allocation (CausalLm::weight_bytes(), KvCache::bytes()) right after. LoadedModel carries the
// Reservations: whoever keeps the model keeps them, and dropping them (after the model's memory
// is freed) returns every byte. A failed load holds nothing.
//
// Quantization: a bitsandbytes option is validated (quant::ValidateBitsAndBytes, errors name
// the field) and every Linear it selects is quantized while loading; ModelInfo.quantization is
// then "nf4" / "fp4" / "llm_int8" and weight_bytes the bytes actually held (packed data plus
// absmax / SCB). GPTQ/AWQ on load is UNIMPLEMENTED (they only come pre-quantized).
//
// Status codes: INVALID_ARGUMENT (bad option or artifact, naming it), NOT_FOUND (unknown
// model), UNIMPLEMENTED (a feature not built yet, or a plan placing a tensor on a device
// without a backend, or a decoder layer split across devices), RESOURCE_EXHAUSTED (cannot fit: the planner's or the ledger's message, with the
// bytes needed and available per device).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/model_store.h"
#include "engine/placement/ledger.h"
#include "engine/runtime/api_types.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/model_runtime.h"
#include "engine/runtime/placement_glue.h"
#include "kernels/backend.h"

namespace kiln::engine {

struct LoadedModel {
  // The ledger bytes this model holds (weights, KV cache). Keep them at least as long as the
  // memory they account for (parts.model / parts.kv_cache); drop them after it is freed
  // (declared first, so a LoadedModel destroyed whole frees the memory, then the bytes).
  // Empty when LoadResidentModel was called without a ledger.
  std::vector<placement::Reservation> reservations;
  RuntimeParts parts;
  ModelInfo info;  // state kReady, everything but load_duration_ms filled
};

// `ledger` (not owned, may be null; must outlive the returned reservations): the engine's
// memory ledger, planned against and reserved in. Null: planned against a fresh ledger of
// DeviceInventory(limits) that lives for this call only (no accounting across models; the
// returned reservations are empty) — the transitional path for callers not yet wired.
absl::StatusOr<LoadedModel> LoadResidentModel(
    const LoadModelOptions& options, const ModelStore& store, const EngineLimits& limits,
    kernels::Backend& backend, const std::function<void(const LoadProgressEvent&)>& progress,
    placement::MemoryLedger* ledger = nullptr);

// Several devices (issue #7): `backends` names the backend of each planner device (placement_glue.h
// DeviceBackends; e.g. {cpu: host backend, 0: logical CPU device 1, 1: logical CPU device 2}).
// The plan may use any device of the table that the ledger lists; each tensor is uploaded to
// its device's backend, each decoder layer runs (and keeps its KV) there, and the ledger gets
// weight and KV reservations per device, trued up to what each device really holds. The
// single-backend overload above is this with {cpu: &backend}. INVALID_ARGUMENT for a bad
// table (ValidateDeviceBackends); otherwise as above.
absl::StatusOr<LoadedModel> LoadResidentModel(
    const LoadModelOptions& options, const ModelStore& store, const EngineLimits& limits,
    const DeviceBackends& backends, const std::function<void(const LoadProgressEvent&)>& progress,
    placement::MemoryLedger* ledger = nullptr);

}  // namespace kiln::engine
