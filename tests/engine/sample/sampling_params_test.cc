// Parameter merging and validation (reliability.md table B3: sampling parameter attacks).
#include "engine/sample/sampling_params.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine::sample {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kVocab = 1000;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

absl::Status Resolve(const SamplingOptions& o, const GenerationDefaults& d = {}) {
  return ResolveSampling(o, d, kVocab).status();
}

void ExpectRejected(const absl::Status& s, const std::string& field, const std::string& text) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(field)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(text)) << s;
}

TEST(ResolveSamplingTest, TransformersDefaultsWhenNothingIsSet) {
  const auto r = ResolveSampling({}, {}, kVocab);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->greedy);  // do_sample defaults to false
  EXPECT_EQ(r->temperature, 1.0f);
  EXPECT_EQ(r->top_k, 50);
  EXPECT_EQ(r->top_p, 1.0f);
  EXPECT_EQ(r->min_p, 0.0f);
  EXPECT_EQ(r->repetition_penalty, 1.0f);
  EXPECT_FALSE(r->seed.has_value());
}

TEST(ResolveSamplingTest, RequestOverGenerationConfigOverBuiltins) {
  GenerationDefaults d;
  d.do_sample = true;
  d.temperature = 0.6f;
  d.top_p = 0.9f;
  d.top_k = 20;
  SamplingOptions o;
  o.top_p = 0.5f;
  o.seed = std::numeric_limits<uint64_t>::max();
  const auto r = ResolveSampling(o, d, kVocab);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->greedy);
  EXPECT_EQ(r->temperature, 0.6f);
  EXPECT_EQ(r->top_p, 0.5f);
  EXPECT_EQ(r->top_k, 20);
  EXPECT_EQ(r->seed, std::numeric_limits<uint64_t>::max());
}

TEST(ResolveSamplingTest, GreedySwitches) {
  GenerationDefaults sampling_model;
  sampling_model.do_sample = true;
  SamplingOptions o;
  o.temperature = 0.0f;  // temperature 0 is greedy even when the model samples
  EXPECT_TRUE(ResolveSampling(o, sampling_model, kVocab)->greedy);
  o = {};
  o.do_sample = false;
  EXPECT_TRUE(ResolveSampling(o, sampling_model, kVocab)->greedy);
  o = {};
  o.temperature = 0.7f;  // an explicit temperature > 0 turns sampling on
  EXPECT_FALSE(ResolveSampling(o, {}, kVocab)->greedy);
  o.do_sample = false;  // unless do_sample says otherwise
  EXPECT_TRUE(ResolveSampling(o, {}, kVocab)->greedy);
  o = {};
  o.top_p = 0.9f;  // top_p alone does not (transformers: greedy ignores warpers)
  EXPECT_TRUE(ResolveSampling(o, {}, kVocab)->greedy);
}

TEST(ResolveSamplingTest, TopKClampsDefaultsButRejectsOversizedRequests) {
  GenerationDefaults d;
  d.top_k = 5000;
  EXPECT_EQ(ResolveSampling({}, d, kVocab)->top_k, 0);   // >= vocab: off
  EXPECT_EQ(ResolveSampling({}, {}, 32)->top_k, 0);      // builtin 50 on a tiny vocab
  SamplingOptions o;
  o.top_k = kVocab;
  EXPECT_EQ(ResolveSampling(o, {}, kVocab)->top_k, 0);   // boundary accepted
  o.top_k = 0;
  EXPECT_EQ(ResolveSampling(o, {}, kVocab)->top_k, 0);
  o.top_k = kVocab + 1;
  ExpectRejected(Resolve(o), "sampling.top_k", "must be in [0, 1000]");
  o.top_k = -5;
  ExpectRejected(Resolve(o), "sampling.top_k", "got -5");
}

struct FloatCase {
  const char* field;
  std::optional<float> SamplingOptions::*member;
  std::vector<float> accepted;
  std::vector<float> rejected;
  const char* range;
};

