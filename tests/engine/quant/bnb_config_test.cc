// BitsAndBytesConfig validation: transformers' rules and defaults, errors naming the field.
#include "engine/quant/bnb_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine::quant {
namespace {

using ::testing::HasSubstr;

BitsAndBytesOptions FourBit() {
  BitsAndBytesOptions o;
  o.load_in_4bit = true;
  return o;
}

TEST(BnbConfigTest, DefaultsMatchTransformers) {
  auto c = ValidateBitsAndBytes(FourBit());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->mode, BnbMode::k4Bit);
  EXPECT_EQ(c->quant_type, Bnb4Type::kFp4);
  EXPECT_EQ(c->compute_dtype, kernels::DType::kF32);
  EXPECT_EQ(c->quant_storage, "uint8");
  EXPECT_FLOAT_EQ(c->int8_threshold, 6.0f);
  EXPECT_FALSE(c->double_quant);
  EXPECT_EQ(c->blocksize, 64);
  EXPECT_EQ(c->MethodName(), "fp4");
}

TEST(BnbConfigTest, FourAndEightBitAreExclusive) {
  BitsAndBytesOptions o = FourBit();
  o.load_in_8bit = true;
  auto c = ValidateBitsAndBytes(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("load_in_4bit and load_in_8bit are both true"));
  EXPECT_EQ(ValidateBitsAndBytes(BitsAndBytesOptions{}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BnbConfigTest, EightBitMethodName) {
  BitsAndBytesOptions o;
  o.load_in_8bit = true;
  o.llm_int8_threshold = 4.5f;
  auto c = ValidateBitsAndBytes(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->MethodName(), "llm_int8");
  EXPECT_FLOAT_EQ(c->int8_threshold, 4.5f);
}

TEST(BnbConfigTest, FieldErrorsNameTheField) {
  struct Case {
    void (*edit)(BitsAndBytesOptions&);
    const char* field;
  };
  const Case cases[] = {
      {[](BitsAndBytesOptions& o) { o.bnb_4bit_quant_type = "int4"; }, "bnb_4bit_quant_type"},
      {[](BitsAndBytesOptions& o) { o.bnb_4bit_compute_dtype = "float64"; }, "bnb_4bit_compute_dtype"},
      {[](BitsAndBytesOptions& o) { o.bnb_4bit_quant_storage = "int4"; }, "bnb_4bit_quant_storage"},
      {[](BitsAndBytesOptions& o) { o.llm_int8_threshold = std::nanf(""); }, "llm_int8_threshold"},
      {[](BitsAndBytesOptions& o) { o.llm_int8_skip_modules = {""}; }, "llm_int8_skip_modules"},
  };
  for (const Case& c : cases) {
    BitsAndBytesOptions o = FourBit();
    c.edit(o);
    auto r = ValidateBitsAndBytes(o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(r.status().message(), HasSubstr(c.field));
  }
}

TEST(BnbConfigTest, DtypeSpellings) {
  BitsAndBytesOptions o = FourBit();
  o.bnb_4bit_quant_type = "nf4";
  o.bnb_4bit_compute_dtype = "torch.bfloat16";
  o.bnb_4bit_quant_storage = "float32";
  auto c = ValidateBitsAndBytes(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->compute_dtype, kernels::DType::kBF16);
  EXPECT_EQ(c->quant_type, Bnb4Type::kNf4);
  EXPECT_EQ(c->quant_storage, "float32");
  o.bnb_4bit_compute_dtype = "float16";
  EXPECT_EQ(ValidateBitsAndBytes(o)->compute_dtype, kernels::DType::kF16);
}

TEST(BnbConfigTest, SkipModulesMatchLikeShouldConvertModule) {
  BitsAndBytesOptions o = FourBit();
  o.llm_int8_skip_modules = {"model.layers.1", "down_proj", "mlp.gate"};
  auto c = ValidateBitsAndBytes(o);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->ShouldQuantize("model.layers.1.self_attn.q_proj"));
  EXPECT_TRUE(c->ShouldQuantize("model.layers.11.self_attn.q_proj"));
  EXPECT_FALSE(c->ShouldQuantize("model.layers.0.mlp.down_proj"));
  EXPECT_TRUE(c->ShouldQuantize("model.layers.0.mlp.gate_proj"));  // "mlp.gate" is no suffix/prefix of it
  EXPECT_TRUE(c->ShouldQuantize("model.layers.0.self_attn.k_proj"));
  o.llm_int8_skip_modules = {"layers.*"};
  EXPECT_EQ(ValidateBitsAndBytes(o).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace kiln::engine::quant
