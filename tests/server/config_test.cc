#include "server/config.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

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
  ASSERT_EQ(config.preload.size(), 1u);
  EXPECT_EQ(config.preload[0].model, "m1");
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

// The scheduler's knobs reach the engine from the config file (and, by the same table,
// from flags), and nonsense values are refused by name.
TEST(ConfigTest, SchedulerSettingsReachTheEngineLimits) {
  ServerConfig config;
  ASSERT_TRUE(ApplyConfigJson(R"({"max_running_requests": 4, "max_batched_tokens": 512,
      "enable_chunked_prefill": false, "kv_block_size_tokens": 32,
      "stream_stall_timeout_ms": 1500})",
                              &config)
                  .ok());
  ASSERT_TRUE(ValidateConfig(config).ok());
  EXPECT_EQ(config.limits.max_running_requests, 4);
  EXPECT_EQ(config.limits.max_batched_tokens, 512);
  EXPECT_FALSE(config.limits.enable_chunked_prefill);
  EXPECT_EQ(config.limits.kv_block_size_tokens, 32);
  EXPECT_EQ(config.limits.stream_stall_timeout_ms, 1500);
  for (const char* key : {"max_running_requests", "max_batched_tokens", "kv_block_size_tokens",
                          "stream_stall_timeout_ms"}) {
    ServerConfig bad;
    ASSERT_TRUE(ApplyConfigJson(std::string("{\"") + key + "\": 0}", &bad).ok()) << key;
    absl::Status s = ValidateConfig(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(key) + ": must be > 0"));
  }
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


TEST(ConfigTest, PreloadTakesNamesAndLoadModelObjects) {
  ServerConfig config;
  absl::Status s = ApplyConfigJson(R"({"preload": ["tiny", {"model": "org/big",
      "served_name": "big", "dtype": "bfloat16", "max_seq_len": 4096, "kv_cache_bytes": 1024,
      "pin": true, "max_memory": {"cuda:0": "70GiB"}}]})",
                                   &config);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(config.preload.size(), 2u);
  EXPECT_EQ(config.preload[0].model, "tiny");
  EXPECT_EQ(config.preload[0].dtype, engine::WeightDType::kAuto);
  const engine::LoadModelOptions& big = config.preload[1];
  EXPECT_EQ(big.model, "org/big");
  EXPECT_EQ(big.served_name, "big");
  EXPECT_EQ(big.dtype, engine::WeightDType::kBFloat16);
  EXPECT_EQ(big.max_seq_len, 4096);
  EXPECT_EQ(big.kv_cache_bytes, 1024);
  EXPECT_TRUE(big.pin);
  EXPECT_EQ(big.max_memory.at("cuda:0"), "70GiB");

  ASSERT_TRUE(ApplyConfigFlag("preload", "a, b", &config).ok());
  ASSERT_EQ(config.preload.size(), 2u);
  EXPECT_EQ(config.preload[1].model, "b");
}

TEST(ConfigTest, PreloadErrorsNameTheEntryAndKey) {
  const std::pair<std::string, std::string> cases[] = {
      {R"({"preload": [{"model": "m", "dtyp": "f"}]})", "preload[0]: unknown key 'dtyp'"},
      {R"({"preload": ["a", {"model": "m", "dtype": "int4"}]})",
       "preload[1].dtype: 'int4' is not one of"},
      {R"({"preload": [{"served_name": "x"}]})", "preload[0].model: must not be empty"},
      {R"({"preload": [{"model": "m", "max_seq_len": -1}]})", "preload[0].max_seq_len: must be >= 0"},
      {R"({"preload": [{"model": "m", "pin": "yes"}]})", "preload[0].pin: expected a boolean"},
      {R"({"preload": [3]})", "preload[0]: expected a model name or an object"},
      {R"({"preload": "m"})", "preload: expected a list of model names"},
  };
  for (const auto& [json, expected] : cases) {
    ServerConfig config;
    absl::Status s = ApplyConfigJson(json, &config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_THAT(std::string(s.message()), HasSubstr(expected)) << json;
  }
}

TEST(ConfigTest, ConfigToJsonRoundTripsEveryKey) {
  ServerConfig config;
  ASSERT_TRUE(ApplyConfigJson(R"({"listen": "0.0.0.0:1", "log_format": "json",
      "log_prompts": true, "tls_reload_interval_s": 5, "max_new_tokens": 77,
      "permit_keepalive_without_calls": true,
      "preload": [{"model": "m", "served_name": "s", "dtype": "float16"}]})",
                              &config)
                  .ok());
  const std::string text = ConfigToJson(config);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << text;
  for (const std::string& key : ConfigKeys()) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j.size(), ConfigKeys().size());
  // The printed config is a valid config file that reproduces the same config.
  ServerConfig again;
  absl::Status s = ApplyConfigJson(text, &again);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(ConfigToJson(again), text);
  EXPECT_EQ(again.listen, "0.0.0.0:1");
  EXPECT_TRUE(again.log_prompts);
  EXPECT_EQ(again.tls_reload_interval_s, 5);
  EXPECT_EQ(again.limits.max_new_tokens, 77);
  ASSERT_EQ(again.preload.size(), 1u);
  EXPECT_EQ(again.preload[0].served_name, "s");
  EXPECT_EQ(again.preload[0].dtype, engine::WeightDType::kFloat16);
}

}  // namespace
}  // namespace kiln::server

