// Shared by the engine/adapter tests: the peft fixtures (tests/golden/fixtures/lora, written by
// tools/fixtures/make_lora_fixtures.py) and the tiny base models.
#pragma once

#include <string>

#include "engine/adapter/base_modules.h"
#include "engine/io/json_util.h"
#include "engine/model/model_config.h"
#include "gtest/gtest.h"

namespace kiln::engine::testing {

inline const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures";
inline const std::string kLoraFixtures = kFixtures + "/lora";

inline nlohmann::json LoraManifest() {
  auto j = ReadJsonFile(kLoraFixtures + "/lora.json", "lora.json", JsonLimits{8u << 20, 64});
  EXPECT_TRUE(j.ok()) << j.status();
  return j.ok() ? *j : nlohmann::json::object();
}

// ListBaseModules for models/<name>.
inline BaseModules BaseFor(const std::string& model) {
  auto config = LoadModelConfig(kFixtures + "/models/" + model);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? ListBaseModules(*config) : BaseModules{};
}

}  // namespace kiln::engine::testing
