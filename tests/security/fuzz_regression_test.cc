// Unit tests for the fuzz findings (tests/fuzz/corpus/*/regress-*) and the limit names in
// messages that the security scanner relies on.
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/io/json_util.h"
#include "engine/runtime/engine_options.h"
#include "engine/sample/sampling_params.h"

namespace kiln::security {
namespace {

using ::testing::HasSubstr;

// json_util_fuzz regress-nul-key: {"\u0000m": -0}; a key from the file reached the message
// raw, so the status carried a NUL byte (G2).
TEST(FuzzRegressionTest, JsonFieldNamesAreEscapedInMessages) {
  auto j = engine::ParseJson("{\"\\u0000m\\u001b\": -0}", "f.json");
  ASSERT_TRUE(j.ok()) << j.status();
  engine::JsonFields f(*j, "f.json", "p.");
  const std::string key("\0m\x1b", 3);
  auto v = f.RequiredPositiveInt(key);
  ASSERT_FALSE(v.ok());
  const std::string m(v.status().message());
  EXPECT_EQ(m.find('\0'), std::string::npos) << m;
  EXPECT_EQ(m.find('\x1b'), std::string::npos) << m;
  EXPECT_THAT(m, HasSubstr("f.json: p."));
  EXPECT_THAT(m, HasSubstr("positive integer"));
}

// sampling_params_fuzz regress-default-top-p-0: top_p 0 from generation_config.json is
// accepted (transformers keeps one token) but never from a request.
TEST(FuzzRegressionTest, TopPZeroOnlyFromGenerationConfig) {
  engine::sample::GenerationDefaults defaults;
  defaults.top_p = 0.0f;
  engine::SamplingOptions request;
  request.do_sample = true;
  EXPECT_TRUE(engine::sample::ResolveSampling(request, defaults, 100).ok());
  request.top_p = 0.0f;
  auto r = engine::sample::ResolveSampling(request, {}, 100);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("top_p"));
}

// B3: the stop/logprob limits are named by their flag names.
TEST(FuzzRegressionTest, StoppingMessagesNameTheLimitFlags) {
  engine::EngineLimits limits;
  limits.max_stop_sequences = 1;
  limits.max_stop_sequence_bytes = 2;
  limits.max_logprobs = 1;
  engine::StoppingOptions o;
  o.stop = {"a", "b"};
  EXPECT_THAT(std::string(engine::sample::ResolveStopping(o, limits, 10, {}).status().message()),
              HasSubstr("max_stop_sequences"));
  o.stop = {"abc"};
  EXPECT_THAT(std::string(engine::sample::ResolveStopping(o, limits, 10, {}).status().message()),
              HasSubstr("max_stop_sequence_bytes"));
  EXPECT_THAT(std::string(engine::sample::ResolveLogprobs(2, false, limits).status().message()),
              HasSubstr("max_logprobs"));
}

}  // namespace
}  // namespace kiln::security
