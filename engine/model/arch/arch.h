// Factories of the architectures in this folder; registry.cc maps names to them.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/io/checkpoint.h"
#include "engine/model/causal_lm.h"

namespace kiln::engine::arch {

// LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (config flags select the variant).
absl::StatusOr<std::unique_ptr<CausalLm>> LoadLlama(const ModelConfig& config, const Checkpoint& checkpoint,
                                                    const LoadOptions& options, kernels::Backend& backend);
// GPT2LMHeadModel.
absl::StatusOr<std::unique_ptr<CausalLm>> LoadGpt2(const ModelConfig& config, const Checkpoint& checkpoint,
                                                   const LoadOptions& options, kernels::Backend& backend);

}  // namespace kiln::engine::arch