TEST(ResolveSamplingTest, FloatParametersBoundaries) {
  const std::vector<FloatCase> cases = {
      {"temperature", &SamplingOptions::temperature, {0.0f, 1e-6f, 1.0f, 100.0f},
       {-1.0f, -1e-6f, 100.5f, 1e9f, kNaN, kInf, -kInf}, "[0, 100]"},
      {"top_p", &SamplingOptions::top_p, {1e-6f, 0.5f, 1.0f},
       {0.0f, -0.1f, 1.5f, 1.0000001f, kNaN, kInf}, "(0, 1]"},
      {"min_p", &SamplingOptions::min_p, {0.0f, 0.5f, 1.0f}, {-0.01f, 2.0f, kNaN, kInf},
       "[0, 1]"},
      {"repetition_penalty", &SamplingOptions::repetition_penalty, {1e-6f, 1.0f, 100.0f},
       {0.0f, -1.0f, 100.5f, kNaN, kInf}, "(0, 100]"},
      {"presence_penalty", &SamplingOptions::presence_penalty, {-2.0f, 0.0f, 2.0f},
       {-2.01f, 2.01f, kNaN, -kInf}, "[-2, 2]"},
      {"frequency_penalty", &SamplingOptions::frequency_penalty, {-2.0f, 0.0f, 2.0f},
       {-2.01f, 3.0f, kNaN, kInf}, "[-2, 2]"},
  };
  for (const FloatCase& c : cases) {
    for (const float v : c.accepted) {
      SamplingOptions o;
      o.*(c.member) = v;
      EXPECT_TRUE(Resolve(o).ok()) << c.field << "=" << v << ": " << Resolve(o);
    }
    for (const float v : c.rejected) {
      SamplingOptions o;
      o.*(c.member) = v;
      ExpectRejected(Resolve(o), std::string("sampling.") + c.field,
                     std::string("must be in ") + c.range);
    }
  }
}

TEST(ResolveSamplingTest, MessageNamesValueAndLimit) {
  SamplingOptions o;
  o.top_p = 1.5f;
  EXPECT_EQ(Resolve(o).message(), "sampling.top_p: must be in (0, 1], got 1.5");
  o = {};
  o.temperature = kNaN;
  EXPECT_THAT(std::string(Resolve(o).message()), HasSubstr("got nan"));
}

TEST(ResolveSamplingTest, BadGenerationConfigValuesAreAttributed) {
  GenerationDefaults d;
  d.temperature = -0.5f;
  ExpectRejected(Resolve({}, d), "sampling.temperature (from generation_config.json)", "got -0.5");
  d = {};
  d.top_p = 0.0f;  // transformers accepts top_p=0 in a config
  EXPECT_TRUE(Resolve({}, d).ok());
  d.top_p = 1.5f;
  ExpectRejected(Resolve({}, d), "generation_config.json", "[0, 1]");
  d = {};
  d.top_k = -1;
  ExpectRejected(Resolve({}, d), "sampling.top_k (from generation_config.json)", "got -1");
  d = {};
  d.repetition_penalty = kNaN;
  ExpectRejected(Resolve({}, d), "repetition_penalty", "got nan");
}

