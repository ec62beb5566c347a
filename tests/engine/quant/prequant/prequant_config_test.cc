// Detection of pre-quantized checkpoints and every refusal of prequant_config.h.
#include "engine/quant/prequant/prequant_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/io/io_test_util.h"

namespace kiln::engine::quant {
namespace {

using ::testing::HasSubstr;

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/prequant/";

PrequantConfig Parse(const std::string& text) {
  auto c = ParseQuantizationConfig(text);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok() || !c->has_value()) return {};
  return **c;
}

// The status code and a substring the message must contain (the field's name).
void ExpectRefused(const std::string& text, absl::StatusCode code, const std::string& field) {
  auto c = ParseQuantizationConfig(text);
  ASSERT_FALSE(c.ok()) << text;
  EXPECT_EQ(c.status().code(), code) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(field)) << text;
}

TEST(PrequantConfigTest, EmptyMeansNotQuantized) {
  auto c = ParseQuantizationConfig("");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value());
}

TEST(PrequantConfigTest, BitsAndBytesAsTransformersSavesIt) {
  // The exact object transformers 5.23 wrote for the bnb_nf4_dq fixture.
  PrequantConfig c = Parse(
      R"({"_load_in_4bit": true, "_load_in_8bit": false, "bnb_4bit_compute_dtype": "float32",
          "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true,
          "llm_int8_enable_fp32_cpu_offload": false, "llm_int8_has_fp16_weight": false,
          "llm_int8_skip_modules": null, "llm_int8_threshold": 6.0, "load_in_4bit": true, "load_in_8bit": false,
          "quant_method": "bitsandbytes"})");
  EXPECT_EQ(c.method, PrequantMethod::kBitsAndBytes);
  EXPECT_EQ(c.bnb.mode, BnbMode::k4Bit);
  EXPECT_EQ(c.bnb.quant_type, Bnb4Type::kNf4);
  EXPECT_TRUE(c.bnb.double_quant);
  EXPECT_EQ(c.source, "config.json");
  PrequantConfig eight = Parse(
      R"({"quant_method": "bitsandbytes", "load_in_8bit": true, "llm_int8_threshold": 4.5,
          "llm_int8_skip_modules": ["mlp.down_proj"]})");
  EXPECT_EQ(eight.bnb.mode, BnbMode::k8Bit);
  EXPECT_FLOAT_EQ(eight.bnb.int8_threshold, 4.5f);
  EXPECT_FALSE(eight.IsQuantized("model.layers.0.mlp.down_proj"));
  EXPECT_TRUE(eight.IsQuantized("model.layers.0.mlp.up_proj"));
}

TEST(PrequantConfigTest, BitsAndBytesRefusals) {
  ExpectRefused(R"({"quant_method": "bitsandbytes", "load_in_4bit": true, "load_in_8bit": true})",
                absl::StatusCode::kInvalidArgument, "load_in_4bit");
  ExpectRefused(R"({"quant_method": "bitsandbytes"})", absl::StatusCode::kInvalidArgument, "load_in_4bit");
  ExpectRefused(R"({"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "nf5"})",
                absl::StatusCode::kInvalidArgument, "bnb_4bit_quant_type");
  ExpectRefused(R"({"quant_method": "bitsandbytes", "load_in_4bit": "yes"})", absl::StatusCode::kInvalidArgument,
                "quantization_config.load_in_4bit");
  ExpectRefused(R"({"quant_method": "bitsandbytes", "load_in_8bit": true, "llm_int8_skip_modules": "lm_head"})",
                absl::StatusCode::kInvalidArgument, "llm_int8_skip_modules");
}

TEST(PrequantConfigTest, GptqFieldsDefaultsAndSynonyms) {
  PrequantConfig d = Parse(R"({"quant_method": "gptq"})");
  EXPECT_EQ(d.method, PrequantMethod::kGptq);
  EXPECT_EQ(d.gptq.bits, 4);
  EXPECT_EQ(d.gptq.group_size, 128);
  EXPECT_FALSE(d.gptq.desc_act);
  EXPECT_TRUE(d.gptq.sym);
  EXPECT_EQ(d.gptq.zero_offset, 1);
  PrequantConfig c = Parse(
      R"({"quant_method": "gptq", "w_bit": 8, "q_group_size": -1, "desc_act": true, "sym": false,
          "checkpoint_format": "gptq_v2"})");
  EXPECT_EQ(c.gptq.bits, 8);
  EXPECT_EQ(c.gptq.group_size, -1);
  EXPECT_TRUE(c.gptq.desc_act);
  EXPECT_FALSE(c.gptq.sym);
  EXPECT_EQ(c.gptq.zero_offset, 0);
  EXPECT_EQ(Parse(R"({"quant_method": "gptq", "bits": 2, "format": "gptq"})").gptq.bits, 2);
}

