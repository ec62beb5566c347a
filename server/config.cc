#include "server/config.h"

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <variant>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "server/preload.h"

namespace kiln::server {
namespace {

// A setting's value after parsing, before it is range-checked by its setter.
using Value = std::variant<std::string, int64_t, bool, std::vector<std::string>,
                           std::vector<engine::LoadModelOptions>>;
enum class Kind { kString, kInt, kBool, kList, kPreload };

struct Field {
  std::string name;
  Kind kind;
  std::function<absl::Status(ServerConfig&, const Value&)> set;
  std::function<nlohmann::json(const ServerConfig&)> get;
};

Field BoolField(std::string name, bool ServerConfig::*member) {
  return {std::move(name), Kind::kBool,
          [member](ServerConfig& c, const Value& v) {
            c.*member = std::get<bool>(v);
            return absl::OkStatus();
          },
          [member](const ServerConfig& c) { return nlohmann::json(c.*member); }};
}

Field StringField(std::string name, std::string ServerConfig::*member) {
  return {std::move(name), Kind::kString, [member](ServerConfig& c, const Value& v) {
            c.*member = std::get<std::string>(v);
            return absl::OkStatus();
          },
          [member](const ServerConfig& c) { return nlohmann::json(c.*member); }};
}

Field ListField(std::string name, std::vector<std::string> ServerConfig::*member) {
  return {std::move(name), Kind::kList, [member](ServerConfig& c, const Value& v) {
            c.*member = std::get<std::vector<std::string>>(v);
            return absl::OkStatus();
          },
          [member](const ServerConfig& c) { return nlohmann::json(c.*member); }};
}

// An integer setting reached through `get`; int32 fields reject values that do not fit.
template <typename T>
Field IntField(std::string name, std::function<T&(ServerConfig&)> get) {
  return {name, Kind::kInt, [name, get](ServerConfig& c, const Value& v) {
            const int64_t x = std::get<int64_t>(v);
            if (x < std::numeric_limits<T>::min() || x > std::numeric_limits<T>::max()) {
              return absl::InvalidArgumentError(
                  absl::StrCat(name, ": ", x, " does not fit in ", sizeof(T) * 8, " bits"));
            }
            get(c) = static_cast<T>(x);
            return absl::OkStatus();
          },
          [get](const ServerConfig& c) {
            return nlohmann::json(static_cast<int64_t>(get(const_cast<ServerConfig&>(c))));
          }};
}

#define KILN_LIMIT(field)                                                                  \
  IntField<decltype(engine::EngineLimits::field)>(                                         \
      #field, [](ServerConfig& c) -> decltype(engine::EngineLimits::field)& {              \
        return c.limits.field;                                                             \
      })
#define KILN_GRPC_INT(field)                                                              \
  IntField<decltype(GrpcLimits::field)>(                                                  \
      #field, [](ServerConfig& c) -> decltype(GrpcLimits::field)& { return c.grpc.field; })

const std::vector<Field>& Fields() {
  static const std::vector<Field>* fields = new std::vector<Field>{
      StringField("listen", &ServerConfig::listen),
      StringField("metrics_listen", &ServerConfig::metrics_listen),
      ListField("model_roots", &ServerConfig::model_roots),
      ListField("adapter_roots", &ServerConfig::adapter_roots),
      StringField("hub_cache", &ServerConfig::hub_cache),
      {"preload", Kind::kPreload,
       [](ServerConfig& c, const Value& v) {
         c.preload = std::get<std::vector<engine::LoadModelOptions>>(v);
         return absl::OkStatus();
       },
       [](const ServerConfig& c) {
         nlohmann::json list = nlohmann::json::array();
         for (const auto& entry : c.preload) list.push_back(PreloadToJson(entry));
         return list;
       }},
      IntField<int64_t>("drain_timeout_s",
                        [](ServerConfig& c) -> int64_t& { return c.drain_timeout_s; }),
      {"log_format", Kind::kString,
       [](ServerConfig& c, const Value& v) {
         const auto& s = std::get<std::string>(v);
         if (s == "text") {
           c.log_format = LogFormat::kText;
         } else if (s == "json") {
           c.log_format = LogFormat::kJson;
         } else {
           return absl::InvalidArgumentError(
               absl::StrCat("log_format: '", s, "' is not one of text, json"));
         }
         return absl::OkStatus();
       },
       [](const ServerConfig& c) {
         return nlohmann::json(c.log_format == LogFormat::kJson ? "json" : "text");
       }},
      BoolField("log_prompts", &ServerConfig::log_prompts),
      BoolField("enable_reflection", &ServerConfig::enable_reflection),
      StringField("ready_file", &ServerConfig::ready_file),
      StringField("admin_token_file", &ServerConfig::admin_token_file),
      StringField("inference_token_file", &ServerConfig::inference_token_file),
      StringField("tls_cert_file", &ServerConfig::tls_cert_file),
      StringField("tls_key_file", &ServerConfig::tls_key_file),
      StringField("tls_client_ca_file", &ServerConfig::tls_client_ca_file),
      IntField<int64_t>("tls_reload_interval_s",
                        [](ServerConfig& c) -> int64_t& { return c.tls_reload_interval_s; }),
      StringField("tls_state_dir", &ServerConfig::tls_state_dir),
      BoolField("auth_health", &ServerConfig::auth_health),
      BoolField("auth_reflection", &ServerConfig::auth_reflection),
      IntField<int32_t>("num_control_threads",
                        [](ServerConfig& c) -> int32_t& { return c.num_control_threads; }),
      IntField<int32_t>("num_compute_threads",
                        [](ServerConfig& c) -> int32_t& { return c.num_compute_threads; }),
      KILN_LIMIT(max_prompt_bytes),
      KILN_LIMIT(max_prompt_tokens),
      KILN_LIMIT(default_max_new_tokens),
      KILN_LIMIT(max_new_tokens),
      KILN_LIMIT(max_total_tokens),
      KILN_LIMIT(max_stop_sequences),
      KILN_LIMIT(max_stop_sequence_bytes),
      KILN_LIMIT(max_logprobs),
      KILN_LIMIT(max_waiting_requests),
      KILN_LIMIT(max_stream_buffer_events),
      KILN_LIMIT(max_json_bytes),
      KILN_LIMIT(max_json_depth),
      KILN_LIMIT(max_tensors_per_file),
      KILN_LIMIT(max_vocab_size),
      KILN_LIMIT(max_adapter_rank),
      KILN_LIMIT(max_loaded_models),
      KILN_LIMIT(default_keep_alive_ms),
      KILN_LIMIT(max_adapter_device_bytes),
      KILN_LIMIT(max_resident_adapters),
      KILN_LIMIT(max_adapter_host_bytes),
      KILN_LIMIT(cpu_memory_bytes),
      KILN_LIMIT(cuda_memory_percent),
      {"use_cuda", Kind::kBool,
       [](ServerConfig& c, const Value& v) {
         c.limits.use_cuda = std::get<bool>(v);
         return absl::OkStatus();
       },
       [](const ServerConfig& c) { return nlohmann::json(c.limits.use_cuda); }},
      {"logical_cpu_devices", Kind::kList,
       [](ServerConfig& c, const Value& v) {
         // Byte budgets of logical CPU devices (the multi-device path without a GPU).
         std::vector<int64_t> bytes;
         for (const std::string& s : std::get<std::vector<std::string>>(v)) {
           int64_t n = 0;
           if (!absl::SimpleAtoi(s, &n) || n <= 0) {
             return absl::InvalidArgumentError(
                 absl::StrCat("logical_cpu_devices: '", s, "' is not a positive byte count"));
           }
           bytes.push_back(n);
         }
         if (bytes.size() > 16) {
           return absl::InvalidArgumentError(absl::StrCat("logical_cpu_devices: ", bytes.size(),
                                                          " devices exceeds 16"));
         }
         c.limits.logical_cpu_device_bytes = std::move(bytes);
         return absl::OkStatus();
       },
       [](const ServerConfig& c) {
         std::vector<std::string> out;
         for (int64_t b : c.limits.logical_cpu_device_bytes) out.push_back(std::to_string(b));
         return nlohmann::json(out);
       }},
      KILN_LIMIT(max_running_requests),
      KILN_LIMIT(max_batched_tokens),
      KILN_LIMIT(kv_block_size_tokens),
      KILN_LIMIT(stream_stall_timeout_ms),
      {"enable_chunked_prefill", Kind::kBool,
       [](ServerConfig& c, const Value& v) {
         c.limits.enable_chunked_prefill = std::get<bool>(v);
         return absl::OkStatus();
       },
       [](const ServerConfig& c) { return nlohmann::json(c.limits.enable_chunked_prefill); }},
      KILN_GRPC_INT(max_receive_message_bytes),
      KILN_GRPC_INT(max_send_message_bytes),
      KILN_GRPC_INT(max_metadata_bytes),
      KILN_GRPC_INT(max_concurrent_streams),
      KILN_GRPC_INT(keepalive_time_s),
      KILN_GRPC_INT(keepalive_timeout_s),
      KILN_GRPC_INT(min_ping_interval_s),
      {"permit_keepalive_without_calls", Kind::kBool,
       [](ServerConfig& c, const Value& v) {
         c.grpc.permit_keepalive_without_calls = std::get<bool>(v);
         return absl::OkStatus();
       },
       [](const ServerConfig& c) { return nlohmann::json(c.grpc.permit_keepalive_without_calls); }},
      KILN_GRPC_INT(max_connection_age_s),
      KILN_GRPC_INT(max_connection_age_grace_s),
  };
  return *fields;
}

#undef KILN_LIMIT
#undef KILN_GRPC_INT

const Field* FindField(const std::string& key) {
  for (const Field& f : Fields()) {
    if (f.name == key) return &f;
  }
  return nullptr;
}

absl::Status UnknownKey(const std::string& key) {
  return absl::InvalidArgumentError(absl::StrCat("unknown setting '", key, "'"));
}

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kString: return "a string";
    case Kind::kInt: return "an integer";
    case Kind::kBool: return "a boolean";
    case Kind::kList: return "a list of strings";
    case Kind::kPreload: return "a list of model names or LoadModel option objects";
  }
  return "?";
}

