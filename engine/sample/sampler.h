// Sampler: per-request token selection from the model's last-position logits.
//
//   Sampler sampler(sampling, stopping, logprob_options, vocab_size, prompt_ids);
//   each step:  KILN_ASSIGN_OR_RETURN(SampleResult r, sampler.Sample(logits));  // [vocab]
//
// Sample() runs the LogitsPipeline (logits_processor.h), picks a token and records it in the
// request's TokenHistory (so penalties and min_new_tokens see it next step).
//
// Greedy: argmax of the processed logits; ties go to the lowest id (as torch.argmax).
// Sampling: inverse CDF over the surviving tokens in ascending token-id order, with weights
// exp(logit - max) (FastExp) summed in double, and a uniform u in [0, 1) made from the top
// 53 bits of a std::mt19937_64 draw (mt19937_64's output sequence is fixed by the C++ standard; the
// standard distributions are not, so none is used). Same seed + same logits = same tokens on
// every platform. An unseeded request gets a seed from std::random_device; seed() reports it.
//
// Logprobs are log_softmax of the RAW model logits (before penalties, temperature and
// filtering), as vLLM returns by default; top-n alternatives are the n highest raw logits,
// ties by lower id. TokenLogprob::text is left empty for the runtime's detokenizer.
//
// Errors: INTERNAL when `logits` has the wrong size or contains NaN/+Inf (a model or kernel
// bug); FAILED_PRECONDITION when every token is masked (e.g. min_new_tokens over a vocabulary
// made only of eos ids).
//
// Thread-safety: not thread-safe; owned by the request on the model's step-loop thread.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/api_types.h"
#include "engine/sample/logits_processor.h"
#include "engine/sample/sampling_params.h"

namespace kiln::engine::sample {

struct SampleResult {
  int32_t token_id = 0;
  std::optional<TokenLogprobs> logprobs;  // set when LogprobOptions::any()
};

class Sampler {
 public:
  Sampler(const ResolvedSampling& sampling, const ResolvedStopping& stopping,
          const LogprobOptions& logprobs, int64_t vocab_size,
          std::span<const int32_t> prompt_token_ids);

  // Chooses the next token from `logits` ([vocab], the model's fp32 output for the last
  // position) and records it. See the header comment for errors.
  absl::StatusOr<SampleResult> Sample(std::span<const float> logits);

  uint64_t seed() const { return seed_; }
  const TokenHistory& history() const { return history_; }

 private:
  absl::Status CheckLogits(std::span<const float> logits) const;
  absl::StatusOr<int32_t> Greedy(std::span<const float> processed) const;
  absl::StatusOr<int32_t> Draw(std::span<float> processed);
  TokenLogprobs Logprobs(std::span<const float> raw, int32_t token_id) const;
  double Uniform();  // [0, 1)

  int64_t vocab_size_;
  LogprobOptions logprob_options_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  TokenHistory history_;
  LogitsPipeline pipeline_;
  std::vector<float> work_;          // [vocab] processed logits
  std::vector<Candidate> kept_;      // survivors of the warpers
};

}  // namespace kiln::engine::sample
