// ParseLoraConfig: accepted fields, every refusal (named field, right code), bounds.
#include "engine/adapter/adapter_config.h"

#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;

// A minimal valid config with `extra` members spliced in.
std::string Config(const std::string& extra = "", const std::string& targets = R"(["q_proj", "v_proj"])") {
  return R"({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "target_modules": )" +
         targets + (extra.empty() ? "" : ", " + extra) + "}";
}

void ExpectError(const std::string& text, absl::StatusCode code, const std::string& needle,
                 const AdapterConfigLimits& limits = {}) {
  auto c = ParseLoraConfig(text, "adapter_config.json", limits);
  ASSERT_FALSE(c.ok()) << text;
  EXPECT_EQ(c.status().code(), code) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr(needle)) << text;
}

TEST(AdapterConfigTest, ParsesTheSupportedFields) {
  auto c = ParseLoraConfig(Config(
      R"("use_rslora": true, "fan_in_fan_out": false, "bias": "none", "lora_dropout": 0.1,
         "exclude_modules": ["model.layers.1.self_attn.v_proj"], "layers_to_transform": 1,
         "layers_pattern": "layers", "rank_pattern": {"v_proj": 2, "q_proj": 6},
         "alpha_pattern": {"q_proj": 3.5}, "base_model_name_or_path": "llama_tiny",
         "init_lora_weights": "gaussian", "use_dora": false, "modules_to_save": null,
         "loftq_config": {}, "megatron_core": "megatron.core", "qalora_group_size": 16)"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->r, 4);
  EXPECT_EQ(c->lora_alpha, 8.0);
  EXPECT_TRUE(c->use_rslora);
  EXPECT_EQ(c->target_modules.kind, ModuleSelector::Kind::kNames);
  EXPECT_THAT(c->target_modules.names, ::testing::ElementsAre("q_proj", "v_proj"));
  ASSERT_TRUE(c->exclude_modules.has_value());
  EXPECT_THAT(c->layers_to_transform, ::testing::ElementsAre(1));
  ASSERT_EQ(c->layers_pattern.size(), 1u);
  // File order is kept (PEFT takes the first matching key).
  ASSERT_EQ(c->rank_pattern.size(), 2u);
  EXPECT_EQ(c->rank_pattern[0].key, "v_proj");
  EXPECT_EQ(c->rank_pattern[1].key, "q_proj");
  EXPECT_EQ(c->base_model_name_or_path, "llama_tiny");
}

TEST(AdapterConfigTest, DefaultsAreLoraConfigDefaults) {
  auto c = ParseLoraConfig(R"({"peft_type": "LORA", "target_modules": ["q_proj"]})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->r, 8);
  EXPECT_EQ(c->lora_alpha, 8.0);
  EXPECT_FALSE(c->use_rslora);
}

TEST(AdapterConfigTest, TargetModulesForms) {
  auto regex = ParseLoraConfig(Config("", R"(".*\\.(q|v)_proj")"));
  ASSERT_TRUE(regex.ok()) << regex.status();
  EXPECT_EQ(regex->target_modules.kind, ModuleSelector::Kind::kRegex);
  auto all = ParseLoraConfig(Config("", R"("All-Linear")"));
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->target_modules.kind, ModuleSelector::Kind::kAllLinear);
}

TEST(AdapterConfigTest, RankAndScalePerModule) {
  auto c = ParseLoraConfig(Config(R"("rank_pattern": {"self_attn\\.q_proj": 2, "q_proj": 3},
                                     "alpha_pattern": {"layers\\.1\\..*": 16})"));
  ASSERT_TRUE(c.ok()) << c.status();
  auto q0 = RankForModule(*c, "model.layers.0.self_attn.q_proj");
  ASSERT_TRUE(q0.ok());
  EXPECT_EQ(q0->r, 2);  // first matching key wins
  EXPECT_EQ(q0->alpha, 8.0);
  EXPECT_DOUBLE_EQ(q0->scale, 4.0);
  auto v1 = RankForModule(*c, "model.layers.1.self_attn.v_proj");
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->r, 4);
  EXPECT_DOUBLE_EQ(v1->scale, 4.0);  // 16 / 4
  auto rs = ParseLoraConfig(Config(R"("use_rslora": true)"));
  ASSERT_TRUE(rs.ok());
  EXPECT_DOUBLE_EQ(RankForModule(*rs, "x.q_proj")->scale, 8.0 / std::sqrt(4.0));
}

struct Refusal {
  const char* extra;
  const char* field;
};

TEST(AdapterConfigTest, RefusesFeaturesThatChangeTheMath) {
  const Refusal cases[] = {
      {R"("use_dora": true)", "use_dora"},
      {R"("modules_to_save": ["lm_head"])", "modules_to_save"},
      {R"("lora_bias": true)", "lora_bias"},
      {R"("bias": "all")", "bias"},
      {R"("bias": "lora_only")", "bias"},
      {R"("target_parameters": ["mlp.experts.down_proj"])", "target_parameters"},
      {R"("layer_replication": [[0, 2]])", "layer_replication"},
      {R"("trainable_token_indices": [1, 2])", "trainable_token_indices"},
      {R"("use_qalora": true)", "use_qalora"},
      {R"("alora_invocation_tokens": [5, 6])", "alora_invocation_tokens"},
      {R"("use_bdlora": {"lora_a_is_blockdiagonal": true})", "use_bdlora"},
      {R"("arrow_config": {"top_k": 3})", "arrow_config"},
      {R"("velora_config": {"num_groups": 2})", "velora_config"},
      {R"("monteclora_config": {"n": 1})", "monteclora_config"},
      {R"("kasa_config": {"beta": 0.1})", "kasa_config"},
      {R"("lora_ga_config": {"x": 1})", "lora_ga_config"},
      {R"("init_lora_weights": "pissa_niter_4")", "init_lora_weights"},
      {R"("init_lora_weights": "olora")", "init_lora_weights"},
      {R"("init_lora_weights": "mica")", "init_lora_weights"},
      {R"("task_type": "SEQ_CLS")", "task_type"},
      {R"("use_fancy_new_variant": true)", "use_fancy_new_variant"},
  };
  for (const Refusal& r : cases) {
    std::string text = Config(r.extra);
    if (std::string(r.field) == "task_type") {
      text = R"({"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "task_type": "SEQ_CLS"})";
    }
    SCOPED_TRACE(r.extra);
    ExpectError(text, absl::StatusCode::kUnimplemented, r.field);
  }
}