TEST(PrequantConfigTest, GptqRefusals) {
  ExpectRefused(R"({"quant_method": "gptq", "bits": 3})", absl::StatusCode::kUnimplemented,
                "quantization_config.bits");
  ExpectRefused(R"({"quant_method": "gptq", "bits": 5})", absl::StatusCode::kInvalidArgument,
                "quantization_config.bits");
  ExpectRefused(R"({"quant_method": "gptq", "bits": 4, "w_bit": 8})", absl::StatusCode::kInvalidArgument, "w_bit");
  ExpectRefused(R"({"quant_method": "gptq", "bits": 4.0})", absl::StatusCode::kInvalidArgument, "bits");
  ExpectRefused(R"({"quant_method": "gptq", "group_size": 0})", absl::StatusCode::kInvalidArgument, "group_size");
  ExpectRefused(R"({"quant_method": "gptq", "group_size": -2})", absl::StatusCode::kInvalidArgument, "group_size");
  ExpectRefused(R"({"quant_method": "gptq", "desc_act": "true"})", absl::StatusCode::kInvalidArgument, "desc_act");
  ExpectRefused(R"({"quant_method": "gptq", "sym": 1})", absl::StatusCode::kInvalidArgument, "sym");
  ExpectRefused(R"({"quant_method": "gptq", "checkpoint_format": "marlin"})", absl::StatusCode::kUnimplemented,
                "checkpoint_format");
  ExpectRefused(R"({"quant_method": "gptq", "checkpoint_format": "gptq_v9"})", absl::StatusCode::kInvalidArgument,
                "checkpoint_format");
}

TEST(PrequantConfigTest, Awq) {
  PrequantConfig c = Parse(
      R"({"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true, "version": "GEMM",
          "modules_to_not_convert": ["visual"]})");
  EXPECT_EQ(c.method, PrequantMethod::kAwq);
  EXPECT_EQ(c.awq.group_size, 64);
  EXPECT_FALSE(c.IsQuantized("visual.blocks.0.attn.qkv"));
  EXPECT_EQ(Parse(R"({"quant_method": "awq", "w_bit": 4, "q_group_size": 32})").awq.group_size, 32);
  ExpectRefused(R"({"quant_method": "awq", "bits": 8})", absl::StatusCode::kInvalidArgument,
                "quantization_config.bits");
  ExpectRefused(R"({"quant_method": "awq", "w_bit": 3})", absl::StatusCode::kInvalidArgument, "w_bit");
  ExpectRefused(R"({"quant_method": "awq", "group_size": -1})", absl::StatusCode::kInvalidArgument, "group_size");
  ExpectRefused(R"({"quant_method": "awq", "zero_point": false})", absl::StatusCode::kUnimplemented, "zero_point");
  for (const char* v : {"gemv", "gemv_fast", "marlin", "exllama", "ipex"}) {
    ExpectRefused(std::string(R"({"quant_method": "awq", "version": ")") + v + "\"}",
                  absl::StatusCode::kUnimplemented, "quantization_config.version");
  }
  ExpectRefused(R"({"quant_method": "awq", "version": "gemmm"})", absl::StatusCode::kInvalidArgument, "version");
}

TEST(PrequantConfigTest, OtherMethodsAreUnimplementedByName) {
  for (const char* m : {"fp8", "compressed-tensors", "aqlm", "hqq", "eetq"}) {
    auto c = ParseQuantizationConfig(std::string(R"({"quant_method": ")") + m + "\"}");
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("quant_method"));
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(m));
  }
  ExpectRefused(R"({"bits": 4})", absl::StatusCode::kInvalidArgument, "quant_method");
  ExpectRefused(R"({"quant_method": 4})", absl::StatusCode::kInvalidArgument, "quant_method");
  ExpectRefused(R"([1, 2])", absl::StatusCode::kInvalidArgument, "quantization_config");
  ExpectRefused(R"({"quant_method": "gptq",)", absl::StatusCode::kInvalidArgument, "config.json");
}

TEST(PrequantConfigTest, DetectsQuantizeConfigJsonBesideConfig) {
  // The gptq_8bit_gall_asym fixture has no quantization_config in config.json.
  auto c = DetectPrequantConfig(kFixtures + "gptq_8bit_gall_asym", "");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->has_value());
  EXPECT_EQ((*c)->method, PrequantMethod::kGptq);
  EXPECT_EQ((*c)->gptq.bits, 8);
  EXPECT_EQ((*c)->gptq.group_size, -1);
  EXPECT_FALSE((*c)->gptq.sym);
  EXPECT_EQ((*c)->source, "quantize_config.json");

  // config.json's quantization_config wins over quantize_config.json.
  auto w = DetectPrequantConfig(kFixtures + "gptq_8bit_gall_asym", R"({"quant_method": "awq"})");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->method, PrequantMethod::kAwq);

  auto none = DetectPrequantConfig(std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/llama_tiny", "");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(PrequantConfigTest, BadQuantizeConfigJsonNamesTheFileNotThePath) {
  testing::TempDir dir;
  testing::WriteFile(dir / "quantize_config.json", R"({"bits": 3, "group_size": 128})");
  auto c = DetectPrequantConfig(dir.path(), "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("bits"));
  testing::WriteFile(dir / "quantize_config.json", R"({"bits": 4, "group_size": "128"})");
  c = DetectPrequantConfig(dir.path(), "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("quantize_config.json: group_size"));
  EXPECT_THAT(std::string(c.status().message()), ::testing::Not(HasSubstr(dir.path())));
  testing::WriteFile(dir / "quantize_config.json", std::string(100, '[') + std::string(100, ']'));
  EXPECT_EQ(DetectPrequantConfig(dir.path(), "").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::engine::quant
