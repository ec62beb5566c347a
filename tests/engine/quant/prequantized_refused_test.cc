// Until the quantized linear path lands, a checkpoint whose config.json declares a
// quantization_config is refused as UNIMPLEMENTED naming the field, before any tensor is read.
#include "engine/io/checkpoint.h"
#include "engine/model/causal_lm.h"
#include "engine/model/model_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace kiln::engine {
namespace {

TEST(PrequantizedTest, QuantizationConfigIsUnimplemented) {
  const std::string dir = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/llama_tiny";
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto backend = kernels::cpu::CreateCpuBackend({.num_threads = 1});
  ASSERT_TRUE(backend.ok());
  config->quantization_config_json = R"({"quant_method":"gptq","bits":4})";
  auto model = LoadCausalLm(*config, **checkpoint, {.dtype = kernels::DType::kF32}, **backend);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(model.status().message(), ::testing::HasSubstr("quantization_config"));
  config->quantization_config_json.clear();
  EXPECT_TRUE(LoadCausalLm(*config, **checkpoint, {.dtype = kernels::DType::kF32}, **backend).ok());
}

}  // namespace
}  // namespace kiln::engine
