#include "bench/loadgen/options.h"

#include <arpa/inet.h>

#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kiln::bench {
namespace {

constexpr int32_t kMaxLength = 1 << 20;  // tokens; far above any model's context
constexpr int32_t kMaxConcurrency = 4096;
constexpr int64_t kMaxRequests = 10'000'000;

absl::Status Invalid(const std::string& flag, const std::string& value, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", value, ": ", why));
}

absl::StatusOr<int64_t> ParseInt(const std::string& flag, const std::string& value, int64_t lo,
                                 int64_t hi) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(value, &v)) return Invalid(flag, value, "not an integer");
  if (v < lo || v > hi) {
    return Invalid(flag, value, absl::StrCat("must be in [", lo, ", ", hi, "]"));
  }
  return v;
}

absl::StatusOr<double> ParseDouble(const std::string& flag, const std::string& value, double lo,
                                   double hi) {
  if (value == "inf") return std::numeric_limits<double>::infinity();
  double v = 0;
  if (!absl::SimpleAtod(value, &v) || std::isnan(v)) return Invalid(flag, value, "not a number");
  if (v < lo || v > hi) {
    return Invalid(flag, value, absl::StrCat("must be in [", lo, ", ", hi, "]"));
  }
  return v;
}

}  // namespace

std::string LengthDist::ToString() const {
  if (min == max) return absl::StrCat("fixed:", min);
  return absl::StrCat("uniform:", min, ":", max);
}

int32_t LengthDist::Sample(std::mt19937_64& rng) const {
  if (min >= max) return min;
  return std::uniform_int_distribution<int32_t>(min, max)(rng);
}

absl::StatusOr<LengthDist> ParseLengthDist(const std::string& field, const std::string& text,
                                           int32_t limit) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  std::vector<int64_t> values;
  std::string kind = "fixed";
  size_t first = 0;
  if (!parts.empty() && (parts[0] == "fixed" || parts[0] == "uniform")) {
    kind = parts[0];
    first = 1;
  }
  for (size_t i = first; i < parts.size(); ++i) {
    int64_t parsed = 0;
    if (!absl::SimpleAtoi(parts[i], &parsed)) return Invalid(field, text, "not an integer");
    if (parsed < 1 || parsed > limit) {
      return Invalid(field, text, absl::StrCat("lengths must be in [1, ", limit, "]"));
    }
    values.push_back(parsed);
  }
  if (kind == "fixed") {
    if (values.size() != 1) return Invalid(field, text, "expected N or fixed:N");
    return LengthDist{static_cast<int32_t>(values[0]), static_cast<int32_t>(values[0])};
  }
  if (values.size() != 2) return Invalid(field, text, "expected uniform:MIN:MAX");
  if (values[0] > values[1]) return Invalid(field, text, "MIN must not exceed MAX");
  return LengthDist{static_cast<int32_t>(values[0]), static_cast<int32_t>(values[1])};
}

absl::StatusOr<std::vector<AdapterWeight>> ParseAdapterMix(const std::string& text) {
  std::vector<AdapterWeight> mix;
  if (text.empty()) return std::vector<AdapterWeight>{{"", 1}};
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    AdapterWeight w;
    w.name = kv.first == "none" ? "" : kv.first;
    if (kv.first.empty()) return Invalid("adapters", text, "empty adapter name (use \"none\")");
    if (!kv.second.empty() || absl::StrContains(item, '=')) {
      if (!absl::SimpleAtod(kv.second, &w.weight) || !(w.weight > 0) || std::isinf(w.weight)) {
        return Invalid("adapters", text,
                       absl::StrCat("weight of '", kv.first, "' must be a number > 0"));
      }
    }
    mix.push_back(std::move(w));
  }
  return mix;
}

const std::string& SampleAdapter(const std::vector<AdapterWeight>& mix, std::mt19937_64& rng) {
  static const std::string kBase;
  if (mix.empty()) return kBase;
  double total = 0;
  for (const AdapterWeight& w : mix) total += w.weight;
  double x = std::uniform_real_distribution<double>(0, total)(rng);
  for (const AdapterWeight& w : mix) {
    if (x < w.weight) return w.name;
    x -= w.weight;
  }
  return mix.back().name;
}

bool IsLoopbackTarget(const std::string& target) {
  std::string host;
  std::string port;
  if (absl::StartsWith(target, "[")) {
    const size_t close = target.find(']');
    if (close == std::string::npos) return false;
    host = target.substr(1, close - 1);
    if (close + 1 >= target.size() || target[close + 1] != ':') return false;
    port = target.substr(close + 2);
  } else {
    const size_t colon = target.rfind(':');
    if (colon == std::string::npos) return false;
    host = target.substr(0, colon);
    port = target.substr(colon + 1);
    if (host.find(':') != std::string::npos) return false;  // bare IPv6 needs brackets
  }
  int64_t port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 1 || port_number > 65535) {
    return false;
  }
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    in6_addr loop = IN6ADDR_LOOPBACK_INIT;
    for (int i = 0; i < 16; ++i) {
      if (v6.s6_addr[i] != loop.s6_addr[i]) return false;
    }
    return true;
  }
  return false;
}