namespace kiln::server {
namespace {

TEST(ConfigTest, TlsReloadAndAuthScopeSettings) {
  ServerConfig config;
  EXPECT_FALSE(config.auth_health);  // kubelet probes cannot send a token
  EXPECT_TRUE(config.auth_reflection);
  EXPECT_EQ(config.tls_state_dir, "");
  ASSERT_TRUE(ApplyConfigJson(R"({"auth_health": true, "auth_reflection": false,
      "tls_cert_file": "/c", "tls_key_file": "/k", "tls_state_dir": "/var/run/kiln/tls",
      "tls_reload_interval_s": 0})",
                              &config)
                  .ok());
  EXPECT_TRUE(config.auth_health);
  EXPECT_FALSE(config.auth_reflection);
  EXPECT_EQ(config.tls_state_dir, "/var/run/kiln/tls");
  // 0 = reload only on SIGHUP.
  EXPECT_TRUE(ValidateConfig(config).ok()) << ValidateConfig(config);
  const nlohmann::json printed = nlohmann::json::parse(ConfigToJson(config));
  EXPECT_EQ(printed["auth_health"], true);
  EXPECT_EQ(printed["auth_reflection"], false);
  EXPECT_EQ(printed["tls_state_dir"], "/var/run/kiln/tls");

  ASSERT_TRUE(ApplyConfigFlag("auth_reflection", "true", &config).ok());
  EXPECT_TRUE(config.auth_reflection);
  EXPECT_EQ(ApplyConfigFlag("auth_health", "maybe", &config).code(),
            absl::StatusCode::kInvalidArgument);

  config.tls_reload_interval_s = -1;
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("tls_reload_interval_s"));
  config.tls_reload_interval_s = 60;
  config.tls_cert_file.clear();
  config.tls_key_file.clear();
  EXPECT_THAT(std::string(ValidateConfig(config).message()), HasSubstr("tls_state_dir"));
}

}  // namespace
}  // namespace kiln::server

namespace kiln::server {
namespace {

// The CUDA settings (device inventory, issue #7) reach the engine limits; a percent outside
// [1, 100] is refused by name.
TEST(ConfigTest, CudaSettingsReachTheEngineLimits) {
  ServerConfig config;
  ASSERT_TRUE(ApplyConfigJson(R"({"use_cuda": false, "cuda_memory_percent": 75})", &config).ok());
  ASSERT_TRUE(ValidateConfig(config).ok());
  EXPECT_FALSE(config.limits.use_cuda);
  EXPECT_EQ(config.limits.cuda_memory_percent, 75);
  for (int bad : {0, 101}) {
    ServerConfig c;
    ASSERT_TRUE(ApplyConfigJson(R"({"cuda_memory_percent": )" + std::to_string(bad) + "}", &c).ok());
    const absl::Status s = ValidateConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("cuda_memory_percent: must be in [1, 100]"));
  }
}

}  // namespace
}  // namespace kiln::server
