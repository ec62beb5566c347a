#include "tests/integration/prometheus_text.h"

#include <cmath>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln::testing {
namespace {

using ::testing::HasSubstr;

TEST(ParsePrometheusText, ParsesFamiliesLabelsAndSpecialValues) {
  const std::string text =
      "# HELP rpc_total Finished RPCs.\n"
      "# TYPE rpc_total counter\n"
      "rpc_total{code=\"OK\",method=\"Get\"} 2\n"
      "rpc_total{code=\"NOT_FOUND\",method=\"Get\"} 1 1700000000000\n"
      "\n"
      "# TYPE lat summary\n"
      "lat_count 0\n"
      "lat_sum 0\n"
      "lat{quantile=\"0.5\"} Nan\n"
      "# TYPE g gauge\n"
      "g{path=\"a\\\\b\\\"c\\nd\"} -Inf\n"
      "# a free comment\n";
  absl::StatusOr<PromExposition> e = ParsePrometheusText(text);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->samples.size(), 6u);
  EXPECT_EQ(e->help.at("rpc_total"), "Finished RPCs.");
  EXPECT_EQ(e->type.at("lat"), "summary");
  EXPECT_EQ(SumSamples(*e, "rpc_total"), 3);
  EXPECT_EQ(SumSamples(*e, "rpc_total", {{"code", "OK"}}), 2);
  EXPECT_EQ(CountSamples(*e, "rpc_total", {{"method", "Get"}}), 2);
  EXPECT_TRUE(std::isnan(e->samples[4].value));
  EXPECT_EQ(e->samples[5].labels.at("path"), "a\\b\"c\nd");
  EXPECT_TRUE(std::isinf(e->samples[5].value));
}

TEST(ParsePrometheusText, RejectsMalformedLines) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"x 1\n", "sample without a TYPE line"},
      {"# TYPE x counter\nx -1\n", "negative counter"},
      {"# TYPE x counter\nx{a=\"1\",a=\"2\"} 1\n", "duplicate label a"},
      {"# TYPE x gauge\nx{a=1} 1\n", "expected =\""},
      {"# TYPE x gauge\nx{a=\"1\" 1\n", "expected , or } after label a"},
      {"# TYPE x gauge\nx{a=\"1\"\n", "unterminated label set"},
      {"# TYPE x gauge\nx 1e\n", "bad value"},
      {"# TYPE x gauge\nx\n", "expected a space"},
      {"# TYPE x gauge\nx 1 soon\n", "bad timestamp"},
      {"# TYPE x gauge\n# TYPE x gauge\n", "second TYPE"},
      {"# TYPE x gauge\nx 1\n# TYPE x_sum counter\nx_sum 1\n# TYPE y thing\n", "unknown TYPE"},
      {"# TYPE 1x gauge\n", "bad metric name"},
      {"# TYPE x gauge\nx{a=\"\\t\"} 1\n", "bad escape"},
  };
  for (const auto& [text, expect] : cases) {
    absl::StatusOr<PromExposition> e = ParsePrometheusText(text);
    ASSERT_FALSE(e.ok()) << text;
    EXPECT_THAT(std::string(e.status().message()), HasSubstr(expect)) << text;
  }
}

}  // namespace
}  // namespace kiln::testing
