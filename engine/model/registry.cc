#include "engine/model/registry.h"

#include "absl/strings/str_cat.h"
#include "engine/io/checkpoint.h"
#include "engine/model/arch/arch.h"

namespace kiln::engine {
namespace {

constexpr ArchitectureEntry kArchitectures[] = {
    {"LlamaForCausalLM", &arch::LoadLlama},
    {"MistralForCausalLM", &arch::LoadLlama},
    {"Qwen2ForCausalLM", &arch::LoadLlama},
    {"GPT2LMHeadModel", &arch::LoadGpt2},
};

}  // namespace

std::span<const ArchitectureEntry> RegisteredArchitectures() { return kArchitectures; }

absl::StatusOr<CausalLmFactory> FindArchitecture(std::string_view name) {
  std::string supported;
  for (const ArchitectureEntry& e : kArchitectures) {
    if (e.name == name) return e.factory;
    absl::StrAppend(&supported, supported.empty() ? "" : ", ", std::string(e.name));
  }
  return absl::UnimplementedError(absl::StrCat("architecture \"", std::string(name),
                                               "\" is not supported; supported: ", supported));
}

absl::StatusOr<std::unique_ptr<CausalLm>> LoadCausalLm(const ModelConfig& config, const Checkpoint& checkpoint,
                                                       const LoadOptions& options, kernels::Backend& backend) {
  if (options.dtype != kernels::DType::kF32 && options.dtype != kernels::DType::kF16 &&
      options.dtype != kernels::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("load dtype ", std::string(kernels::DTypeName(options.dtype)),
                                                   " is not one of F32, F16, BF16"));
  }
  // Pre-quantized checkpoints (bitsandbytes / GPTQ / AWQ tensors) need the quantized linear
  // path, which this build does not have yet: refuse them by name rather than failing later on
  // an integer tensor.
  if (!config.quantization_config_json.empty()) {
    return absl::UnimplementedError(
        "config.json quantization_config: pre-quantized checkpoints (bitsandbytes, gptq, awq) are not "
        "supported by this build yet");
  }
  auto factory = FindArchitecture(ArchitectureName(config.architecture));
  if (!factory.ok()) return factory.status();
  return (*factory)(config, checkpoint, options, backend);
}

}  // namespace kiln::engine
