#include "cli/requests.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace kiln::cli {
namespace {

absl::Status Usage(const std::string& message) { return absl::InvalidArgumentError(message); }

// Checks a 32-bit field's range here so a typo never wraps silently into another value.
absl::StatusOr<std::optional<int32_t>> GetInt32(const ParsedArgs& args, const std::string& name,
                                               int64_t min_value) {
  absl::StatusOr<std::optional<int64_t>> v = args.GetInt64(name);
  if (!v.ok()) return v.status();
  if (!v->has_value()) return std::optional<int32_t>();
  if (**v < min_value || **v > std::numeric_limits<int32_t>::max()) {
    return Usage("--" + name + ": " + std::to_string(**v) + " is out of range [" +
                 std::to_string(min_value) + ", " +
                 std::to_string(std::numeric_limits<int32_t>::max()) + "]");
  }
  return std::optional<int32_t>(static_cast<int32_t>(**v));
}

absl::StatusOr<std::optional<float>> GetFloat(const ParsedArgs& args, const std::string& name) {
  absl::StatusOr<std::optional<double>> v = args.GetDouble(name);
  if (!v.ok()) return v.status();
  if (!v->has_value()) return std::optional<float>();
  if (!std::isfinite(**v)) return Usage("--" + name + ": must be a finite number");
  return std::optional<float>(static_cast<float>(**v));
}

// ParseArgs already enforces the counts; this keeps a direct caller from reading past the end.
absl::Status NeedPositional(const ParsedArgs& args, size_t n) {
  if (args.positional.size() < n) {
    return Usage("'" + args.command + "' needs " + std::to_string(n) + " argument(s)");
  }
  return absl::OkStatus();
}

#define KILN_CLI_ASSIGN(lhs, expr)      \
  auto lhs##_or = (expr);               \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *std::move(lhs##_or)

}  // namespace

absl::StatusOr<ClientOptions> BuildClientOptions(const ParsedArgs& args,
                                                 const std::optional<std::string>& env_token) {
  ClientOptions o;
  o.addr = args.GetString("addr", o.addr);
  if (o.addr.empty()) return Usage("--addr: must not be empty");
  o.token = args.Has("token") ? args.GetString("token") : env_token.value_or("");
  KILN_CLI_ASSIGN(tls, args.GetBool("tls", false));
  o.tls_ca_file = args.GetString("tls_ca_file");
  o.tls_cert_file = args.GetString("tls_cert_file");
  o.tls_key_file = args.GetString("tls_key_file");
  o.tls_server_name = args.GetString("tls_server_name");
  o.tls = tls || !o.tls_ca_file.empty() || !o.tls_cert_file.empty() ||
          !o.tls_key_file.empty() || !o.tls_server_name.empty();
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return Usage("--tls_cert_file and --tls_key_file must be given together");
  }
  KILN_CLI_ASSIGN(timeout, args.GetDouble("timeout"));
  if (timeout && (!std::isfinite(*timeout) || *timeout < 0)) {
    return Usage("--timeout: must be >= 0 seconds, got " + args.GetString("timeout"));
  }
  o.timeout_s = timeout;
  KILN_CLI_ASSIGN(json, args.GetBool("json", false));
  o.json = json;
  return o;
}

absl::StatusOr<kiln::v1::DType> ParseDType(const std::string& text) {
  if (text == "auto") return kiln::v1::DTYPE_AUTO;
  if (text == "float32" || text == "fp32") return kiln::v1::DTYPE_FLOAT32;
  if (text == "float16" || text == "fp16") return kiln::v1::DTYPE_FLOAT16;
  if (text == "bfloat16" || text == "bf16") return kiln::v1::DTYPE_BFLOAT16;
  return Usage("--dtype: expected auto, float32, float16 or bfloat16, got '" + text + "'");
}

