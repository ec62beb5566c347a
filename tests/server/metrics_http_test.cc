#include "server/metrics_http.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/http_test_util.h"

namespace kiln::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using testing::ConnectLoopback;
using testing::HttpExchange;


class MetricsHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = MetricsHttpServer::Start(
        "127.0.0.1:0",
        [this] {
          renders_.fetch_add(1);
          return std::string("kiln_test_metric 42\n");
        },
        absl::Milliseconds(300));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  std::atomic<int> renders_{0};
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpTest, ServesMetricsAsPrometheusText) {
  const std::string r = HttpExchange(server_->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(r, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
  EXPECT_THAT(r, HasSubstr("Content-Length: 20\r\n"));
  EXPECT_THAT(r, HasSubstr("\r\n\r\nkiln_test_metric 42\n"));
  EXPECT_EQ(renders_.load(), 1);
  // A query string does not change the path.
  EXPECT_THAT(HttpExchange(server_->port(), "GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
              StartsWith("HTTP/1.1 200 OK"));
}

TEST_F(MetricsHttpTest, HeadHasNoBodyAndOtherRequestsGetTheRightCodes) {
  const std::string head = HttpExchange(server_->port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200 OK"));
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "");
  EXPECT_THAT(HttpExchange(server_->port(), "GET /nope HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(HttpExchange(server_->port(), "POST /metrics HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(HttpExchange(server_->port(), "garbage\r\n\r\n"), StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(HttpExchange(server_->port(), "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a')),
              StartsWith("HTTP/1.1 431"));
}

// A client that connects and says nothing is dropped after the read timeout; the next
// scrape is answered (the blocking read is bounded, not forever).
TEST_F(MetricsHttpTest, SilentClientDoesNotBlockScrapesForever) {
  const int silent = ConnectLoopback(server_->port());
  ASSERT_GE(silent, 0);
  const std::string r = HttpExchange(server_->port(), "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_THAT(r, StartsWith("HTTP/1.1 200 OK"));
  close(silent);
}

TEST(MetricsHttpServerTest, BindConflictAndBadAddressesAreErrors) {
  auto first = MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_TRUE(first.ok());
  auto conflict = MetricsHttpServer::Start("127.0.0.1:" + std::to_string((*first)->port()),
                                           [] { return std::string(); });
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(conflict.status().message()), HasSubstr("metrics_listen"));
  EXPECT_EQ(MetricsHttpServer::Start("no-port", [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsHttpServer::Start(":9090", [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
  // IPv6 loopback in brackets, where the host has it.
  auto v6 = MetricsHttpServer::Start("[::1]:0", [] { return std::string(); });
  if (v6.ok()) {
    EXPECT_GT((*v6)->port(), 0);
  }
}

}  // namespace
}  // namespace kiln::server
