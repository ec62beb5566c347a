// LoadResidentModel: the LoadModel pipeline (DESIGN.md §2): resolve the name under the model
// roots / hub cache → read config, generation config, tokenizer and safetensors headers
// (never weights yet) → plan placement → load weights tensor by tensor (converting dtype) →
// warm up with one forward pass. Progress goes to `progress` at every stage.
//
// Placement today is a single device: the CPU backend (strategies "", "auto", "balanced",
// "balanced_low_0", "sequential" and "cpu" all resolve to {"": "cpu"} on a machine without
// GPUs, as accelerate does); explicit maps, GPUs and max_memory budgets come with the planner.
//
// Quantization: a bitsandbytes option is validated (quant::ValidateBitsAndBytes, errors name
// the field) and every Linear it selects is quantized while loading; ModelInfo.quantization is
// then "nf4" / "fp4" / "llm_int8" and weight_bytes the bytes actually held (packed data plus
// absmax / SCB). GPTQ/AWQ on load is UNIMPLEMENTED (they only come pre-quantized).
//
// Status codes: INVALID_ARGUMENT (bad option or artifact, naming it), NOT_FOUND (unknown
// model), UNIMPLEMENTED (a feature not built yet: pre-quantized checkpoints, adapters, other
// devices), RESOURCE_EXHAUSTED (cannot fit).
#pragma once

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/io/model_store.h"
#include "engine/runtime/api_types.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/model_runtime.h"
#include "kernels/backend.h"

namespace kiln::engine {

struct LoadedModel {
  RuntimeParts parts;
  ModelInfo info;  // state kReady, everything but load_duration_ms filled
};

absl::StatusOr<LoadedModel> LoadResidentModel(
    const LoadModelOptions& options, const ModelStore& store, const EngineLimits& limits,
    kernels::Backend& backend, const std::function<void(const LoadProgressEvent&)>& progress);

}  // namespace kiln::engine
