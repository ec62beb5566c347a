// Unit tests of the load generator's pure parts: flag parsing, length/adapter sampling,
// loopback checks, percentile math (against numpy.percentile's linear method) and reports.
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bench/loadgen/options.h"
#include "bench/loadgen/report.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::bench {
namespace {

using ::testing::HasSubstr;

TEST(ParseArgsTest, ConcurrencyModeWithDistributions) {
  absl::StatusOr<LoadgenOptions> o =
      ParseArgs({"--model=m", "--concurrency=8", "--prompt_len=uniform:64:256",
                 "--output_len=fixed:32", "--num_requests=50", "--duration_s=10",
                 "--target=127.0.0.1:9000", "--adapters=none=2,sql=1", "--quiet"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model, "m");
  EXPECT_EQ(o->concurrency, 8);
  EXPECT_FALSE(o->rate_mode());
  EXPECT_EQ(o->prompt_len.min, 64);
  EXPECT_EQ(o->prompt_len.max, 256);
  EXPECT_EQ(o->output_len.min, 32);
  EXPECT_EQ(o->output_len.max, 32);
  EXPECT_EQ(o->num_requests, 50);
  EXPECT_DOUBLE_EQ(o->duration_s, 10);
  EXPECT_TRUE(o->quiet);
  ASSERT_EQ(o->adapters.size(), 2u);
  EXPECT_EQ(o->adapters[0].name, "");
  EXPECT_DOUBLE_EQ(o->adapters[0].weight, 2);
  EXPECT_EQ(o->adapters[1].name, "sql");
}

TEST(ParseArgsTest, RateModeAcceptsInfinity) {
  absl::StatusOr<LoadgenOptions> o = ParseArgs({"--model=m", "--request_rate=inf"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->rate_mode());
  EXPECT_TRUE(std::isinf(o->request_rate));
}

TEST(ParseArgsTest, RejectsBadInput) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--concurrency=1"}, "--model is required"},
      {{"--model=m"}, "exactly one of --request_rate and --concurrency"},
      {{"--model=m", "--concurrency=1", "--request_rate=2"}, "exactly one"},
      {{"--model=m", "--concurrency=0"}, "--concurrency=0: must be in [1, 4096]"},
      {{"--model=m", "--concurrency=x"}, "not an integer"},
      {{"--model=m", "--request_rate=-1"}, "--request_rate=-1"},
      {{"--model=m", "--concurrency=1", "--target=10.0.0.1:50051"}, "only loopback"},
      {{"--model=m", "--concurrency=1", "--target=example.com:50051"}, "only loopback"},
      {{"--model=m", "--concurrency=1", "--prompt_len=uniform:9:3"}, "MIN must not exceed MAX"},
      {{"--model=m", "--concurrency=1", "--prompt_len=0"}, "lengths must be in [1, "},
      {{"--model=m", "--concurrency=1", "--output_len=gauss:3"}, "--output_len=gauss:3"},
      {{"--model=m", "--concurrency=1", "--adapters=a=0"}, "weight of 'a' must be"},
      {{"--model=m", "--concurrency=1", "--adapters=,a"}, "empty adapter name"},
      {{"--model=m", "--concurrency=1", "--vocab_size=10", "--min_token_id=10"},
       "must be below --vocab_size=10"},
      {{"--model=m", "--concurrency=1", "--bogus=1"}, "unknown flag --bogus"},
      {{"--model=m", "--concurrency=1", "positional"}, "expected --key=value"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<LoadgenOptions> o = ParseArgs(c.args);
    ASSERT_FALSE(o.ok()) << c.args.back();
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(o.status().message()), HasSubstr(c.message)) << c.args.back();
  }
}

TEST(LoopbackTest, AcceptsOnlyLoopbackWithPort) {
  EXPECT_TRUE(IsLoopbackTarget("127.0.0.1:1"));
  EXPECT_TRUE(IsLoopbackTarget("127.8.9.10:65535"));
  EXPECT_TRUE(IsLoopbackTarget("localhost:50051"));
  EXPECT_TRUE(IsLoopbackTarget("[::1]:50051"));
  EXPECT_FALSE(IsLoopbackTarget("127.0.0.1"));        // no port
  EXPECT_FALSE(IsLoopbackTarget("127.0.0.1:0"));      // port 0 is not a target
  EXPECT_FALSE(IsLoopbackTarget("128.0.0.1:80"));
  EXPECT_FALSE(IsLoopbackTarget("0.0.0.0:80"));
  EXPECT_FALSE(IsLoopbackTarget("[::2]:80"));
  EXPECT_FALSE(IsLoopbackTarget("::1:80"));           // IPv6 needs brackets
  EXPECT_FALSE(IsLoopbackTarget("localhost.evil.com:80"));
  EXPECT_FALSE(IsLoopbackTarget("dns:///localhost:80"));
}

TEST(SamplingTest, LengthsStayInRangeAndCoverIt) {
  std::mt19937_64 rng(7);
  const LengthDist d{3, 5};
  std::map<int32_t, int> seen;
  for (int i = 0; i < 1000; ++i) ++seen[d.Sample(rng)];
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen.begin()->first, 3);
  EXPECT_EQ(seen.rbegin()->first, 5);
  EXPECT_EQ((LengthDist{4, 4}).Sample(rng), 4);
  EXPECT_EQ((LengthDist{4, 4}).ToString(), "fixed:4");
  EXPECT_EQ(d.ToString(), "uniform:3:5");
}

