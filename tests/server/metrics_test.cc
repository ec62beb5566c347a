// The HTTP exposer costs ~2 s to tear down (toolchain.md pitfall 11): one test uses it.
#include "server/metrics.h"


#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/http_test_util.h"

namespace kiln::server {
namespace {

using ::testing::HasSubstr;

using testing::HttpGet;

TEST(MetricsTest, CountersAndGauges) {
  Metrics metrics("1.2.3", "abc", false);
  metrics.RpcStarted("Generate");
  metrics.RpcStarted("Generate");
  metrics.RpcFinished("Generate", grpc::StatusCode::OK, absl::Milliseconds(20));
  metrics.SetDraining(true);
  const std::string text = metrics.Text();
  EXPECT_THAT(text, HasSubstr(R"(kiln_build_info{commit="abc",cuda="false",version="1.2.3"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_requests_total{code="OK",method="Generate"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_in_flight{method="Generate"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_duration_seconds_count{method="Generate"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_duration_seconds_bucket{method="Generate",le="0.025"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_duration_seconds_bucket{method="Generate",le="0.01"} 0)"));
  EXPECT_THAT(text, HasSubstr("kiln_draining 1"));
  EXPECT_THAT(text, HasSubstr("kiln_uptime_seconds "));
}

TEST(MetricsTest, ExposerServesAndBindConflictIsAnError) {
  Metrics metrics("1.2.3", "abc", true);
  absl::StatusOr<int> port = metrics.StartExposer("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status();
  ASSERT_GT(*port, 0);
  metrics.RpcStarted("ListModels");
  metrics.RpcFinished("ListModels", grpc::StatusCode::NOT_FOUND, absl::Milliseconds(1));
  const std::string body = HttpGet(*port, "/metrics");
  EXPECT_THAT(body, HasSubstr("200 OK"));
  EXPECT_THAT(body, HasSubstr(R"(kiln_build_info{commit="abc",cuda="true",version="1.2.3"} 1)"));
  EXPECT_THAT(body,
              HasSubstr(R"(kiln_rpc_requests_total{code="NOT_FOUND",method="ListModels"} 1)"));

  Metrics other("1.2.3", "abc", true);
  absl::StatusOr<int> conflict = other.StartExposer("127.0.0.1:" + std::to_string(*port));
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(conflict.status().message()), HasSubstr("metrics_listen: cannot listen"));
  EXPECT_EQ(metrics.StartExposer("127.0.0.1:0").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace kiln::server
