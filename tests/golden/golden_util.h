// Helpers shared by the golden tests: fixture paths, JSON and fp32 safetensors reads, and the
// max-abs comparison every logits check uses. Failures are reported as test failures.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/io/json_util.h"
#include "engine/io/safetensors.h"
#include "gtest/gtest.h"

namespace kiln::engine::golden {

// tests/golden/fixtures/ (with the trailing slash).
inline const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/";

// The JSON file at fixtures/`rel`.
inline nlohmann::json Json(const std::string& rel) {
  auto j = ReadJsonFile(kFixtures + rel, rel);
  EXPECT_TRUE(j.ok()) << j.status();
  return j.ok() ? *j : nlohmann::json();
}

// Tensor `key` (F32) of the safetensors file at fixtures/`rel`.
inline std::vector<float> ReadF32(const std::string& rel, const std::string& key) {
  auto f = SafetensorsFile::Open(kFixtures + rel, rel);
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return {};
  const TensorInfo* info = (*f)->Find(key);
  EXPECT_NE(info, nullptr) << key;
  if (info == nullptr) return {};
  std::vector<float> out(info->num_bytes() / sizeof(float));
  EXPECT_TRUE((*f)->Read(*info, {reinterpret_cast<uint8_t*>(out.data()), out.size() * sizeof(float)}).ok());
  return out;
}

inline double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, std::fabs(double{a[i]} - b[i]));
  return worst;
}

}  // namespace kiln::engine::golden
