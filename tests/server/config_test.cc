#include "server/config.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::server {
namespace {

using ::testing::HasSubstr;

TEST(ConfigTest, DefaultsAreValid) {
  ServerConfig config;
  EXPECT_TRUE(ValidateConfig(config).ok());
  EXPECT_EQ(config.listen, "127.0.0.1:50051");
  EXPECT_EQ(config.metrics_listen, "127.0.0.1:9090");
  EXPECT_EQ(config.drain_timeout_s, 30);
  EXPECT_EQ(config.grpc.max_receive_message_bytes, 4 << 20);
  EXPECT_FALSE(config.grpc.permit_keepalive_without_calls);
}

TEST(ConfigTest, JsonAppliesEveryKind) {
  ServerConfig config;
  absl::Status s = ApplyConfigJson(R"({
      "listen": "0.0.0.0:0", "metrics_listen": "", "model_roots": ["/a", "/b"],
      "preload": ["m1"], "drain_timeout_s": 5, "log_format": "json",
      "max_new_tokens": 100, "default_max_new_tokens": 50, "max_prompt_bytes": 4096, "permit_keepalive_without_calls": true,
      "max_connection_age_s": 0})",
                                   &config);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(config.listen, "0.0.0.0:0");
  EXPECT_EQ(config.metrics_listen, "");
  EXPECT_THAT(config.model_roots, ::testing::ElementsAre("/a", "/b"));
  EXPECT_THAT(config.preload, ::testing::ElementsAre("m1"));
  EXPECT_EQ(config.drain_timeout_s, 5);
  EXPECT_EQ(config.log_format, LogFormat::kJson);
  EXPECT_EQ(config.limits.max_new_tokens, 100);
  EXPECT_EQ(config.limits.max_prompt_bytes, 4096);
  EXPECT_TRUE(config.grpc.permit_keepalive_without_calls);
  EXPECT_EQ(config.grpc.max_connection_age_s, 0);
  EXPECT_TRUE(ValidateConfig(config).ok());
}

TEST(ConfigTest, JsonErrorsNameTheKey) {
  struct Case {
    std::string json;
    std::string expected;
  };
  const Case cases[] = {
      {R"({"listne": "x:1"})", "unknown setting 'listne'"},
      {R"({"listen": 5})", "listen: expected a string, got number"},
      {R"({"model_roots": "/a"})", "model_roots: expected a list of strings"},
      {R"({"model_roots": ["/a", 3]})", "model_roots: expected a list of strings"},
      {R"({"max_new_tokens": 1.5})", "max_new_tokens: expected an integer"},
      {R"({"max_new_tokens": 3000000000})", "max_new_tokens: 3000000000 does not fit in 32"},
      {R"({"max_json_bytes": 18446744073709551615})", "max_json_bytes: value is too large"},
      {R"({"log_format": "xml"})", "log_format: 'xml' is not one of text, json"},
      {R"({"permit_keepalive_without_calls": 1})", "expected a boolean"},
      {R"([1, 2])", "must be a JSON object"},
      {R"({"listen": )", "not valid JSON"},
  };
  for (const Case& c : cases) {
    ServerConfig config;
    absl::Status s = ApplyConfigJson(c.json, &config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.expected)) << c.json;
  }
}

TEST(ConfigTest, FlagTextParsesEveryKind) {
  ServerConfig config;
  ASSERT_TRUE(ApplyConfigFlag("model_roots", "/x, /y", &config).ok());
  EXPECT_THAT(config.model_roots, ::testing::ElementsAre("/x", "/y"));
  ASSERT_TRUE(ApplyConfigFlag("max_logprobs", "7", &config).ok());
  EXPECT_EQ(config.limits.max_logprobs, 7);
  ASSERT_TRUE(ApplyConfigFlag("permit_keepalive_without_calls", "true", &config).ok());
  EXPECT_TRUE(config.grpc.permit_keepalive_without_calls);
  EXPECT_THAT(std::string(ApplyConfigFlag("max_logprobs", "seven", &config).message()),
              HasSubstr("max_logprobs: 'seven' is not an integer"));
  EXPECT_THAT(std::string(ApplyConfigFlag("nope", "1", &config).message()),
              HasSubstr("unknown setting 'nope'"));
}

