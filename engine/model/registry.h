// The explicit architecture registry: config.json "architectures" name -> factory. Adding an
// architecture = one file under arch/, one line in registry.cc, one golden fixture.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/model/causal_lm.h"

namespace kiln::engine {

using CausalLmFactory = absl::StatusOr<std::unique_ptr<CausalLm>> (*)(const ModelConfig&, const Checkpoint&,
                                                                       const LoadOptions&, kernels::Backend&);

struct ArchitectureEntry {
  std::string_view name;  // "LlamaForCausalLM"
  CausalLmFactory factory;
};

std::span<const ArchitectureEntry> RegisteredArchitectures();
// UNIMPLEMENTED "architecture \"X\" is not supported; supported: A, B, ..." when unknown.
absl::StatusOr<CausalLmFactory> FindArchitecture(std::string_view name);

}  // namespace kiln::engine
