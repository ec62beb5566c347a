#include "engine/model/generation_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;

// testdata/llama/generation_config.json is written by transformers' GenerationConfig
// (testdata/make_configs.py).
TEST(GenerationConfigTest, SavedByTransformers) {
  absl::StatusOr<std::optional<GenerationConfig>> g =
      LoadGenerationConfig(std::string(KILN_SOURCE_DIR) + "/tests/engine/model/testdata/llama");
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(g->has_value());
  const GenerationConfig& c = **g;
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>({2, 7}));
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.do_sample, true);
  EXPECT_DOUBLE_EQ(*c.temperature, 0.6);
  EXPECT_EQ(c.top_k, 20);
  EXPECT_DOUBLE_EQ(*c.top_p, 0.9);
  EXPECT_DOUBLE_EQ(*c.min_p, 0.05);
  EXPECT_DOUBLE_EQ(*c.repetition_penalty, 1.1);
  EXPECT_EQ(c.max_new_tokens, 256);
  EXPECT_FALSE(c.max_length.has_value());
}

TEST(GenerationConfigTest, AbsentFileIsNullopt) {
  absl::StatusOr<std::optional<GenerationConfig>> g =
      LoadGenerationConfig(std::string(KILN_SOURCE_DIR) + "/tests/engine/model/testdata/gpt2");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_FALSE(g->has_value());
}

TEST(GenerationConfigTest, AllFieldsOptionalAndScalarEos) {
  absl::StatusOr<GenerationConfig> g = ParseGenerationConfig(R"({"eos_token_id": 5, "top_k": null})");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->eos_token_ids, std::vector<int64_t>({5}));
  EXPECT_FALSE(g->top_k.has_value());
  EXPECT_FALSE(g->temperature.has_value());
}

TEST(GenerationConfigTest, BadValuesNameTheField) {
  struct Case {
    const char* json;
    const char* message;
  };
  for (const Case& c : {Case{R"({"temperature": -1})", "temperature: must be in [0"},
                        Case{R"({"top_p": 1.5})", "top_p: must be in [0, 1]"},
                        Case{R"({"top_k": "5"})", "top_k: expected an integer, got \"5\""},
                        Case{R"({"repetition_penalty": 0})", "repetition_penalty: must be in (0"},
                        Case{R"({"max_new_tokens": 0})", "max_new_tokens: expected a positive integer"},
                        Case{R"({"eos_token_id": [1, -2]})", "eos_token_id: token ids must be non-negative"},
                        Case{R"({"do_sample": 1})", "do_sample: expected true or false"},
                        Case{R"({"top_k": 1, "top_k": 2})", "duplicate key \"top_k\""}}) {
    absl::Status s = ParseGenerationConfig(c.json).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message)) << c.json;
    EXPECT_THAT(std::string(s.message()), HasSubstr("generation_config.json")) << c.json;
  }
}

}  // namespace
}  // namespace kiln::engine