TEST(SamplingTest, AdapterMixFollowsWeights) {
  absl::StatusOr<std::vector<AdapterWeight>> mix = ParseAdapterMix("none=3,a=1");
  ASSERT_TRUE(mix.ok());
  std::mt19937_64 rng(1);
  int base = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) base += SampleAdapter(*mix, rng).empty() ? 1 : 0;
  // Binomial(20000, 0.75): sd ≈ 61, so ±400 is > 6 sd.
  EXPECT_NEAR(base, 15000, 400);
}

// Expected values from numpy.percentile (default 'linear' method):
//   np.percentile([15, 20, 35, 40, 50], [0, 25, 50, 90, 99, 100])
//   → [15., 20., 35., 46., 49.6, 50.]
TEST(PercentileTest, MatchesNumpyLinear) {
  const std::vector<double> v = {40, 15, 50, 35, 20};  // unsorted on purpose
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 15);
  EXPECT_DOUBLE_EQ(Percentile(v, 25), 20);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 35);
  EXPECT_NEAR(Percentile(v, 90), 46, 1e-12);
  EXPECT_NEAR(Percentile(v, 99), 49.6, 1e-12);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 50);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  // np.percentile([1, 2], 50) → 1.5
  EXPECT_DOUBLE_EQ(Percentile({2, 1}, 50), 1.5);
}

std::vector<RequestRecord> SampleRecords() {
  RequestRecord a;
  a.prompt_tokens = 10;
  a.output_tokens = 5;
  a.messages = 3;
  a.ttft_ms = 10;
  a.e2e_ms = 50;
  a.itl_ms = {10, 30};
  RequestRecord b = a;
  b.ttft_ms = 20;
  b.e2e_ms = 100;
  b.itl_ms = {20};
  RequestRecord err;
  err.status = "RESOURCE_EXHAUSTED";
  RequestRecord cut;
  cut.cut_off = true;
  cut.status = "CANCELLED";
  return {a, b, err, err, cut};
}

TEST(ReportTest, AggregatesOnlyOkRequests) {
  const Report r = BuildReport(SampleRecords(), /*wall_s=*/2.0);
  EXPECT_EQ(r.issued, 5);
  EXPECT_EQ(r.completed, 2);
  EXPECT_EQ(r.cut_off, 1);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors.at("RESOURCE_EXHAUSTED"), 2);
  EXPECT_EQ(r.output_tokens, 10);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(r.output_throughput, 5.0);
  EXPECT_DOUBLE_EQ(r.total_token_throughput, 15.0);
  EXPECT_DOUBLE_EQ(r.ttft_ms.mean, 15);
  EXPECT_DOUBLE_EQ(r.ttft_ms.p50, 15);
  // TPOT: (50-10)/4 = 10 and (100-20)/4 = 20.
  EXPECT_DOUBLE_EQ(r.tpot_ms.mean, 15);
  EXPECT_EQ(r.itl_ms.count, 3);
  EXPECT_DOUBLE_EQ(r.itl_ms.p50, 20);
  EXPECT_DOUBLE_EQ(r.itl_ms.max, 30);
  EXPECT_DOUBLE_EQ(r.e2e_ms.p90, 95);  // np.percentile([50, 100], 90) = 95
}

TEST(ReportTest, TableAndJsonCarryTheNumbers) {
  Report r = BuildReport(SampleRecords(), 2.0);
  r.label = "unit";
  r.mode = "concurrency=2";
  r.server_cpu = {true, 1.5, 0.5};
  const std::string table = FormatTable(r);
  EXPECT_THAT(table, HasSubstr("kiln loadgen: unit"));
  EXPECT_THAT(table, HasSubstr("RESOURCE_EXHAUSTED=2"));
  EXPECT_THAT(table, HasSubstr("2 ok, 1 cut off"));
  EXPECT_THAT(table, HasSubstr("output tokens/server CPU-s   10\n"));  // 10 tokens / 1.0 s
  EXPECT_THAT(table, HasSubstr("tokens per message           1.67"));
  const nlohmann::json j = ToJson(r);
  EXPECT_EQ(j["completed"], 2);
  EXPECT_EQ(j["errors"]["RESOURCE_EXHAUSTED"], 2);
  EXPECT_DOUBLE_EQ(j["output_throughput"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(j["tpot_ms"]["p50"].get<double>(), 15.0);
  EXPECT_DOUBLE_EQ(j["server_cpu"]["output_tokens_per_cpu_s"].get<double>(), 10.0);
  // Round trip through text keeps it valid JSON.
  const nlohmann::json back = nlohmann::json::parse(j.dump(), nullptr, false);
  EXPECT_FALSE(back.is_discarded());
}

}  // namespace
}  // namespace kiln::bench
