// Sampler: greedy ties, seeded determinism, sampling frequencies against the processed
// distribution (whose equality with transformers is logits_processor_test's job), logprobs.
#include "engine/sample/sampler.h"

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine::sample {
namespace {

using ::testing::ElementsAre;

ResolvedStopping Stopping(int32_t min_new_tokens = 0, std::vector<int32_t> eos = {}) {
  ResolvedStopping s;
  s.max_new_tokens = 1000;
  s.min_new_tokens = min_new_tokens;
  s.eos_token_ids = std::move(eos);
  return s;
}

ResolvedSampling Sampling(std::optional<uint64_t> seed) {
  ResolvedSampling s;
  s.greedy = false;
  s.seed = seed;
  return s;
}

// Deterministic pseudo-logits that change every step.
std::vector<float> StepLogits(int step, int vocab) {
  std::vector<float> logits(vocab);
  for (int i = 0; i < vocab; ++i) {
    logits[i] = static_cast<float>(std::sin(0.37 * i + 1.3 * step) * 2.0);
  }
  return logits;
}

std::vector<int32_t> Generate(const ResolvedSampling& sampling, int steps, int vocab) {
  Sampler sampler(sampling, Stopping(), {}, vocab, {});
  std::vector<int32_t> out;
  for (int step = 0; step < steps; ++step) {
    const auto r = sampler.Sample(StepLogits(step, vocab));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    out.push_back(r->token_id);
  }
  return out;
}

TEST(SamplerTest, GreedyIsArgmaxWithTiesToTheLowestId) {
  ResolvedSampling greedy;  // greedy by default
  Sampler sampler(greedy, Stopping(), {}, 6, {});
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 3.0f, 2.9f};
  EXPECT_EQ(sampler.Sample(logits)->token_id, 1);
  const std::vector<float> masked = {-INFINITY, -INFINITY, 7.0f, -INFINITY, 7.0f, 1.0f};
  EXPECT_EQ(sampler.Sample(masked)->token_id, 2);
}

TEST(SamplerTest, GreedyAppliesRepetitionPenaltyButIgnoresWarpers) {
  ResolvedSampling s;
  s.greedy = true;
  s.repetition_penalty = 2.0f;
  s.temperature = 0.01f;  // ignored when greedy
  s.top_k = 1;
  Sampler sampler(s, Stopping(), {}, 3, std::vector<int32_t>{0});
  // Token 0 (in the prompt): 4 / 2 = 2 < 3.
  EXPECT_EQ(sampler.Sample(std::vector<float>{4.0f, 3.0f, 1.0f})->token_id, 1);
  // Now 1 is generated too: 3 / 2 = 1.5 < 2 = 4 / 2.
  EXPECT_EQ(sampler.Sample(std::vector<float>{4.0f, 3.0f, 1.0f})->token_id, 0);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  const std::vector<int32_t> a = Generate(Sampling(1234), 100, 50);
  const std::vector<int32_t> b = Generate(Sampling(1234), 100, 50);
  const std::vector<int32_t> c = Generate(Sampling(1235), 100, 50);
  ASSERT_EQ(a.size(), 100u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += a[i] != c[i];
  EXPECT_GT(differing, 30);  // not merely one early divergence
}

TEST(SamplerTest, UnseededRequestsGetDistinctRandomSeeds) {
  Sampler a(Sampling(std::nullopt), Stopping(), {}, 10, {});
  Sampler b(Sampling(std::nullopt), Stopping(), {}, 10, {});
  EXPECT_NE(a.seed(), b.seed());
  // The reported seed reproduces the stream.
  Sampler replay(Sampling(a.seed()), Stopping(), {}, 10, {});
  for (int step = 0; step < 20; ++step) {
    EXPECT_EQ(a.Sample(StepLogits(step, 10))->token_id,
              replay.Sample(StepLogits(step, 10))->token_id);
  }
}

// Sampling frequencies match softmax of the processed logits (chi-square, fixed seed).
void ExpectFrequenciesMatch(ResolvedSampling s, const std::vector<float>& logits, int draws) {
  const int vocab = static_cast<int>(logits.size());
  std::vector<float> processed = logits;
  LogitsPipeline pipeline(s, 0, {});
  TokenHistory empty(vocab, {});
  pipeline.Process(processed, empty);
  double max_logit = -INFINITY, total = 0;
  for (const float x : processed) max_logit = std::max<double>(max_logit, x);
  for (const float x : processed) total += std::exp(x - max_logit);

  s.seed = 42;
  Sampler sampler(s, Stopping(), {}, vocab, {});
  std::vector<int> counts(vocab, 0);
  for (int i = 0; i < draws; ++i) {
    const auto r = sampler.Sample(logits);
    ASSERT_TRUE(r.ok()) << r.status();
    ++counts[r->token_id];
  }
  double chi2 = 0;
  int dof = -1;
  for (int i = 0; i < vocab; ++i) {
    const double p = std::exp(processed[i] - max_logit) / total;
    if (p == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " was filtered out but sampled";
      continue;
    }
    const double expected = p * draws;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++dof;
  }
  ASSERT_GT(dof, 0);
  // Wilson-Hilferty approximation of the chi-square 0.999 quantile.
  const double k = dof;
  const double q = k * std::pow(1 - 2 / (9 * k) + 3.090 * std::sqrt(2 / (9 * k)), 3);
  EXPECT_LT(chi2, q) << "dof=" << dof;
}

TEST(SamplerTest, FrequenciesMatchTheProcessedDistribution) {
  const std::vector<float> logits = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -3.0f, 0.7f, 1.2f, 0.1f};
  ResolvedSampling plain = Sampling(std::nullopt);
  ExpectFrequenciesMatch(plain, logits, 40000);
  ResolvedSampling warped = plain;
  warped.temperature = 0.7f;
  warped.top_k = 6;
  warped.top_p = 0.9f;
  ExpectFrequenciesMatch(warped, logits, 40000);
  ResolvedSampling min_p = plain;
  min_p.temperature = 1.5f;
  min_p.min_p = 0.2f;
  ExpectFrequenciesMatch(min_p, logits, 40000);
}

TEST(SamplerTest, MinNewTokensKeepsEosOutUntilReached) {
  ResolvedSampling greedy;
  Sampler sampler(greedy, Stopping(/*min_new_tokens=*/3, /*eos=*/{0}), {}, 4, {});
  const std::vector<float> eos_wins = {9.0f, 1.0f, 2.0f, 0.5f};
  EXPECT_EQ(sampler.Sample(eos_wins)->token_id, 2);
  EXPECT_EQ(sampler.Sample(eos_wins)->token_id, 2);
  EXPECT_EQ(sampler.Sample(eos_wins)->token_id, 2);
  EXPECT_EQ(sampler.Sample(eos_wins)->token_id, 0);  // 3 generated: eos allowed
}

TEST(SamplerTest, LogprobsAreRawLogSoftmaxWithTopN) {
  ResolvedSampling s;
  s.repetition_penalty = 3.0f;  // changes the choice, not the reported logprobs
  Sampler sampler(s, Stopping(), {/*top_logprobs=*/3, /*return_token_logprob=*/true}, 5,
                  std::vector<int32_t>{2});
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 2.0f, -INFINITY};
  const auto r = sampler.Sample(logits);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token_id, 1);  // 3 / 3 = 1 < 2: the penalized token loses
  ASSERT_TRUE(r->logprobs.has_value());
  double lse = 0;
  for (const float x : logits) lse += std::exp(static_cast<double>(x));
  lse = std::log(lse);
  EXPECT_EQ(r->logprobs->sampled.token_id, 1);
  EXPECT_NEAR(r->logprobs->sampled.logprob, 2.0 - lse, 1e-6);
  ASSERT_EQ(r->logprobs->top.size(), 3u);
  EXPECT_EQ(r->logprobs->top[0].token_id, 2);
  EXPECT_NEAR(r->logprobs->top[0].logprob, 3.0 - lse, 1e-6);
  EXPECT_EQ(r->logprobs->top[1].token_id, 1);  // tie 1 vs 3: lower id first
  EXPECT_EQ(r->logprobs->top[2].token_id, 3);
}

