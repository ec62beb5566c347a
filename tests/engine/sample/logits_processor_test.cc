// The logits pipeline against transformers' own LogitsProcessors (testdata/ is produced by
// make_testdata.py with the reference stack), plus TokenHistory bookkeeping.
#include "engine/sample/logits_processor.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kiln::engine::sample {
namespace {

using ::testing::ElementsAre;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TestdataPath(const char* name) {
  return std::string(KILN_SOURCE_DIR) + "/tests/engine/sample/testdata/" + name;
}

struct Case {
  std::string name;
  int64_t vocab = 0;
  std::vector<int32_t> prompt, generated, suppressed;
  ResolvedSampling sampling;
  int32_t min_new_tokens = 0;
  std::vector<float> input, expected;
  std::string pipeline;  // transformers' processor order, for failure messages
  std::vector<std::string> stages;
};


// Reads the fixture; any malformed entry fails the test (no exceptions: checked accessors).
std::vector<Case> LoadCases() {
  const std::string text = ReadFile(TestdataPath("pipeline_cases.json"));
  const std::string blob = ReadFile(TestdataPath("pipeline_cases.f32"));
  const nlohmann::json meta = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  std::vector<Case> cases;
  if (meta.is_discarded() || !meta.contains("cases") || !meta["cases"].is_array()) {
    ADD_FAILURE() << "pipeline_cases.json is missing or malformed";
    return cases;
  }
  const auto num = [](const nlohmann::json& j, const char* key) {
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
  };
  const auto ints = [](const nlohmann::json& j, const char* key) {
    std::vector<int32_t> out;
    if (j.contains(key) && j[key].is_array()) {
      for (const auto& v : j[key]) out.push_back(v.is_number_integer() ? v.get<int32_t>() : -1);
    }
    return out;
  };
  for (const nlohmann::json& j : meta["cases"]) {
    Case c;
    c.name = j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>() : "?";
    c.vocab = static_cast<int64_t>(num(j, "vocab"));
    c.prompt = ints(j, "prompt");
    c.generated = ints(j, "generated");
    c.suppressed = ints(j, "suppressed_ids");
    c.sampling.greedy = j.contains("greedy") && j["greedy"].is_boolean() && j["greedy"].get<bool>();
    c.sampling.temperature = static_cast<float>(num(j, "temperature"));
    const auto top_k = static_cast<int32_t>(num(j, "top_k"));
    c.sampling.top_k = top_k >= c.vocab ? 0 : top_k;
    c.sampling.top_p = static_cast<float>(num(j, "top_p"));
    c.sampling.min_p = static_cast<float>(num(j, "min_p"));
    c.sampling.repetition_penalty = static_cast<float>(num(j, "repetition_penalty"));
    c.sampling.presence_penalty = static_cast<float>(num(j, "presence_penalty"));
    c.sampling.frequency_penalty = static_cast<float>(num(j, "frequency_penalty"));
    c.min_new_tokens = static_cast<int32_t>(num(j, "min_new_tokens"));
    if (j.contains("pipeline") && j["pipeline"].is_array()) {
      c.pipeline = j["pipeline"].dump();
      for (const auto& name : j["pipeline"]) {
        c.stages.push_back(name.is_string() ? name.get<std::string>() : "?");
      }
    }
    const auto offset = static_cast<size_t>(num(j, "offset"));
    const size_t bytes = static_cast<size_t>(c.vocab) * sizeof(float);
    if (c.vocab <= 0 || (offset * sizeof(float)) + 2 * bytes > blob.size()) {
      ADD_FAILURE() << c.name << ": bad offset/vocab";
      continue;
    }
    c.input.resize(c.vocab);
    c.expected.resize(c.vocab);
    std::memcpy(c.input.data(), blob.data() + offset * sizeof(float), bytes);
    std::memcpy(c.expected.data(), blob.data() + offset * sizeof(float) + bytes, bytes);
    cases.push_back(std::move(c));
  }
  return cases;
}

// kiln's documented order (logits_processor.h); presence/frequency is kiln's insertion.
const std::vector<std::string>& KilnOrder() {
  static const std::vector<std::string> order = {
      "RepetitionPenaltyLogitsProcessor", "PresenceFrequencyPenalty",
      "MinNewTokensLengthLogitsProcessor", "TemperatureLogitsWarper", "TopKLogitsWarper",
      "TopPLogitsWarper", "MinPLogitsWarper"};
  return order;
}

// generate()'s order, as recorded from transformers' _get_logits_processor, must be a
// subsequence of kiln's order.
TEST(LogitsPipelineFidelityTest, TransformersOrderIsKilnsOrder) {
  const std::vector<Case> cases = LoadCases();
  ASSERT_FALSE(cases.empty());
  size_t longest = 0;
  for (const Case& c : cases) {
    size_t at = 0;
    for (const std::string& stage : c.stages) {
      while (at < KilnOrder().size() && KilnOrder()[at] != stage) ++at;
      ASSERT_LT(at, KilnOrder().size()) << c.name << ": " << c.pipeline;
      ++at;
    }
    longest = std::max(longest, c.stages.size());
  }
  EXPECT_GE(longest, 6u);  // some cases chain (nearly) every stage
}

TEST(LogitsPipelineFidelityTest, MatchesTransformersProcessors) {
  const std::vector<Case> cases = LoadCases();
  ASSERT_GE(cases.size(), 100u);
  int bit_exact = 0, total_finite = 0, kinds_with_cuts = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name + " " + c.pipeline);
    TokenHistory history(c.vocab, c.prompt);
    for (const int32_t id : c.generated) history.Append(id);
    LogitsPipeline pipeline(c.sampling, c.min_new_tokens, c.suppressed);
    std::vector<float> logits = c.input;
    pipeline.Process(logits, history);
    int removed = 0;
    for (int64_t i = 0; i < c.vocab; ++i) {
      const float want = c.expected[i];
      const float got = logits[i];
      if (std::isinf(want)) {
        ASSERT_EQ(got, want) << "token " << i;
        ++removed;
        continue;
      }
      ASSERT_TRUE(std::isfinite(got)) << "token " << i << " removed by kiln, kept by HF";
      ASSERT_NEAR(got, want, 1e-6 * std::max(1.0f, std::fabs(want))) << "token " << i;
      ++total_finite;
      if (got == want) ++bit_exact;
    }
    if (removed > 0) ++kinds_with_cuts;
  }
  // The elementwise float operations are the same as torch's: expect bit-identical values.
  EXPECT_EQ(bit_exact, total_finite);
  // The fixture must exercise filtering, not only pass-through.
  EXPECT_GT(kinds_with_cuts, 60);
}

