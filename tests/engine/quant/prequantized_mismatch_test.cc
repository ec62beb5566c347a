// A checkpoint whose quantization config and tensors disagree is refused by name before any
// kernel sees it (reliability.md A15): a config that declares GPTQ over dense tensors, quantized
// tensors with no config, and a quant_method kiln does not implement.
#include <string>

#include "engine/io/checkpoint.h"
#include "engine/model/causal_lm.h"
#include "engine/model/model_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/";

class PrequantizedMismatchTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<CausalLm>> Load(const std::string& rel, const std::string& quantization_config) {
    auto config = LoadModelConfig(kFixtures + rel);
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) return config.status();
    config->quantization_config_json = quantization_config;
    auto checkpoint = Checkpoint::Open(kFixtures + rel);
    EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
    if (!checkpoint.ok()) return checkpoint.status();
    LoadOptions options;
    options.dtype = kernels::DType::kF32;
    return LoadCausalLm(*config, **checkpoint, options, *backend_);
  }
  std::unique_ptr<kernels::Backend> backend_ = std::move(*kernels::cpu::CreateCpuBackend({.num_threads = 1}));
};

TEST_F(PrequantizedMismatchTest, GptqConfigOverDenseTensorsNamesTheMissingTensor) {
  auto model = Load("models/llama_tiny", R"({"quant_method":"gptq","bits":4,"group_size":32})");
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << model.status();
  EXPECT_THAT(model.status().message(), HasSubstr("qweight")) << model.status();
}

TEST_F(PrequantizedMismatchTest, QuantizedTensorsWithoutAConfigAreRefused) {
  auto model = Load("prequant/gptq_4bit_g32_sym", "");
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << model.status();
  EXPECT_THAT(model.status().message(), HasSubstr("stored quantized")) << model.status();
}

TEST_F(PrequantizedMismatchTest, UnknownQuantMethodIsUnimplementedByName) {
  auto model = Load("models/llama_tiny", R"({"quant_method":"fp8"})");
  EXPECT_EQ(model.status().code(), absl::StatusCode::kUnimplemented) << model.status();
  EXPECT_THAT(model.status().message(), HasSubstr("quant_method")) << model.status();
}

TEST_F(PrequantizedMismatchTest, DenseCheckpointStillLoads) {
  EXPECT_TRUE(Load("models/llama_tiny", "").ok());
}

}  // namespace
}  // namespace kiln::engine
