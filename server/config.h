// ServerConfig: every setting of the kilnd daemon, from flags and an optional JSON file.
//
// Precedence: defaults < `--config` file < flags given on the command line. The file is a
// JSON object whose keys are exactly the flag names (ConfigKeys()); an unknown key is an
// error naming it. Lists are JSON arrays in the file and comma-separated on the command line.
//
// Thread-safety: plain value type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/runtime/api_types.h"
#include "engine/runtime/engine_options.h"

namespace kiln::server {

enum class LogFormat { kText, kJson };

// gRPC transport knobs (reliability.md §2.5), all set explicitly on the server.
struct GrpcLimits {
  int64_t max_receive_message_bytes = 4 << 20;
  int64_t max_send_message_bytes = 16 << 20;
  int64_t max_metadata_bytes = 16 << 10;
  int32_t max_concurrent_streams = 128;       // per HTTP/2 connection
  int64_t keepalive_time_s = 60;              // server pings idle connections this often
  int64_t keepalive_timeout_s = 20;
  int64_t min_ping_interval_s = 10;           // client pings faster than this are strikes
  bool permit_keepalive_without_calls = false;
  int64_t max_connection_age_s = 1800;        // 0 = unlimited
  int64_t max_connection_age_grace_s = 600;
};

struct ServerConfig {
  std::string listen = "127.0.0.1:50051";     // host:port; port 0 = ephemeral
  std::string metrics_listen = "127.0.0.1:9090";  // "" disables the /metrics endpoint
  std::vector<std::string> model_roots;
  std::vector<std::string> adapter_roots;
  std::string hub_cache;
  // Loaded at start, in order (server/preload.h: names or objects with LoadModel options).
  std::vector<engine::LoadModelOptions> preload;
  int64_t drain_timeout_s = 30;
  LogFormat log_format = LogFormat::kText;
  std::string ready_file;                     // JSON {"grpc_port","metrics_port","pid"}
  std::string admin_token_file;
  std::string inference_token_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // kilnd re-reads and validates the TLS files this often (and on SIGHUP) and serves a
  // rotated certificate to new connections; 0 = only on SIGHUP (server/tls_reloader.h).
  int64_t tls_reload_interval_s = 60;
  // Private directory (0700) for kilnd's validated copies of the TLS files; "" = a fresh
  // temporary directory removed at exit. Kubernetes: an emptyDir with medium Memory.
  std::string tls_state_dir;
  // Debug only: rpc_end lines carry the prompt text. Never on in production.
  bool log_prompts = false;
  // gRPC server reflection (grpc.reflection.v1alpha); it describes the API's schema. Switch it
  // off where service discovery is unwanted.
  bool enable_reflection = true;
  // With token files configured: health needs a token (off by default: kubelet's native gRPC
  // probes cannot send one; health says only SERVING/NOT_SERVING per service) and reflection
  // needs an inference or admin token (on by default). No effect while auth is off.
  bool auth_health = false;
  bool auth_reflection = true;
  int32_t num_control_threads = 2;
  int32_t num_compute_threads = 0;
  engine::EngineLimits limits;
  GrpcLimits grpc;
};

// Every key accepted in the config file and as a flag, in documentation order.
const std::vector<std::string>& ConfigKeys();

// Applies the keys of a JSON object onto `config`. INVALID_ARGUMENT naming the key for an
// unknown key, a wrong type or an out-of-range number, or for text that is not an object.
absl::Status ApplyConfigJson(const std::string& json_text, ServerConfig* config);

// Applies one setting given as command-line text (lists comma-separated, bools
// true/false). INVALID_ARGUMENT naming the key on bad text or an unknown key.
absl::Status ApplyConfigFlag(const std::string& key, const std::string& text,
                             ServerConfig* config);

// Reads and applies a config file. NOT_FOUND / INVALID_ARGUMENT naming the file.
absl::Status ApplyConfigFile(const std::string& path, ServerConfig* config);

// Checks every setting and their combinations; INVALID_ARGUMENT naming the setting.
absl::Status ValidateConfig(const ServerConfig& config);

// The effective config as a JSON object with every key (the file format), pretty-printed.
// It holds no secret values: tokens and keys live in the files the *_file keys name.
std::string ConfigToJson(const ServerConfig& config);

// The engine's view of the settings (the registry is filled in by the caller).
engine::EngineOptions ToEngineOptions(const ServerConfig& config);

}  // namespace kiln::server
