#include "server/logger.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kiln::server {
namespace {

TEST(LoggerTest, JsonLinesParseAndEscape) {
  std::vector<std::string> lines;
  Logger logger(LogFormat::kJson, [&](const std::string& line) { lines.push_back(line); });
  logger.Log(LogLevel::kWarning, "rpc_end",
             {{"method", "Generate"}, {"request_id", "a\"b\nc"}, {"duration_ms", 1.5},
              {"count", 3}});
  ASSERT_EQ(lines.size(), 1u);
  auto j = nlohmann::json::parse(lines[0], nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << lines[0];
  EXPECT_EQ(j["level"], "WARNING");
  EXPECT_EQ(j["event"], "rpc_end");
  EXPECT_EQ(j["request_id"], "a\"b\nc");
  EXPECT_EQ(j["duration_ms"], 1.5);
  EXPECT_EQ(j["count"], 3);
  EXPECT_TRUE(j.contains("ts"));
}

TEST(LoggerTest, TextLineIsOneLine) {
  std::vector<std::string> lines;
  Logger logger(LogFormat::kText, [&](const std::string& line) { lines.push_back(line); });
  logger.Log(LogLevel::kInfo, "listening", {{"grpc_port", 5}, {"peer", "x y\nINFO fake"}});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], ::testing::HasSubstr(" INFO listening grpc_port=5 peer=\"x y\\nINFO fake\""));
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
}

}  // namespace
}  // namespace kiln::server