absl::StatusOr<kiln::v1::LoadModelRequest> BuildLoadModelRequest(const ParsedArgs& args) {
  kiln::v1::LoadModelRequest r;
  if (absl::Status st = NeedPositional(args, 1); !st.ok()) return st;
  r.set_model(args.positional.at(0));
  r.set_served_name(args.GetString("served_name"));
  r.set_revision(args.GetString("revision"));
  r.set_attn_implementation(args.GetString("attn_implementation"));
  r.set_adapter(args.GetString("adapter"));
  if (args.Has("dtype")) {
    KILN_CLI_ASSIGN(dtype, ParseDType(args.GetString("dtype")));
    r.set_dtype(dtype);
  }
  if (args.Has("device_map")) {
    const std::string text = args.GetString("device_map");
    if (text.find('=') != std::string::npos) {
      KILN_CLI_ASSIGN(entries, ParseKeyValueList("device_map", text));
      r.mutable_device_map()->mutable_explicit_map()->mutable_entries()->insert(entries.begin(),
                                                                                entries.end());
    } else if (text.empty()) {
      return Usage("--device_map: must not be empty");
    } else {
      r.mutable_device_map()->set_strategy(text);
    }
  }
  if (args.Has("max_memory")) {
    KILN_CLI_ASSIGN(budget, ParseKeyValueList("max_memory", args.GetString("max_memory")));
    r.mutable_max_memory()->insert(budget.begin(), budget.end());
  }
  KILN_CLI_ASSIGN(in4, args.GetBool("load_in_4bit", false));
  KILN_CLI_ASSIGN(in8, args.GetBool("load_in_8bit", false));
  if (in4 && in8) return Usage("--load_in_4bit and --load_in_8bit are mutually exclusive");
  static const char* const kBnbFlags[] = {
      "bnb_4bit_quant_type",    "bnb_4bit_compute_dtype", "bnb_4bit_use_double_quant",
      "bnb_4bit_quant_storage", "llm_int8_threshold",     "llm_int8_skip_modules",
      "llm_int8_enable_fp32_cpu_offload"};
  if (!in4 && !in8) {
    for (const char* flag : kBnbFlags) {
      if (args.Has(flag)) {
        return Usage(std::string("--") + flag + " needs --load_in_4bit or --load_in_8bit");
      }
    }
  } else {
    kiln::v1::BitsAndBytesConfig* bnb = r.mutable_quantization()->mutable_bitsandbytes();
    bnb->set_load_in_4bit(in4);
    bnb->set_load_in_8bit(in8);
    bnb->set_bnb_4bit_quant_type(args.GetString("bnb_4bit_quant_type"));
    bnb->set_bnb_4bit_compute_dtype(args.GetString("bnb_4bit_compute_dtype"));
    bnb->set_bnb_4bit_quant_storage(args.GetString("bnb_4bit_quant_storage"));
    KILN_CLI_ASSIGN(dq, args.GetBool("bnb_4bit_use_double_quant", false));
    bnb->set_bnb_4bit_use_double_quant(dq);
    KILN_CLI_ASSIGN(offload, args.GetBool("llm_int8_enable_fp32_cpu_offload", false));
    bnb->set_llm_int8_enable_fp32_cpu_offload(offload);
    KILN_CLI_ASSIGN(threshold, GetFloat(args, "llm_int8_threshold"));
    if (threshold) bnb->set_llm_int8_threshold(*threshold);
    for (const std::string& m : SplitCommaList(args.GetString("llm_int8_skip_modules"))) {
      bnb->add_llm_int8_skip_modules(m);
    }
  }
  KILN_CLI_ASSIGN(trust, args.GetBool("trust_remote_code", false));
  r.set_trust_remote_code(trust);
  KILN_CLI_ASSIGN(pin, args.GetBool("pin", false));
  r.set_pin(pin);
  KILN_CLI_ASSIGN(no_prefix, args.GetBool("disable_prefix_caching", false));
  r.set_disable_prefix_caching(no_prefix);
  KILN_CLI_ASSIGN(merge, args.GetBool("merge_adapter", false));
  r.set_merge_adapter(merge);
  KILN_CLI_ASSIGN(keep_alive, args.GetInt64("keep_alive_ms"));
  if (keep_alive) r.set_keep_alive_ms(*keep_alive);
  KILN_CLI_ASSIGN(max_seq_len, args.GetInt64("max_seq_len"));
  if (max_seq_len && *max_seq_len < 0) return Usage("--max_seq_len: must be >= 0");
  if (max_seq_len) r.set_max_seq_len(*max_seq_len);
  KILN_CLI_ASSIGN(kv_bytes, args.GetInt64("kv_cache_bytes"));
  if (kv_bytes && *kv_bytes < 0) return Usage("--kv_cache_bytes: must be >= 0");
  if (kv_bytes) r.set_kv_cache_bytes(*kv_bytes);
  return r;
}

