#include "engine/model/registry.h"

#include "absl/strings/str_cat.h"
#include "engine/io/checkpoint.h"
#include "engine/model/arch/arch.h"
#include "engine/common/status_macros.h"
#include "engine/quant/prequant/prequant_config.h"

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
  // Pre-quantized checkpoints (bitsandbytes-serialized, GPTQ, AWQ): their config says how the
  // Linear tensors are stored; WeightLoader::LoadLinear reads them as stored.
  LoadOptions resolved = options;
  if (!resolved.prequantized.has_value()) {
    if (!config.quantization_config_json.empty()) {
      KILN_ASSIGN_OR_RETURN(resolved.prequantized, quant::ParseQuantizationConfig(config.quantization_config_json));
    } else if (!config.quantize_config_file_json.empty()) {
      KILN_ASSIGN_OR_RETURN(quant::PrequantConfig parsed,
                            quant::ParseQuantizeConfigFile(config.quantize_config_file_json));
      resolved.prequantized = std::move(parsed);
    }
  }
  if (resolved.prequantized.has_value()) resolved.bitsandbytes.reset();
  auto factory = FindArchitecture(ArchitectureName(config.architecture));
  if (!factory.ok()) return factory.status();
  return (*factory)(config, checkpoint, resolved, backend);
}

}  // namespace kiln::engine
