// PEFT's module selection, against what peft 0.21.2 itself computed (lora.json "matching":
// check_target_module_exists / _maybe_include_all_linear_layers / get_pattern_key run by the
// fixture script over the tiny models' Linear modules), plus ListBaseModules against the
// modules transformers builds.
#include "engine/adapter/target_match.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/adapter/adapter_test_util.h"

namespace kiln::engine {
namespace {

using testing::BaseFor;
using testing::LoraManifest;

const char* const kModels[] = {"llama_tiny", "qwen2_tiny", "mistral_tiny", "gpt2_tiny"};

TEST(BaseModulesTest, NamesAndDimsMatchTransformers) {
  const nlohmann::json m = LoraManifest();
  for (const char* model : kModels) {
    SCOPED_TRACE(model);
    const BaseModules base = BaseFor(model);
    std::vector<std::string> names;
    for (const BaseLinear& l : base.linears) names.push_back(l.name);
    std::vector<std::string> want;
    for (const auto& n : m["matching"]["linear_modules"][model]) want.push_back(n.get<std::string>());
    EXPECT_EQ(names, want);
  }
  // [name, out, in, stored_transposed] as the fixture script read them from the torch modules.
  for (const auto& [name, adapter] : m["adapters"].items()) {
    const std::string base_dir = adapter["base"].get<std::string>();
    const BaseModules base = BaseFor(base_dir.substr(base_dir.find('/') + 1));
    const auto& want = adapter["base_linear_modules"];
    ASSERT_EQ(base.linears.size(), want.size()) << name;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(base.linears[i].name, want[i][0].get<std::string>());
      EXPECT_EQ(base.linears[i].out_features, want[i][1].get<int64_t>()) << base.linears[i].name;
      EXPECT_EQ(base.linears[i].in_features, want[i][2].get<int64_t>()) << base.linears[i].name;
      EXPECT_EQ(base.linears[i].stored_transposed, want[i][3].get<bool>()) << base.linears[i].name;
    }
  }
}

TEST(TargetMatchTest, SameModulesAsPeft) {
  const nlohmann::json m = LoraManifest();
  ASSERT_TRUE(m.contains("matching"));
  int checked = 0;
  for (const auto& c : m["matching"]["cases"]) {
    nlohmann::json config = c["config"];
    config["peft_type"] = "LORA";
    SCOPED_TRACE(config.dump());
    auto parsed = ParseLoraConfig(config.dump());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    for (const char* model : kModels) {
      std::vector<std::string> want;
      for (const auto& n : c["matches"][model]) want.push_back(n.get<std::string>());
      const BaseModules base = BaseFor(model);
      auto got = SelectTargetModules(*parsed, base);
      if (want.empty()) {
        EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << model;
        continue;
      }
      ASSERT_TRUE(got.ok()) << model << ": " << got.status();
      std::vector<std::string> names;
      for (const BaseLinear* l : *got) names.push_back(l->name);
      EXPECT_EQ(names, want) << model;
      ++checked;
    }
  }
  EXPECT_GT(checked, 30);
}

TEST(TargetMatchTest, PatternKeysAsPeft) {
  const nlohmann::json m = LoraManifest();
  for (const auto& p : m["matching"]["pattern_keys"]) {
    std::vector<std::string> keys;
    std::string text = R"({"peft_type": "LORA", "r": 100, "target_modules": ["x"], "rank_pattern": {)";
    for (size_t i = 0; i < p["keys"].size(); ++i) {
      keys.push_back(p["keys"][i].get<std::string>());
      // Written by hand so the key order is the list order (nlohmann objects sort keys).
      text += (i ? ", " : "") + nlohmann::json(keys.back()).dump() + ": " + std::to_string(i + 1);
    }
    text += "}}";
    auto config = ParseLoraConfig(text);
    ASSERT_TRUE(config.ok()) << config.status();
    for (const char* model : kModels) {
      for (const auto& [module, key] : p["result"][model].items()) {
        const std::string k = key.get<std::string>();
        int64_t want = 100;  // get_pattern_key returned the module name itself: no pattern
        for (size_t i = 0; i < keys.size(); ++i) {
          if (keys[i] == k) {
            want = static_cast<int64_t>(i + 1);
            break;
          }
        }
        auto got = RankForModule(*config, module);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_EQ(got->r, want) << text << " " << module;
      }
    }
  }
}

TEST(TargetMatchTest, EmbeddingsAndOutputLayerAreRefused) {
  for (const char* targets : {R"(["embed_tokens", "q_proj"])", R"(["lm_head"])", R"(".*")"}) {
    auto c = ParseLoraConfig(std::string(R"({"peft_type": "LORA", "target_modules": )") + targets + "}");
    ASSERT_TRUE(c.ok()) << c.status();
    auto got = SelectTargetModules(*c, BaseFor("llama_tiny"));
    EXPECT_EQ(got.status().code(), absl::StatusCode::kUnimplemented) << targets;
  }
  auto gpt2 = ParseLoraConfig(R"({"peft_type": "LORA", "target_modules": ["wte", "c_attn"]})");
  ASSERT_TRUE(gpt2.ok());
  auto got = SelectTargetModules(*gpt2, BaseFor("gpt2_tiny"));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(got.status().message(), ::testing::HasSubstr("transformer.wte"));
}

TEST(TargetMatchTest, OverlongModuleNamesAreRefused) {
  auto c = ParseLoraConfig(R"({"peft_type": "LORA", "target_modules": ".*"})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(IsTargetModule(*c, std::string(300, 'a')).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::engine
