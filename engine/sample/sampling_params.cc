#include "engine/sample/sampling_params.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/sample/utf8.h"

namespace kiln::engine::sample {
namespace {

// Where a merged value came from; named in error messages so that a bad
// generation_config.json is not blamed on the client.
enum class Source { kRequest, kGenerationConfig, kBuiltin };

template <typename T>
struct Merged {
  T value;
  Source source;
};

template <typename T>
Merged<T> Merge(const std::optional<T>& request, const std::optional<T>& config, T builtin) {
  if (request.has_value()) return {*request, Source::kRequest};
  if (config.has_value()) return {*config, Source::kGenerationConfig};
  return {builtin, Source::kBuiltin};
}

std::string Name(const char* field, Source source) {
  std::string name = absl::StrCat("sampling.", field);
  switch (source) {
    case Source::kRequest:
    case Source::kBuiltin:
      break;
    case Source::kGenerationConfig:
      absl::StrAppend(&name, " (from generation_config.json)");
      break;
  }
  return name;
}

absl::Status OutOfRange(const std::string& name, const char* range, float value) {
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": must be in ", range, ", got ", value));
}

// Closed interval [lo, hi]; NaN and Inf fail (a NaN compares false).
absl::Status CheckClosed(const char* field, const Merged<float>& v, float lo, float hi,
                         const char* range) {
  if (!std::isfinite(v.value) || !(v.value >= lo && v.value <= hi)) {
    return OutOfRange(Name(field, v.source), range, v.value);
  }
  return absl::OkStatus();
}