TEST(ConfigTest, EveryKeyIsAcceptedFromFlagsAndFiles) {
  // Each documented key round-trips through both entry points (no key without a setter).
  for (const std::string& key : ConfigKeys()) {
    ServerConfig config;
    absl::Status s = ApplyConfigFlag(key, key == "log_format" ? "json" : "1", &config);
    if (s.ok()) continue;
    // String/list keys accept "1"; bool keys accept "1" too; only log_format is special.
    ADD_FAILURE() << key << ": " << s;
  }
}

TEST(ConfigTest, FileErrorsNameTheFile) {
  ServerConfig config;
  absl::Status s = ApplyConfigFile("/nonexistent/kilnd.json", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  const std::string path = ::testing::TempDir() + "/kilnd_bad.json";
  {
    std::ofstream out(path);
    out << R"({"drain_timeout": 3})";
  }
  s = ApplyConfigFile(path, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("unknown setting 'drain_timeout'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
}

TEST(ConfigTest, ValidationNamesTheSetting) {
  struct Case {
    std::string json;
    std::string expected;
  };
  const Case cases[] = {
      {R"({"listen": "nohostport"})", "listen: 'nohostport' is not host:port"},
      {R"({"listen": "127.0.0.1:70000"})", "listen: '127.0.0.1:70000' has no port"},
      {R"({"metrics_listen": "x:y"})", "metrics_listen:"},
      {R"({"drain_timeout_s": -1})", "drain_timeout_s: must be >= 0"},
      {R"({"max_new_tokens": 0})", "max_new_tokens: must be > 0"},
      {R"({"max_concurrent_streams": -4})", "max_concurrent_streams: must be > 0"},
      {R"({"tls_cert_file": "/c.pem"})", "tls_cert_file, tls_key_file: set both or neither"},
      {R"({"tls_client_ca_file": "/ca.pem"})", "tls_client_ca_file: requires"},
      {R"({"default_max_new_tokens": 10, "max_new_tokens": 5})",
       "default_max_new_tokens: 10 must be <= max_new_tokens (5)"},
      {R"({"max_prompt_tokens": 10, "max_total_tokens": 5})", "max_prompt_tokens: 10"},
      {R"({"model_roots": [""]})", "model_roots: entries must not be empty"},
      {R"({"max_receive_message_bytes": 3000000000})", "max_receive_message_bytes: too large"},
      {R"({"keepalive_time_s": 3000000})", "keepalive_time_s: too large"},
  };
  for (const Case& c : cases) {
    ServerConfig config;
    ASSERT_TRUE(ApplyConfigJson(c.json, &config).ok()) << c.json;
    absl::Status s = ValidateConfig(config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.expected)) << c.json;
  }
}

TEST(ConfigTest, EngineOptionsCarryRootsAndLimits) {
  ServerConfig config;
  ASSERT_TRUE(ApplyConfigJson(R"({"model_roots": ["/m"], "adapter_roots": ["/a"],
      "hub_cache": "/h", "max_loaded_models": 3, "num_control_threads": 4,
      "drain_timeout_s": 7})",
                              &config)
                  .ok());
  engine::EngineOptions options = ToEngineOptions(config);
  EXPECT_THAT(options.model_roots, ::testing::ElementsAre("/m"));
  EXPECT_THAT(options.adapter_roots, ::testing::ElementsAre("/a"));
  EXPECT_EQ(options.hub_cache, "/h");
  EXPECT_EQ(options.limits.max_loaded_models, 3);
  EXPECT_EQ(options.num_control_threads, 4);
  EXPECT_EQ(options.drain_timeout_s, 7.0);
}

}  // namespace
}  // namespace kiln::server