absl::StatusOr<kiln::v1::GenerateRequest> BuildGenerateRequest(const ParsedArgs& args) {
  kiln::v1::GenerateRequest r;
  if (absl::Status st = NeedPositional(args, 2); !st.ok()) return st;
  r.set_model(args.positional.at(0));
  r.set_text(args.positional.at(1));
  r.set_adapter(args.GetString("adapter"));
  r.set_request_id(args.GetString("request_id"));
  kiln::v1::SamplingParams* s = r.mutable_sampling();
  KILN_CLI_ASSIGN(temperature, GetFloat(args, "temperature"));
  if (temperature) s->set_temperature(*temperature);
  KILN_CLI_ASSIGN(top_k, GetInt32(args, "top_k", 0));
  if (top_k) s->set_top_k(*top_k);
  KILN_CLI_ASSIGN(top_p, GetFloat(args, "top_p"));
  if (top_p) s->set_top_p(*top_p);
  KILN_CLI_ASSIGN(min_p, GetFloat(args, "min_p"));
  if (min_p) s->set_min_p(*min_p);
  KILN_CLI_ASSIGN(rep, GetFloat(args, "repetition_penalty"));
  if (rep) s->set_repetition_penalty(*rep);
  KILN_CLI_ASSIGN(presence, GetFloat(args, "presence_penalty"));
  if (presence) s->set_presence_penalty(*presence);
  KILN_CLI_ASSIGN(frequency, GetFloat(args, "frequency_penalty"));
  if (frequency) s->set_frequency_penalty(*frequency);
  if (args.Has("seed")) {
    const std::string text = args.GetString("seed");
    char* end = nullptr;
    errno = 0;
    const unsigned long long seed = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE) {
      return Usage("--seed: expected an unsigned integer, got '" + text + "'");
    }
    s->set_seed(seed);
  }
  kiln::v1::StoppingCriteria* stop = r.mutable_stopping();
  KILN_CLI_ASSIGN(max_new, GetInt32(args, "max_new_tokens", 0));
  if (max_new) stop->set_max_new_tokens(*max_new);
  KILN_CLI_ASSIGN(min_new, GetInt32(args, "min_new_tokens", 0));
  if (min_new) stop->set_min_new_tokens(*min_new);
  for (const std::string& text : args.GetAll("stop")) {
    if (text.empty()) return Usage("--stop: a stop string must not be empty");
    stop->add_stop(text);
  }
  KILN_CLI_ASSIGN(ignore_eos, args.GetBool("ignore_eos", false));
  stop->set_ignore_eos(ignore_eos);
  KILN_CLI_ASSIGN(logprobs, GetInt32(args, "logprobs", 0));
  if (logprobs) {
    r.set_logprobs(*logprobs);
    r.set_return_token_logprob(true);
  }
  KILN_CLI_ASSIGN(skip_special, args.GetBool("skip_special_tokens", false));
  r.set_skip_special_tokens(skip_special);
  return r;
}

absl::StatusOr<kiln::v1::TokenizeRequest> BuildTokenizeRequest(const ParsedArgs& args) {
  kiln::v1::TokenizeRequest r;
  if (absl::Status st = NeedPositional(args, 2); !st.ok()) return st;
  r.set_model(args.positional.at(0));
  r.set_text(args.positional.at(1));
  KILN_CLI_ASSIGN(add_special, args.GetBool("add_special_tokens", true));
  r.set_add_special_tokens(add_special);
  KILN_CLI_ASSIGN(tokens, args.GetBool("tokens", false));
  r.set_return_tokens(tokens);
  return r;
}

absl::StatusOr<kiln::v1::UnloadModelRequest> BuildUnloadModelRequest(const ParsedArgs& args) {
  kiln::v1::UnloadModelRequest r;
  if (absl::Status st = NeedPositional(args, 1); !st.ok()) return st;
  r.set_served_name(args.positional.at(0));
  KILN_CLI_ASSIGN(drain, args.GetBool("drain", false));
  r.set_drain(drain);
  return r;
}

absl::StatusOr<kiln::v1::LoadAdapterRequest> BuildLoadAdapterRequest(const ParsedArgs& args) {
  kiln::v1::LoadAdapterRequest r;
  if (absl::Status st = NeedPositional(args, 2); !st.ok()) return st;
  r.set_model(args.positional.at(0));
  r.set_adapter(args.positional.at(1));
  r.set_served_name(args.GetString("served_name"));
  r.set_revision(args.GetString("revision"));
  KILN_CLI_ASSIGN(pin, args.GetBool("pin", false));
  r.set_pin(pin);
  KILN_CLI_ASSIGN(mismatch, args.GetBool("ignore_base_model_mismatch", false));
  r.set_ignore_base_model_mismatch(mismatch);
  return r;
}

absl::StatusOr<kiln::v1::UnloadAdapterRequest> BuildUnloadAdapterRequest(
    const ParsedArgs& args) {
  kiln::v1::UnloadAdapterRequest r;
  if (absl::Status st = NeedPositional(args, 2); !st.ok()) return st;
  r.set_model(args.positional.at(0));
  r.set_served_name(args.positional.at(1));
  KILN_CLI_ASSIGN(force, args.GetBool("force", false));
  r.set_force(force);
  return r;
}

}  // namespace kiln::cli