absl::StatusOr<Value> FromJson(const Field& field, const nlohmann::json& j) {
  const auto wrong = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(field.name, ": expected ", KindName(field.kind), ", got ", j.type_name()));
  };
  switch (field.kind) {
    case Kind::kString:
      if (!j.is_string()) return wrong();
      return Value(j.get_ref<const std::string&>());
    case Kind::kInt:
      // nlohmann counts unsigned numbers as integers too; those past int64 are refused.
      if (j.is_number_unsigned() &&
          j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(absl::StrCat(field.name, ": value is too large"));
      }
      if (j.is_number_integer()) return Value(j.get<int64_t>());
      return wrong();
    case Kind::kBool:
      if (!j.is_boolean()) return wrong();
      return Value(j.get<bool>());
    case Kind::kList: {
      if (!j.is_array()) return wrong();
      std::vector<std::string> items;
      for (const auto& item : j) {
        if (!item.is_string()) return wrong();
        items.push_back(item.get_ref<const std::string&>());
      }
      return Value(std::move(items));
    }
    case Kind::kPreload: {
      if (!j.is_array()) return wrong();
      std::vector<engine::LoadModelOptions> entries;
      for (size_t i = 0; i < j.size(); ++i) {
        absl::StatusOr<engine::LoadModelOptions> entry = PreloadFromJson(j[i], i);
        if (!entry.ok()) return entry.status();
        entries.push_back(*std::move(entry));
      }
      return Value(std::move(entries));
    }
  }
  return wrong();
}