TEST(ResolveSamplingTest, RejectsEmptyVocabulary) {
  EXPECT_EQ(ResolveSampling({}, {}, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- stopping ----

TEST(ResolveStoppingTest, DefaultsAndEos) {
  EngineLimits limits;
  StoppingOptions o;
  const std::vector<int32_t> eos = {2, 7, 2, 5000};
  const auto r = ResolveStopping(o, limits, kVocab, eos);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->max_new_tokens, limits.default_max_new_tokens);
  EXPECT_EQ(r->min_new_tokens, 0);
  EXPECT_THAT(r->eos_token_ids, ElementsAre(2, 7));  // deduplicated, out-of-vocab dropped
  o.ignore_eos = true;
  o.stop_token_ids = {9, 3, 9};
  const auto ignored = ResolveStopping(o, limits, kVocab, eos);
  ASSERT_TRUE(ignored.ok());
  EXPECT_TRUE(ignored->eos_token_ids.empty());
  EXPECT_THAT(ignored->stop_token_ids, ElementsAre(3, 9));
  EXPECT_THAT(ignored->MinNewTokensSuppressedIds(), ElementsAre(3, 9));
  o.ignore_eos = false;
  EXPECT_THAT(ResolveStopping(o, limits, kVocab, eos)->MinNewTokensSuppressedIds(),
              ElementsAre(2, 3, 7, 9));
}

TEST(ResolveStoppingTest, MaxAndMinNewTokens) {
  EngineLimits limits;
  limits.max_new_tokens = 100;
  limits.default_max_new_tokens = 256;  // a default above the limit is capped
  StoppingOptions o;
  EXPECT_EQ(ResolveStopping(o, limits, kVocab, {})->max_new_tokens, 100);
  o.max_new_tokens = 100;
  EXPECT_TRUE(ResolveStopping(o, limits, kVocab, {}).ok());
  o.max_new_tokens = 101;
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stopping.max_new_tokens",
                 "got 101");
  o.max_new_tokens = -1;
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stopping.max_new_tokens",
                 "[0, 100]");
  o.max_new_tokens = std::numeric_limits<int32_t>::max();
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "max_new_tokens", "got");
  o.max_new_tokens = 10;
  o.min_new_tokens = 10;
  EXPECT_TRUE(ResolveStopping(o, limits, kVocab, {}).ok());
  o.min_new_tokens = 11;
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stopping.min_new_tokens",
                 "max_new_tokens=10");
  o.min_new_tokens = -1;
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "min_new_tokens", "got -1");
}

TEST(ResolveStoppingTest, StopStrings) {
  EngineLimits limits;
  limits.max_stop_sequences = 2;
  limits.max_stop_sequence_bytes = 4;
  StoppingOptions o;
  o.stop = {"abcd", "\xE2\x82\xAC"};  // 4 bytes, and a 3-byte character
  EXPECT_TRUE(ResolveStopping(o, limits, kVocab, {}).ok());
  o.stop = {"a", "b", "c"};
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stopping.stop",
                 "at most 2 stop sequences, got 3");
  o.stop = {"ok", ""};
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stopping.stop[1]",
                 "must not be empty");
  o.stop = {std::string(1 << 20, 'x')};
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stopping.stop[0]",
                 "at most 4 bytes, got 1048576");
  o.stop = {"\xE2\x82"};  // a truncated character
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stopping.stop[0]",
                 "valid UTF-8");
}

TEST(ResolveStoppingTest, StopTokenIdsInVocabulary) {
  EngineLimits limits;
  StoppingOptions o;
  o.stop_token_ids = {0, kVocab - 1};
  EXPECT_TRUE(ResolveStopping(o, limits, kVocab, {}).ok());
  o.stop_token_ids = {5, kVocab};
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stopping.stop_token_ids[1]",
                 "must be in [0, 1000), got 1000");
  o.stop_token_ids = {-1};
  ExpectRejected(ResolveStopping(o, limits, kVocab, {}).status(), "stop_token_ids[0]", "got -1");
}

TEST(ResolveLogprobsTest, Range) {
  EngineLimits limits;
  limits.max_logprobs = 20;
  EXPECT_TRUE(ResolveLogprobs(0, false, limits).ok());
  EXPECT_FALSE(ResolveLogprobs(0, false, limits)->any());
  EXPECT_TRUE(ResolveLogprobs(0, true, limits)->any());
  EXPECT_EQ(ResolveLogprobs(20, false, limits)->top_logprobs, 20);
  ExpectRejected(ResolveLogprobs(21, false, limits).status(), "logprobs",
                 "must be in [0, 20], got 21");
  ExpectRejected(ResolveLogprobs(-1, false, limits).status(), "logprobs", "got -1");
}

}  // namespace
}  // namespace kiln::engine::sample
