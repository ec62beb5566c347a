// Smoke test of the LoRA serving benchmark core with tiny settings (a few seconds on 2 cores):
// keeps lora_serving_bench building and working in CI. It checks counts and outputs only —
// never timings (DESIGN.md §8).
#include <cmath>
#include <string>

#include "bench/lora/lora_bench.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::bench {
namespace {

using ::testing::HasSubstr;

LoraBenchOptions Tiny() {
  LoraBenchOptions o;
  o.model.hidden = 64;
  o.model.layers = 2;
  o.model.heads = 4;
  o.model.kv_heads = 2;
  o.model.intermediate = 128;
  o.model.vocab = 640;  // the llama_tiny tokenizer's
  o.batch = 4;
  o.prompt_tokens = 5;
  o.max_new_tokens = 6;
  o.adapter_counts = {1, 2, 4};
  o.rank = 4;
  o.rounds = 2;
  o.cold_samples = 2;
  o.cold_rank = 8;
  o.cold_new_tokens = 2;
  o.threads = 2;
  o.tokenizer_dir = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/llama_tiny";
  return o;
}

TEST(LoraBenchSmokeTest, TinyRunServesEveryConfigurationWithAdaptersApplied) {
  const LoraBenchOptions o = Tiny();
  absl::StatusOr<LoraBenchReport> r = RunLoraBench(o);
  ASSERT_TRUE(r.ok()) << r.status();

  ASSERT_EQ(r->throughput.size(), 4u);
  const int expected_adapters[] = {0, 1, 2, 4};
  for (size_t i = 0; i < r->throughput.size(); ++i) {
    const ThroughputRow& row = r->throughput[i];
    SCOPED_TRACE("adapters " + std::to_string(row.num_adapters));
    EXPECT_EQ(row.num_adapters, expected_adapters[i]);
    EXPECT_EQ(row.generated_tokens, o.batch * o.max_new_tokens);
    ASSERT_EQ(row.tokens_per_s.size(), static_cast<size_t>(o.rounds));
    for (double t : row.tokens_per_s) EXPECT_GT(t, 0);
    EXPECT_TRUE(std::isfinite(row.ratio_vs_base));
    EXPECT_GT(row.ratio_vs_base, 0);
    EXPECT_EQ(row.median_tokens_per_s, Median(row.tokens_per_s));
    EXPECT_GT(row.median_ratio_vs_base, 0);
    // Continuous batching gives the same greedy tokens whatever else shares the steps.
    EXPECT_TRUE(row.same_tokens_every_round);
    if (row.num_adapters == 0) {
      EXPECT_EQ(row.ratio_vs_base, 1.0);
      EXPECT_EQ(row.median_ratio_vs_base, 1.0);
      EXPECT_EQ(row.requests_differing_from_base, 0);
    } else {
      // The random adapters move the logits enough to change greedy tokens: proof that the
      // adapter path ran rather than the base model alone.
      EXPECT_GT(row.requests_differing_from_base, 0);
    }
  }

  // Each throughput adapter preloaded once; every cold/load adapter attached exactly once.
  EXPECT_EQ(r->preload_ms.size(), 4u);
  EXPECT_EQ(r->resident_adapters, 4 + 2 * o.cold_samples);
  // fp32 A/B bytes: 4 bytes * r * (in + out), summed over the targeted Linears of both layers.
  const int64_t all_linear_in_plus_out = (64 + 64) + (64 + 32) + (64 + 32) + (64 + 64) + 3 * (64 + 128);
  EXPECT_EQ(r->throughput_adapter_bytes, 4 * o.rank * all_linear_in_plus_out * o.model.layers);
  EXPECT_EQ(r->cold.adapter_bytes, 4 * o.cold_rank * ((64 + 64) + (64 + 32)) * o.model.layers);
  for (const auto* samples : {&r->cold.cold_ttft_ms, &r->cold.warm_ttft_ms, &r->cold.base_ttft_ms,
                              &r->cold.load_adapter_ms}) {
    ASSERT_EQ(samples->size(), static_cast<size_t>(o.cold_samples));
    for (double ms : *samples) EXPECT_GT(ms, 0);
  }

  const std::string md = FormatLoraReport(o, *r);
  EXPECT_THAT(md, HasSubstr("| 0 (base only) | 24 |"));
  EXPECT_THAT(md, HasSubstr("| 4 | 24 |"));
  EXPECT_THAT(md, HasSubstr("TTFT, adapter not yet loaded (cold)"));
  EXPECT_THAT(md, HasSubstr("resident adapters at the end: 8"));
}

TEST(LoraBenchSmokeTest, BadOptionsNameTheOptionAndItsLimit) {
  LoraBenchOptions o = Tiny();
  o.adapter_counts = {1, 5};
  absl::StatusOr<LoraBenchReport> r = RunLoraBench(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("adapter count = 5 must be in [1, batch 4]"));

  o = Tiny();
  o.rounds = 0;
  r = RunLoraBench(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("rounds = 0"));

  o = Tiny();
  o.model.heads = 3;
  r = RunLoraBench(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("heads 3 must divide hidden 64"));
}

TEST(LoraBenchSmokeTest, SyntheticAdapterRefusesATargetThatIsNotALlamaLinear) {
  SyntheticAdapter a;
  a.target_modules = {"self_attn.rotary_emb"};
  absl::Status s = WriteSyntheticAdapter(Tiny().model, a, ::testing::TempDir() + "/never_written", nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("self_attn.rotary_emb"));
}

}  // namespace
}  // namespace kiln::bench