absl::StatusOr<Value> FromText(const Field& field, const std::string& text) {
  switch (field.kind) {
    case Kind::kString:
      return Value(text);
    case Kind::kInt: {
      int64_t x = 0;
      if (!absl::SimpleAtoi(text, &x)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field.name, ": '", text, "' is not an integer"));
      }
      return Value(x);
    }
    case Kind::kBool: {
      bool b = false;
      if (!absl::SimpleAtob(text, &b)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field.name, ": '", text, "' is not a boolean"));
      }
      return Value(b);
    }
    case Kind::kList: {
      std::vector<std::string> items;
      for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
        items.emplace_back(absl::StripAsciiWhitespace(part));
      }
      return Value(std::move(items));
    }
    case Kind::kPreload: {
      // Names only on the command line; objects need the config file (or JSON text).
      nlohmann::json j = nlohmann::json::array();
      if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(text), "[")) {
        j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) {
          return absl::InvalidArgumentError(absl::StrCat(field.name, ": not valid JSON"));
        }
      } else {
        for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
          j.push_back(std::string(absl::StripAsciiWhitespace(part)));
        }
      }
      return FromJson(field, j);
    }
  }
  return absl::InternalError("unreachable");
}

absl::Status Positive(const std::string& name, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, ": must be > 0, got ", value));
}