// Half-open (lo, hi].
absl::Status CheckLeftOpen(const char* field, const Merged<float>& v, float lo, float hi,
                           const char* range) {
  if (!std::isfinite(v.value) || !(v.value > lo && v.value <= hi)) {
    return OutOfRange(Name(field, v.source), range, v.value);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ResolvedSampling> ResolveSampling(const SamplingOptions& request,
                                                 const GenerationDefaults& defaults,
                                                 int64_t vocab_size) {
  if (vocab_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling: vocab_size must be positive, got ", vocab_size));
  }
  ResolvedSampling out;

  const Merged<float> temperature = Merge(request.temperature, defaults.temperature, 1.0f);
  KILN_RETURN_IF_ERROR(CheckClosed("temperature", temperature, 0.0f, kMaxTemperature,
                                   "[0, 100]"));
  out.temperature = temperature.value;

  bool do_sample = false;
  if (request.do_sample.has_value()) {
    do_sample = *request.do_sample;
  } else if (request.temperature.has_value()) {
    do_sample = *request.temperature > 0.0f;  // OpenAI-style switch; see the header
  } else {
    do_sample = defaults.do_sample.value_or(false);
  }
  out.greedy = !do_sample || out.temperature == 0.0f;

  const Merged<int32_t> top_k = Merge(request.top_k, defaults.top_k, int32_t{50});
  if (top_k.value < 0 || (top_k.source == Source::kRequest && top_k.value > vocab_size)) {
    return absl::InvalidArgumentError(absl::StrCat(Name("top_k", top_k.source),
                                                   ": must be in [0, ", vocab_size,
                                                   "] (the vocabulary size), got ", top_k.value));
  }
  // transformers clamps top_k to the vocabulary (its default 50 exceeds tiny test vocabs);
  // keeping all tokens is "off".
  out.top_k = top_k.value >= vocab_size ? 0 : top_k.value;

  const Merged<float> top_p = Merge(request.top_p, defaults.top_p, 1.0f);
  if (top_p.source == Source::kRequest) {
    KILN_RETURN_IF_ERROR(CheckLeftOpen("top_p", top_p, 0.0f, 1.0f, "(0, 1]"));
  } else {
    // transformers accepts 0 in generation_config (it keeps one token).
    KILN_RETURN_IF_ERROR(CheckClosed("top_p", top_p, 0.0f, 1.0f, "[0, 1]"));
  }
  out.top_p = top_p.value;

  const Merged<float> min_p = Merge(request.min_p, defaults.min_p, 0.0f);
  KILN_RETURN_IF_ERROR(CheckClosed("min_p", min_p, 0.0f, 1.0f, "[0, 1]"));
  out.min_p = min_p.value;

  const Merged<float> repetition =
      Merge(request.repetition_penalty, defaults.repetition_penalty, 1.0f);
  KILN_RETURN_IF_ERROR(CheckLeftOpen("repetition_penalty", repetition, 0.0f,
                                     kMaxRepetitionPenalty, "(0, 100]"));
  out.repetition_penalty = repetition.value;

  const std::optional<float> no_default;
  const Merged<float> presence = Merge(request.presence_penalty, no_default, 0.0f);
  KILN_RETURN_IF_ERROR(CheckClosed("presence_penalty", presence,
                                   -kMaxAbsPresenceFrequencyPenalty,
                                   kMaxAbsPresenceFrequencyPenalty, "[-2, 2]"));
  out.presence_penalty = presence.value;
  const Merged<float> frequency = Merge(request.frequency_penalty, no_default, 0.0f);
  KILN_RETURN_IF_ERROR(CheckClosed("frequency_penalty", frequency,
                                   -kMaxAbsPresenceFrequencyPenalty,
                                   kMaxAbsPresenceFrequencyPenalty, "[-2, 2]"));
  out.frequency_penalty = frequency.value;

  out.seed = request.seed;  // every uint64 is a valid seed
  return out;
}

std::vector<int32_t> ResolvedStopping::MinNewTokensSuppressedIds() const {
  std::vector<int32_t> ids = eos_token_ids;
  ids.insert(ids.end(), stop_token_ids.begin(), stop_token_ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

absl::StatusOr<ResolvedStopping> ResolveStopping(const StoppingOptions& request,
                                                 const EngineLimits& limits, int64_t vocab_size,
                                                 std::span<const int32_t> model_eos_token_ids) {
  ResolvedStopping out;
  if (request.max_new_tokens < 0 || request.max_new_tokens > limits.max_new_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.max_new_tokens: must be in [0, ", limits.max_new_tokens,
                     "] (0 = server default), got ", request.max_new_tokens));
  }
  out.max_new_tokens = request.max_new_tokens > 0
                           ? request.max_new_tokens
                           : std::max(1, std::min(limits.default_max_new_tokens,
                                                  limits.max_new_tokens));
  if (request.min_new_tokens < 0 || request.min_new_tokens > out.max_new_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.min_new_tokens: must be in [0, max_new_tokens=",
                     out.max_new_tokens, "], got ", request.min_new_tokens));
  }
  out.min_new_tokens = request.min_new_tokens;

  if (request.stop.size() > static_cast<size_t>(std::max(0, limits.max_stop_sequences))) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.stop: at most ", limits.max_stop_sequences,
                     " stop sequences, got ", request.stop.size(), " (max_stop_sequences)"));
  }
  for (size_t i = 0; i < request.stop.size(); ++i) {
    const std::string& s = request.stop[i];
    if (s.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stopping.stop[", i, "]: must not be empty"));
    }
    if (static_cast<int64_t>(s.size()) > limits.max_stop_sequence_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("stopping.stop[", i, "]: at most ", limits.max_stop_sequence_bytes,
                       " bytes, got ", s.size(), " (max_stop_sequence_bytes)"));
    }
    if (!IsValidUtf8(s)) {
      return absl::InvalidArgumentError(
          absl::StrCat("stopping.stop[", i, "]: must be valid UTF-8"));
    }
  }
  out.stop = request.stop;

  for (size_t i = 0; i < request.stop_token_ids.size(); ++i) {
    const int32_t id = request.stop_token_ids[i];
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("stopping.stop_token_ids[", i, "]: must be in [0, ", vocab_size,
                       "), got ", id));
    }
  }
  out.stop_token_ids = request.stop_token_ids;
  std::sort(out.stop_token_ids.begin(), out.stop_token_ids.end());
  out.stop_token_ids.erase(std::unique(out.stop_token_ids.begin(), out.stop_token_ids.end()),
                           out.stop_token_ids.end());

  out.ignore_eos = request.ignore_eos;
  if (!out.ignore_eos) {
    for (const int32_t id : model_eos_token_ids) {
      if (id >= 0 && id < vocab_size) out.eos_token_ids.push_back(id);
    }
    std::sort(out.eos_token_ids.begin(), out.eos_token_ids.end());
    out.eos_token_ids.erase(std::unique(out.eos_token_ids.begin(), out.eos_token_ids.end()),
                            out.eos_token_ids.end());
  }
  return out;
}

absl::StatusOr<LogprobOptions> ResolveLogprobs(int32_t top_logprobs, bool return_token_logprob,
                                               const EngineLimits& limits) {
  if (top_logprobs < 0 || top_logprobs > limits.max_logprobs) {
    return absl::InvalidArgumentError(absl::StrCat("logprobs: must be in [0, ",
                                                   limits.max_logprobs, "], got ",
                                                   top_logprobs, " (max_logprobs)"));
  }
  return LogprobOptions{top_logprobs, return_token_logprob};
}

}  // namespace kiln::engine::sample