absl::StatusOr<LoadgenOptions> ParseArgs(const std::vector<std::string>& args) {
  LoadgenOptions o;
  o.argv = args;
  bool have_rate = false;
  bool have_concurrency = false;
  for (const std::string& arg : args) {
    if (arg == "--quiet") {
      o.quiet = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--") || arg.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("argument '", arg, "': expected --key=value (see bench/README.md)"));
    }
    const size_t eq = arg.find('=');
    const std::string key = arg.substr(2, eq - 2);
    const std::string value = arg.substr(eq + 1);
    absl::Status s;
    auto set_int = [&](auto* field, int64_t lo, int64_t hi) {
      absl::StatusOr<int64_t> v = ParseInt(key, value, lo, hi);
      if (v.ok()) *field = static_cast<std::remove_pointer_t<decltype(field)>>(*v);
      return v.status();
    };
    auto set_double = [&](double* field, double lo, double hi) {
      absl::StatusOr<double> v = ParseDouble(key, value, lo, hi);
      if (v.ok()) *field = *v;
      return v.status();
    };
    if (key == "target") {
      if (!IsLoopbackTarget(value)) {
        return Invalid(key, value,
                       "only loopback targets (127.0.0.0/8, localhost, [::1]) with a port are "
                       "allowed");
      }
      o.target = value;
    } else if (key == "model") {
      o.model = value;
    } else if (key == "request_rate") {
      s = set_double(&o.request_rate, 1e-6, std::numeric_limits<double>::infinity());
      have_rate = true;
    } else if (key == "concurrency") {
      s = set_int(&o.concurrency, 1, kMaxConcurrency);
      have_concurrency = true;
    } else if (key == "max_concurrency") {
      s = set_int(&o.max_concurrency, 0, kMaxConcurrency);
    } else if (key == "num_requests") {
      s = set_int(&o.num_requests, 1, kMaxRequests);
    } else if (key == "duration_s") {
      s = set_double(&o.duration_s, 0, 86400);
    } else if (key == "grace_s") {
      s = set_double(&o.grace_s, 0, 3600);
    } else if (key == "prompt_len" || key == "output_len") {
      absl::StatusOr<LengthDist> d = ParseLengthDist(key, value, kMaxLength);
      if (!d.ok()) return d.status();
      (key == "prompt_len" ? o.prompt_len : o.output_len) = *d;
    } else if (key == "vocab_size") {
      s = set_int(&o.vocab_size, 2, 1 << 24);
    } else if (key == "min_token_id") {
      s = set_int(&o.min_token_id, 0, 1 << 24);
    } else if (key == "adapters") {
      absl::StatusOr<std::vector<AdapterWeight>> mix = ParseAdapterMix(value);
      if (!mix.ok()) return mix.status();
      o.adapters = *std::move(mix);
    } else if (key == "warmup") {
      s = set_int(&o.warmup, 0, 1000);
    } else if (key == "channels") {
      s = set_int(&o.channels, 0, 256);
    } else if (key == "seed") {
      uint64_t seed = 0;
      if (!absl::SimpleAtoi(value, &seed)) return Invalid(key, value, "not an unsigned integer");
      o.seed = seed;
    } else if (key == "timeout_s") {
      s = set_double(&o.timeout_s, 0.001, 86400);
    } else if (key == "wait_ready_s") {
      s = set_double(&o.wait_ready_s, 0, 86400);
    } else if (key == "server_pid") {
      s = set_int(&o.server_pid, 1, std::numeric_limits<int32_t>::max());
    } else if (key == "exclude_threads") {
      o.exclude_threads = value;
    } else if (key == "label") {
      o.label = value;
    } else if (key == "json_out") {
      o.json_out = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", key, " (see bench/loadgen/options.h)"));
    }
    if (!s.ok()) return s;
  }
  if (o.model.empty()) return absl::InvalidArgumentError("--model is required");
  if (have_rate == have_concurrency) {
    return absl::InvalidArgumentError("exactly one of --request_rate and --concurrency is required");
  }
  if (o.min_token_id >= o.vocab_size) {
    return Invalid("min_token_id", std::to_string(o.min_token_id),
                   absl::StrCat("must be below --vocab_size=", o.vocab_size));
  }
  return o;
}

}  // namespace kiln::bench