TEST(LogitsPipelineTest, TopKKeepsAllTiesAtTheKthValue) {
  ResolvedSampling s;
  s.greedy = false;
  s.top_k = 3;
  LogitsPipeline pipeline(s, 0, {});
  TokenHistory history(6, {});
  std::vector<float> logits = {1, 2, 2, 2, 2, 0};
  pipeline.Process(logits, history);  // transformers: [-inf, 2, 2, 2, 2, -inf]
  EXPECT_THAT(logits, ElementsAre(kNegInf, 2, 2, 2, 2, kNegInf));
}

TEST(LogitsPipelineTest, TopPTiesAtTheBoundaryKeepLowerIds) {
  ResolvedSampling s;
  s.greedy = false;
  s.top_p = 0.5f;
  LogitsPipeline pipeline(s, 0, {});
  TokenHistory history(8, {});
  std::vector<float> logits(8, 0.0f);  // 0.125 each: exactly 4 survive
  pipeline.Process(logits, history);
  EXPECT_THAT(logits, ElementsAre(0, 0, 0, 0, kNegInf, kNegInf, kNegInf, kNegInf));
}

TEST(LogitsPipelineTest, TopPGrowsItsSortedPrefixOnAFlatVocabulary) {
  ResolvedSampling s;
  s.greedy = false;
  s.top_p = 0.75f;
  const int vocab = 10000;
  LogitsPipeline pipeline(s, 0, {});
  TokenHistory history(vocab, {});
  std::vector<float> logits(vocab);
  for (int i = 0; i < vocab; ++i) logits[i] = static_cast<float>(vocab - i) * 1e-7f;
  pipeline.Process(logits, history);
  int kept = 0;
  for (int i = 0; i < vocab; ++i) {
    if (std::isfinite(logits[i])) {
      ++kept;
      EXPECT_LT(i, 7600) << "only the most probable tokens survive";
    }
  }
  EXPECT_NEAR(kept, 7500, 5);
}

TEST(LogitsPipelineTest, MinNewTokensMasksUntilReached) {
  ResolvedSampling s;  // greedy: processors only
  s.greedy = true;
  LogitsPipeline pipeline(s, /*min_new_tokens=*/2, {1, 3});
  TokenHistory history(4, std::vector<int32_t>{0});
  std::vector<float> logits = {0.5f, 2.0f, 0.1f, 3.0f};
  pipeline.Process(logits, history);
  EXPECT_THAT(logits, ElementsAre(0.5f, kNegInf, 0.1f, kNegInf));
  history.Append(0);
  logits = {0.5f, 2.0f, 0.1f, 3.0f};
  pipeline.Process(logits, history);
  EXPECT_THAT(logits, ElementsAre(0.5f, kNegInf, 0.1f, kNegInf));
  history.Append(2);
  logits = {0.5f, 2.0f, 0.1f, 3.0f};
  pipeline.Process(logits, history);
  EXPECT_THAT(logits, ElementsAre(0.5f, 2.0f, 0.1f, 3.0f));
}

TEST(TokenHistoryTest, TracksUniqueAndGeneratedCounts) {
  TokenHistory history(10, std::vector<int32_t>{3, 3, 7, 42, -1});
  EXPECT_THAT(history.unique_tokens(), ElementsAre(3, 7));  // out-of-vocab ids ignored
  history.Append(5);
  history.Append(3);
  history.Append(5);
  EXPECT_EQ(history.num_generated(), 3);
  EXPECT_THAT(history.unique_tokens(), ElementsAre(3, 7, 5));
  ASSERT_EQ(history.generated_counts().size(), 2u);
  EXPECT_EQ(history.generated_counts()[0].id, 5);
  EXPECT_EQ(history.generated_counts()[0].count, 2);
  EXPECT_EQ(history.generated_counts()[1].id, 3);
  EXPECT_EQ(history.generated_counts()[1].count, 1);
}

}  // namespace
}  // namespace kiln::engine::sample