TEST(SamplerTest, NoLogprobsUnlessAsked) {
  Sampler sampler(ResolvedSampling{}, Stopping(), {}, 3, {});
  EXPECT_FALSE(sampler.Sample(std::vector<float>{1, 2, 3})->logprobs.has_value());
}

TEST(SamplerTest, BadLogitsAreErrorsNotCrashes) {
  Sampler sampler(Sampling(7), Stopping(), {}, 3, {});
  EXPECT_EQ(sampler.Sample(std::vector<float>{1, 2}).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(sampler.Sample(std::vector<float>{1, NAN, 2}).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(sampler.Sample(std::vector<float>{1, INFINITY, 2}).status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(sampler.Sample(std::vector<float>{-INFINITY, -INFINITY, -INFINITY}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Nothing was recorded for the failed steps.
  EXPECT_EQ(sampler.history().num_generated(), 0);
  EXPECT_TRUE(sampler.Sample(std::vector<float>{-INFINITY, 0, -INFINITY}).ok());
  EXPECT_EQ(sampler.history().num_generated(), 1);
}

TEST(SamplerTest, EveryTokenMaskedByMinNewTokensIsAnError) {
  Sampler sampler(ResolvedSampling{}, Stopping(1, {0}), {}, 1, {});
  EXPECT_EQ(sampler.Sample(std::vector<float>{1.0f}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace kiln::engine::sample