absl::Status NonNegative(const std::string& name, int64_t value) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, ": must be >= 0, got ", value));
}

// host:port with a port in [0, 65535]; IPv6 hosts in brackets.
absl::Status ValidateAddress(const std::string& name, const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": '", address, "' is not host:port"));
  }
  int port = -1;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": '", address, "' has no port in [0, 65535]"));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& ConfigKeys() {
  static const std::vector<std::string>* keys = [] {
    auto* k = new std::vector<std::string>;
    for (const Field& f : Fields()) k->push_back(f.name);
    return k;
  }();
  return *keys;
}

absl::Status ApplyConfigJson(const std::string& json_text, ServerConfig* config) {
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("config: not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("config: must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    const Field* field = FindField(key);
    if (field == nullptr) return UnknownKey(key);
    absl::StatusOr<Value> v = FromJson(*field, value);
    if (!v.ok()) return v.status();
    absl::Status s = field->set(*config, *v);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ApplyConfigFlag(const std::string& key, const std::string& text,
                             ServerConfig* config) {
  const Field* field = FindField(key);
  if (field == nullptr) return UnknownKey(key);
  absl::StatusOr<Value> v = FromText(*field, text);
  if (!v.ok()) return v.status();
  return field->set(*config, *v);
}

absl::Status ApplyConfigFile(const std::string& path, ServerConfig* config) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("config: cannot open '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  absl::Status s = ApplyConfigJson(text.str(), config);
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("config file '", path, "': ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const ServerConfig& c) {
  absl::Status s = ValidateAddress("listen", c.listen);
  if (!s.ok()) return s;
  if (!c.metrics_listen.empty()) {
    s = ValidateAddress("metrics_listen", c.metrics_listen);
    if (!s.ok()) return s;
  }
  for (const auto& [name, list] : {std::pair{"model_roots", &c.model_roots},
                                   std::pair{"adapter_roots", &c.adapter_roots}}) {
    for (const std::string& item : *list) {
      if (item.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": entries must not be empty"));
      }
    }
  }
  if ((c.tls_cert_file.empty()) != (c.tls_key_file.empty())) {
    return absl::InvalidArgumentError(
        "tls_cert_file, tls_key_file: set both or neither");
  }
  if (!c.tls_client_ca_file.empty() && c.tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_client_ca_file: requires tls_cert_file and tls_key_file");
  }
  if (!c.tls_state_dir.empty() && c.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("tls_state_dir: requires tls_cert_file and tls_key_file");
  }
  if (c.tls_reload_interval_s > 365LL * 24 * 3600) {
    return absl::InvalidArgumentError(absl::StrCat("tls_reload_interval_s: ",
                                                   c.tls_reload_interval_s,
                                                   " exceeds one year (31536000)"));
  }
  const std::pair<const char*, int64_t> non_negative[] = {
      {"drain_timeout_s", c.drain_timeout_s},
      {"tls_reload_interval_s", c.tls_reload_interval_s},
      {"num_compute_threads", c.num_compute_threads},
      {"max_connection_age_s", c.grpc.max_connection_age_s},
      {"max_connection_age_grace_s", c.grpc.max_connection_age_grace_s},
  };
  for (const auto& [name, v] : non_negative) {
    s = NonNegative(name, v);
    if (!s.ok()) return s;
  }
  const engine::EngineLimits& l = c.limits;
  const std::pair<const char*, int64_t> positive[] = {
      {"num_control_threads", c.num_control_threads},
      {"max_prompt_bytes", l.max_prompt_bytes},
      {"max_prompt_tokens", l.max_prompt_tokens},
      {"default_max_new_tokens", l.default_max_new_tokens},
      {"max_new_tokens", l.max_new_tokens},
      {"max_total_tokens", l.max_total_tokens},
      {"max_stop_sequences", l.max_stop_sequences},
      {"max_stop_sequence_bytes", l.max_stop_sequence_bytes},
      {"max_logprobs", l.max_logprobs},
      {"max_waiting_requests", l.max_waiting_requests},
      {"max_stream_buffer_events", l.max_stream_buffer_events},
      {"max_json_bytes", l.max_json_bytes},
      {"max_json_depth", l.max_json_depth},
      {"max_tensors_per_file", l.max_tensors_per_file},
      {"max_vocab_size", l.max_vocab_size},
      {"max_adapter_rank", l.max_adapter_rank},
      {"max_loaded_models", l.max_loaded_models},
      {"max_adapter_device_bytes", l.max_adapter_device_bytes},
      {"max_resident_adapters", l.max_resident_adapters},
      {"max_running_requests", l.max_running_requests},
      {"max_batched_tokens", l.max_batched_tokens},
      {"kv_block_size_tokens", l.kv_block_size_tokens},
      {"stream_stall_timeout_ms", l.stream_stall_timeout_ms},
      {"max_receive_message_bytes", c.grpc.max_receive_message_bytes},
      {"max_send_message_bytes", c.grpc.max_send_message_bytes},
      {"max_metadata_bytes", c.grpc.max_metadata_bytes},
      {"max_concurrent_streams", c.grpc.max_concurrent_streams},
      {"keepalive_time_s", c.grpc.keepalive_time_s},
      {"keepalive_timeout_s", c.grpc.keepalive_timeout_s},
      {"min_ping_interval_s", c.grpc.min_ping_interval_s},
  };
  for (const auto& [name, v] : positive) {
    s = Positive(name, v);
    if (!s.ok()) return s;
  }
  // 0 is meaningful for these: no host tier / the machine's physical memory.
  for (const auto& [name, v] : {std::pair<const char*, int64_t>{"max_adapter_host_bytes", l.max_adapter_host_bytes},
                                {"cpu_memory_bytes", l.cpu_memory_bytes}}) {
    if (v < 0) return absl::InvalidArgumentError(absl::StrCat(name, ": must be >= 0, got ", v));
  }
  if (l.cuda_memory_percent < 1 || l.cuda_memory_percent > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda_memory_percent: must be in [1, 100], got ", l.cuda_memory_percent));
  }
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  const std::pair<const char*, int64_t> fits_int[] = {
      {"max_receive_message_bytes", c.grpc.max_receive_message_bytes},
      {"max_send_message_bytes", c.grpc.max_send_message_bytes},
      {"max_metadata_bytes", c.grpc.max_metadata_bytes},
      {"keepalive_time_s", c.grpc.keepalive_time_s * 1000},
      {"keepalive_timeout_s", c.grpc.keepalive_timeout_s * 1000},
      {"min_ping_interval_s", c.grpc.min_ping_interval_s * 1000},
      {"max_connection_age_s", c.grpc.max_connection_age_s * 1000},
      {"max_connection_age_grace_s", c.grpc.max_connection_age_grace_s * 1000},
  };
  for (const auto& [name, v] : fits_int) {
    if (v > kIntMax) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": too large for gRPC (limit ", kIntMax, " bytes or ms)"));
    }
  }
  if (l.default_max_new_tokens > l.max_new_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "default_max_new_tokens: ", l.default_max_new_tokens,
        " must be <= max_new_tokens (", l.max_new_tokens, ")"));
  }
  if (l.max_prompt_tokens > l.max_total_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_prompt_tokens: ", l.max_prompt_tokens, " must be <= max_total_tokens (",
        l.max_total_tokens, ")"));
  }
  return absl::OkStatus();
}

std::string ConfigToJson(const ServerConfig& config) {
  nlohmann::json j = nlohmann::json::object();
  for (const Field& f : Fields()) j[f.name] = f.get(config);
  return j.dump(2);
}

engine::EngineOptions ToEngineOptions(const ServerConfig& config) {
  engine::EngineOptions options;
  options.model_roots = config.model_roots;
  options.adapter_roots = config.adapter_roots;
  options.hub_cache = config.hub_cache;
  options.limits = config.limits;
  options.drain_timeout_s = static_cast<double>(config.drain_timeout_s);
  options.num_control_threads = config.num_control_threads;
  options.num_compute_threads = config.num_compute_threads;
  return options;
}

}  // namespace kiln::server
