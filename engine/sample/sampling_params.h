// Request sampling/stopping parameters: merging and validation.
//
// A Generate request carries optional sampling values (engine/runtime/api_types.h). They are
// merged, field by field, over the model's generation_config.json (GenerationDefaults, filled
// by the runtime) and then over transformers' global defaults
// (GenerationConfig._get_default_generation_params in transformers 5.23):
//
//   do_sample=false, temperature=1.0, top_k=50, top_p=1.0, min_p=unset, repetition_penalty=1.0
//
// One deliberate addition to that precedence: when a request leaves do_sample unset but sets
// temperature, do_sample = (temperature > 0). Clients of OpenAI-style APIs treat temperature
// as the sampling switch; transformers would silently decode greedily (with a warning).
// Temperature 0 is greedy in every case.
//
// Every merged value is validated (NaN and Inf are rejected everywhere); errors are
// INVALID_ARGUMENT and name the parameter, the value and the limit, e.g.
//   "sampling.top_p: must be in (0, 1], got 1.5"
// Values that came from generation_config.json say so in the message.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/api_types.h"
#include "engine/runtime/engine_options.h"

namespace kiln::engine::sample {

// The sampling-related fields of a model's generation_config.json; unset = absent there.
struct GenerationDefaults {
  std::optional<bool> do_sample;
  std::optional<float> temperature;
  std::optional<int32_t> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
};

// Limits enforced on sampling values (also used in messages).
inline constexpr float kMaxTemperature = 100.0f;
inline constexpr float kMaxRepetitionPenalty = 100.0f;
inline constexpr float kMaxAbsPresenceFrequencyPenalty = 2.0f;

// Fully resolved, validated sampling parameters for one request.
struct ResolvedSampling {
  // True when decoding is greedy (do_sample=false or temperature 0). Greedy still applies the
  // repetition/presence/frequency penalties and the min_new_tokens mask (transformers applies
  // "processors" in every mode and "warpers" only when sampling); temperature, top_k, top_p
  // and min_p are then ignored.
  bool greedy = true;
  float temperature = 1.0f;         // (0, 100] when sampling
  int32_t top_k = 0;                // 0 = off; values >= vocab are resolved to 0
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off
  float repetition_penalty = 1.0f;  // 1 = off
  float presence_penalty = 0.0f;    // 0 = off
  float frequency_penalty = 0.0f;   // 0 = off
  std::optional<uint64_t> seed;     // unset: the sampler draws a random seed
};

// Merges `request` over `defaults` over transformers' defaults and validates the result.
// `vocab_size` is the model's output vocabulary (> 0). INVALID_ARGUMENT on any bad value.
absl::StatusOr<ResolvedSampling> ResolveSampling(const SamplingOptions& request,
                                                 const GenerationDefaults& defaults,
                                                 int64_t vocab_size);

// Resolved stopping conditions for one request.
struct ResolvedStopping {
  int32_t max_new_tokens = 0;  // >= 1
  int32_t min_new_tokens = 0;  // <= max_new_tokens
  std::vector<std::string> stop;          // non-empty, valid UTF-8, within the limits
  std::vector<int32_t> stop_token_ids;    // sorted, unique, in [0, vocab)
  std::vector<int32_t> eos_token_ids;     // sorted, unique, in [0, vocab); empty if ignore_eos
  bool ignore_eos = false;

  // The ids that min_new_tokens suppresses (-inf) until reached: eos ∪ stop_token_ids.
  std::vector<int32_t> MinNewTokensSuppressedIds() const;
};

// Validates `request` against `limits` and resolves defaults: max_new_tokens 0 becomes
// min(limits.default_max_new_tokens, limits.max_new_tokens). `model_eos_token_ids` are the
// model's eos ids (generation_config.json eos_token_id, a list); ids outside [0, vocab) are
// dropped (they can never be sampled). The prompt+max_new_tokens budget (max_total_tokens)
// is the runtime's check: it knows the prompt length.
absl::StatusOr<ResolvedStopping> ResolveStopping(const StoppingOptions& request,
                                                 const EngineLimits& limits, int64_t vocab_size,
                                                 std::span<const int32_t> model_eos_token_ids);

struct LogprobOptions {
  int32_t top_logprobs = 0;  // how many alternatives per step, [0, max_logprobs]
  bool return_token_logprob = false;
  bool any() const { return top_logprobs > 0 || return_token_logprob; }
};

// Validates the request's logprob fields ("logprobs" in kiln.v1) against limits.max_logprobs.
absl::StatusOr<LogprobOptions> ResolveLogprobs(int32_t top_logprobs, bool return_token_logprob,
                                               const EngineLimits& limits);

}  // namespace kiln::engine::sample
