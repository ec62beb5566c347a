#include "cli/args.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace kiln::cli {
namespace {

using K = FlagKind;

const FlagSpec* FindFlag(const std::vector<FlagSpec>& flags, const std::string& name) {
  for (const FlagSpec& f : flags) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

const CommandSpec* FindCommand(const std::string& name) {
  for (const CommandSpec& c : Commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

bool IsBoolText(const std::string& text) { return text == "true" || text == "false"; }

absl::Status Usage(const std::string& message) { return absl::InvalidArgumentError(message); }

}  // namespace

const std::vector<FlagSpec>& GlobalFlags() {
  static const std::vector<FlagSpec> kFlags = {
      {"addr", K::kValue, "HOST:PORT", "server address (default 127.0.0.1:50051)"},
      {"token", K::kValue, "TOKEN",
       "bearer token sent as `authorization: Bearer TOKEN` (default: $KILN_TOKEN)"},
      {"tls", K::kBool, "", "use TLS (implied by any --tls_* flag)"},
      {"tls_ca_file", K::kValue, "PEM", "CA bundle that verifies the server"},
      {"tls_cert_file", K::kValue, "PEM", "client certificate (mTLS)"},
      {"tls_key_file", K::kValue, "PEM", "client private key (mTLS)"},
      {"tls_server_name", K::kValue, "NAME", "expected server name (SNI / certificate check)"},
      {"timeout", K::kValue, "SECONDS",
       "RPC deadline; 0 = none (default: none for streams, 30 for unary RPCs)"},
      {"json", K::kBool, "", "print one JSON object per response (machine output)"},
  };
  return kFlags;
}

const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec> kCommands = {
      {"health", "[service]", 0, 1,
       "grpc.health.v1 Check (\"\" = overall, \"kiln.v1.Kiln\", \"model/<name>\")",
       {}},
      {"info", "", 0, 0, "server version, devices, memory ledger and limits", {}},
      {"load", "<model>", 1, 1, "load a model, with a live progress bar",
       {{"served_name", K::kValue, "NAME", "name used by the other RPCs (default: <model>)"},
        {"revision", K::kValue, "REV", "branch, tag or commit for hub ids"},
        {"dtype", K::kValue, "DTYPE", "auto | float32 | float16 | bfloat16"},
        {"device_map", K::kValue, "MAP",
         "strategy (auto, balanced, balanced_low_0, sequential, cpu, cuda:1, 0) or "
         "module=device,..."},
        {"max_memory", K::kValue, "DEV=SIZE,...", "per-device budget, e.g. 0=20GiB,cpu=8GiB"},
        {"attn_implementation", K::kValue, "IMPL", "eager | sdpa | flash_attention_2"},
        {"adapter", K::kValue, "ID", "adapter attached at load as the default"},
        {"load_in_4bit", K::kBool, "", "bitsandbytes 4-bit quantization on load"},
        {"load_in_8bit", K::kBool, "", "bitsandbytes LLM.int8 quantization on load"},
        {"bnb_4bit_quant_type", K::kValue, "TYPE", "fp4 | nf4"},
        {"bnb_4bit_compute_dtype", K::kValue, "DTYPE", "float32 | float16 | bfloat16"},
        {"bnb_4bit_use_double_quant", K::kBool, "", "quantize the 4-bit scales too"},
        {"bnb_4bit_quant_storage", K::kValue, "DTYPE", "storage type of packed weights"},
        {"llm_int8_threshold", K::kValue, "X", "LLM.int8 outlier threshold (default 6.0)"},
        {"llm_int8_skip_modules", K::kValue, "A,B", "modules kept in full precision"},
        {"llm_int8_enable_fp32_cpu_offload", K::kBool, "", "allow fp32 modules on cpu"},
        {"trust_remote_code", K::kBool, "", "always refused by the server"},
        {"pin", K::kBool, "", "never evict this model"},
        {"keep_alive_ms", K::kValue, "MS", "evict after this idle time (<0 = never)"},
        {"max_seq_len", K::kValue, "N", "longest sequence served"},
        {"kv_cache_bytes", K::kValue, "BYTES", "KV cache budget"},
        {"disable_prefix_caching", K::kBool, "", "turn prefix caching off"},
        {"merge_adapter", K::kBool, "", "fold --adapter into the base weights (dense bases only)"}}},
      {"unload", "<name>", 1, 1, "unload a model",
       {{"drain", K::kBool, "", "let in-flight requests finish first"}}},
      {"models", "[name]", 0, 1, "list models, or show one model", {}},
      {"adapters list", "", 0, 0, "list adapters",
       {{"model", K::kValue, "NAME", "only this model's adapters"}}},
      {"adapters load", "<model> <adapter>", 2, 2, "make an adapter resident",
       {{"served_name", K::kValue, "NAME", "register the adapter under this id"},
        {"revision", K::kValue, "REV", "branch, tag or commit for hub ids"},
        {"pin", K::kBool, "", "never evict this adapter"},
        {"ignore_base_model_mismatch", K::kBool, "", "accept a different base model"}}},
      {"adapters unload", "<model> <adapter>", 2, 2, "release an adapter",
       {{"force", K::kBool, "", "even while requests use it"}}},
      {"generate", "<model> <prompt>", 2, 2, "stream a continuation to stdout",
       {{"adapter", K::kValue, "ID", "adapter for this request"},
        {"max_new_tokens", K::kValue, "N", "0 = server default"},
        {"min_new_tokens", K::kValue, "N", "suppress eos/stop until reached"},
        {"temperature", K::kValue, "T", "0 = greedy"},
        {"top_k", K::kValue, "K", "0 = off"},
        {"top_p", K::kValue, "P", "1 = off"},
        {"min_p", K::kValue, "P", "0 = off"},
        {"repetition_penalty", K::kValue, "X", "1 = off"},
        {"presence_penalty", K::kValue, "X", "0 = off"},
        {"frequency_penalty", K::kValue, "X", "0 = off"},
        {"seed", K::kValue, "N", "sampler seed"},
        {"stop", K::kRepeated, "TEXT", "stop string (repeatable)"},
        {"ignore_eos", K::kBool, "", "keep generating past eos"},
        {"logprobs", K::kValue, "N", "top-N logprobs per token (shown with --json)"},
        {"skip_special_tokens", K::kBool, "", "drop special tokens from the text"},
        {"request_id", K::kValue, "ID", "client-chosen request id"}}},
      {"tokenize", "<model> <text>", 2, 2, "token ids of a text",
       {{"add_special_tokens", K::kBool, "", "add bos/template tokens (default true)"},
        {"tokens", K::kBool, "", "also print each token's text"}}},
  };
  return kCommands;
}

std::string UsageText() {
  std::ostringstream out;
  out << "usage: kilnctl [global flags] <command> [args] [flags]\n\ncommands:\n";
  auto print_flags = [&out](const std::vector<FlagSpec>& flags, const char* indent) {
    for (const FlagSpec& f : flags) {
      std::string left = std::string("--") + f.name;
      if (f.kind != K::kBool) left += std::string("=") + f.value_name;
      out << indent << left;
      const size_t width = 30;
      if (left.size() + 2 < width) {
        out << std::string(width - left.size(), ' ');
      } else {
        out << "\n" << indent << std::string(width, ' ');
      }
      out << f.help << "\n";
    }
  };
  for (const CommandSpec& c : Commands()) {
    std::string synopsis = std::string(c.name) + (c.args[0] ? std::string(" ") + c.args : "");
    out << "  " << synopsis;
    out << std::string(synopsis.size() < 32 ? 32 - synopsis.size() : 1, ' ') << c.help << "\n";
    print_flags(c.flags, "      ");
  }
  out << "\nglobal flags:\n";
  print_flags(GlobalFlags(), "  ");
  out << "\nexit status: 0 on success; the gRPC status code number when the RPC fails\n"
         "(e.g. 5 NOT_FOUND, 14 UNAVAILABLE, 16 UNAUTHENTICATED); `health` exits 14 when the\n"
         "service is not SERVING; 64 for usage errors. Errors print\n"
         "`error: <CODE>: <message>` on stderr.\n";
  return out.str();
}

std::string ParsedArgs::GetString(const std::string& name, const std::string& fallback) const {
  auto it = flags.find(name);
  return it == flags.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> ParsedArgs::GetAll(const std::string& name) const {
  auto it = flags.find(name);
  return it == flags.end() ? std::vector<std::string>{} : it->second;
}

absl::StatusOr<bool> ParsedArgs::GetBool(const std::string& name, bool fallback) const {
  if (!Has(name)) return fallback;
  const std::string text = GetString(name);
  if (!IsBoolText(text)) return Usage("--" + name + ": expected true or false, got '" + text + "'");
  return text == "true";
}

absl::StatusOr<std::optional<int64_t>> ParsedArgs::GetInt64(const std::string& name) const {
  if (!Has(name)) return std::optional<int64_t>();
  const std::string text = GetString(name);
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    return Usage("--" + name + ": expected an integer, got '" + text + "'");
  }
  return std::optional<int64_t>(static_cast<int64_t>(value));
}

absl::StatusOr<std::optional<double>> ParsedArgs::GetDouble(const std::string& name) const {
  if (!Has(name)) return std::optional<double>();
  const std::string text = GetString(name);
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    return Usage("--" + name + ": expected a number, got '" + text + "'");
  }
  return std::optional<double>(value);
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& argv) {
  ParsedArgs parsed;
  std::vector<std::string> words;  // non-flag words: command words, then positional
  const CommandSpec* command = nullptr;
  bool flags_done = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (!flags_done && (arg == "-h" || arg == "--help" || (words.empty() && arg == "help"))) {
      parsed.command = "help";
      return parsed;
    }
    if (flags_done || arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      if (!flags_done && arg == "--") {
        flags_done = true;
        continue;
      }
      if (!flags_done && arg.size() > 1 && arg[0] == '-' && arg != "-") {
        return Usage("unknown flag '" + arg + "' (flags are --name or --name=value)");
      }
      words.push_back(arg);
      if (command == nullptr) {
        // The command is one word, or two for "adapters <action>".
        if (words.size() == 1 && words[0] != "adapters") {
          command = FindCommand(words[0]);
          if (command == nullptr) return Usage("unknown command '" + words[0] + "'");
          words.clear();
        } else if (words.size() == 2) {
          command = FindCommand(words[0] + " " + words[1]);
          if (command == nullptr) {
            return Usage("unknown command 'adapters " + words[1] +
                         "' (expected adapters list|load|unload)");
          }
          words.clear();
        }
      }
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const FlagSpec* spec = FindFlag(GlobalFlags(), name);
    if (spec == nullptr && command != nullptr) spec = FindFlag(command->flags, name);
    if (spec == nullptr) {
      return Usage("unknown flag --" + name +
                   (command ? std::string(" for '") + command->name + "'" : std::string()));
    }
    if (spec->kind == K::kBool) {
      if (value && !IsBoolText(*value)) {
        return Usage("--" + name + ": expected true or false, got '" + *value + "'");
      }
      value = value.value_or("true");
    } else if (!value) {
      if (i + 1 >= argv.size()) return Usage("--" + name + " needs a value");
      value = argv[++i];
    }
    std::vector<std::string>& values = parsed.flags[name];
    if (spec->kind != K::kRepeated) values.clear();
    values.push_back(*value);
  }
  if (command == nullptr) {
    return Usage(words.empty() ? "missing command" : "missing action after 'adapters'");
  }
  parsed.command = command->name;
  parsed.positional = std::move(words);
  const int n = static_cast<int>(parsed.positional.size());
  if (n < command->min_positional ||
      (command->max_positional >= 0 && n > command->max_positional)) {
    return Usage(std::string("'") + command->name + "' takes " + command->args +
                 (command->args[0] ? "" : "no arguments") + ", got " + std::to_string(n) +
                 " argument(s)");
  }
  return parsed;
}

absl::StatusOr<std::map<std::string, std::string>> ParseKeyValueList(const std::string& flag,
                                                                     const std::string& text) {
  std::map<std::string, std::string> out;
  for (const std::string& item : SplitCommaList(text)) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Usage("--" + flag + ": expected key=value, got '" + item + "'");
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  if (out.empty()) return Usage("--" + flag + ": expected key=value,..., got '" + text + "'");
  return out;
}

std::vector<std::string> SplitCommaList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace kiln::cli