TEST(AdapterConfigTest, UnknownPeftTypeIsUnimplemented) {
  ExpectError(R"({"peft_type": "PROMPT_TUNING", "target_modules": ["q_proj"]})",
              absl::StatusCode::kUnimplemented, "peft_type");
  ExpectError(R"({"target_modules": ["q_proj"]})", absl::StatusCode::kInvalidArgument, "peft_type");
}

TEST(AdapterConfigTest, UnknownFieldsWithoutAValueAreAccepted) {
  EXPECT_TRUE(ParseLoraConfig(Config(R"("some_future_field": null, "other": false, "x": [])")).ok());
}

TEST(AdapterConfigTest, BadValuesNameTheFieldAndLimit) {
  ExpectError(R"({"peft_type": "LORA", "r": 0, "target_modules": ["q"]})", absl::StatusCode::kInvalidArgument,
              "r: expected 1 <= r <= 1024");
  ExpectError(R"({"peft_type": "LORA", "r": -3, "target_modules": ["q"]})", absl::StatusCode::kInvalidArgument, "r:");
  AdapterConfigLimits small;
  small.max_rank = 16;
  ExpectError(R"({"peft_type": "LORA", "r": 32, "target_modules": ["q"]})", absl::StatusCode::kInvalidArgument,
              "r <= 16", small);
  ExpectError(R"({"peft_type": "LORA", "r": 4.5, "target_modules": ["q"]})", absl::StatusCode::kInvalidArgument, "r");
  // Python's json.dump writes NaN as a bare token, which is not JSON.
  ExpectError(R"({"peft_type": "LORA", "lora_alpha": NaN, "target_modules": ["q"]})",
              absl::StatusCode::kInvalidArgument, "adapter_config.json");
  ExpectError(R"({"peft_type": "LORA", "lora_alpha": "8", "target_modules": ["q"]})",
              absl::StatusCode::kInvalidArgument, "lora_alpha");
  ExpectError(Config(R"("rank_pattern": {"q_proj": 0})"), absl::StatusCode::kInvalidArgument, "rank_pattern");
  ExpectError(Config(R"("rank_pattern": {"q_proj": 4096})"), absl::StatusCode::kInvalidArgument, "[1, 1024]");
  ExpectError(Config(R"("alpha_pattern": {"q_proj": "big"})"), absl::StatusCode::kInvalidArgument, "alpha_pattern");
  ExpectError(Config(R"("layers_to_transform": [-1])"), absl::StatusCode::kInvalidArgument, "layers_to_transform");
  ExpectError(Config(R"("bias": "some")"), absl::StatusCode::kInvalidArgument, "bias");
}

TEST(AdapterConfigTest, PeftConsistencyRules) {
  ExpectError(R"({"peft_type": "LORA", "r": 4})", absl::StatusCode::kInvalidArgument, "target_modules");
  ExpectError(Config(R"("layers_to_transform": [0])", R"(".*q_proj")"), absl::StatusCode::kInvalidArgument,
              "layers_to_transform");
  ExpectError(Config(R"("layers_pattern": "layers")"), absl::StatusCode::kInvalidArgument,
              "requires layers_to_transform");
  ExpectError(Config(R"("exclude_modules": "all-linear")"), absl::StatusCode::kInvalidArgument, "exclude_modules");
  ExpectError(Config("", "42"), absl::StatusCode::kInvalidArgument, "target_modules");
  ExpectError(Config("", R"(["q_proj", 3])"), absl::StatusCode::kInvalidArgument, "target_modules[1]");
}

TEST(AdapterConfigTest, RegexesAreCompiledAndBounded) {
  ExpectError(Config("", R"x("(?P<x>q_proj)")x"), absl::StatusCode::kInvalidArgument, "ECMAScript");
  ExpectError(Config(R"("rank_pattern": {"(unclosed": 2})"), absl::StatusCode::kInvalidArgument, "rank_pattern");
  ExpectError(Config("", "\"" + std::string(300, 'a') + "\""), absl::StatusCode::kInvalidArgument, "limit of 256");
  ExpectError(Config("", "[\"" + std::string(300, 'a') + "\"]"), absl::StatusCode::kInvalidArgument,
              "target_modules[0]");
}

TEST(AdapterConfigTest, MalformedJsonIsInvalid) {
  ExpectError("[1, 2]", absl::StatusCode::kInvalidArgument, "expected a JSON object");
  ExpectError("{\"peft_type\": \"LORA\", \"peft_type\": \"LORA\"}", absl::StatusCode::kInvalidArgument,
              "adapter_config.json");
  ExpectError("{", absl::StatusCode::kInvalidArgument, "adapter_config.json");
}

}  // namespace
}  // namespace kiln::engine
