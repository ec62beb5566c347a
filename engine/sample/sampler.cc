#include "engine/sample/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/sample/vec_math.h"

namespace kiln::engine::sample {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t RandomSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ static_cast<uint64_t>(device());
}

}  // namespace

Sampler::Sampler(const ResolvedSampling& sampling, const ResolvedStopping& stopping,
                 const LogprobOptions& logprobs, int64_t vocab_size,
                 std::span<const int32_t> prompt_token_ids)
    : vocab_size_(vocab_size),
      logprob_options_(logprobs),
      seed_(sampling.seed.has_value() ? *sampling.seed : RandomSeed()),
      rng_(seed_),
      history_(vocab_size, prompt_token_ids),
      pipeline_(sampling, stopping.min_new_tokens, stopping.MinNewTokensSuppressedIds()) {}

absl::Status Sampler::CheckLogits(std::span<const float> logits) const {
  if (static_cast<int64_t>(logits.size()) != vocab_size_) {
    return absl::InternalError(absl::StrCat("sampling: got ", logits.size(),
                                            " logits for a vocabulary of ", vocab_size_));
  }
  // -inf is a legitimate mask (e.g. padded vocabulary rows); NaN and +inf are not.
  const int64_t bad = FindNanOrPosInf(logits);
  if (bad >= 0) {
    return absl::InternalError(
        absl::StrCat("sampling: logit of token ", bad, " is ", logits[bad], " (model output)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> Sampler::Greedy(std::span<const float> processed) const {
  const int64_t best = ArgMax(processed);  // ties: the lowest id
  if (best < 0) {
    return absl::FailedPreconditionError(
        "sampling: every token is masked (min_new_tokens suppresses all of them)");
  }
  return static_cast<int32_t>(best);
}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

absl::StatusOr<int32_t> Sampler::Draw(std::span<float> processed) {
  pipeline_.ApplyWarpers(processed, &kept_);
  if (kept_.empty()) {
    return absl::FailedPreconditionError(
        "sampling: every token is masked (min_new_tokens suppresses all of them)");
  }
  double total = 0;
  for (const Candidate& c : kept_) total += c.weight;
  // One draw per step, even when a single token survives, so the random stream advances the
  // same way whatever the filters kept.
  const double target = Uniform() * total;
  double cumulative = 0;
  for (const Candidate& c : kept_) {
    cumulative += c.weight;
    if (target < cumulative) return c.id;
  }
  // Rounding put the target at the very end: the last token with any weight.
  for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {
    if (it->weight > 0.0f) return it->id;
  }
  return kept_.back().id;
}

TokenLogprobs Sampler::Logprobs(std::span<const float> raw, int32_t token_id) const {
  const float max_logit = MaxValue(raw);  // finite: CheckLogits and Sample ran first
  const double log_normalizer =
      static_cast<double>(max_logit) + std::log(SumExpShifted(raw, max_logit));
  const auto logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(raw[id]) - log_normalizer);
  };

  TokenLogprobs out;
  out.sampled.token_id = token_id;
  out.sampled.logprob = logprob(token_id);
  const size_t n = static_cast<size_t>(logprob_options_.top_logprobs);
  if (n > 0) {
    // A bounded heap whose front is the worst of the best n so far: O(V log n).
    const auto better = [&](int32_t a, int32_t b) {
      return raw[a] > raw[b] || (raw[a] == raw[b] && a < b);
    };
    std::vector<int32_t> heap;
    heap.reserve(n + 1);
    for (size_t i = 0; i < raw.size(); ++i) {
      const auto id = static_cast<int32_t>(i);
      if (heap.size() < n) {
        heap.push_back(id);
        std::push_heap(heap.begin(), heap.end(), better);
      } else if (better(id, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.back() = id;
        std::push_heap(heap.begin(), heap.end(), better);
      }
    }
    std::sort(heap.begin(), heap.end(), better);
    for (const int32_t id : heap) out.top.push_back({id, logprob(id), {}});
  }
  return out;
}

absl::StatusOr<SampleResult> Sampler::Sample(std::span<const float> logits) {
  KILN_RETURN_IF_ERROR(CheckLogits(logits));
  work_.assign(logits.begin(), logits.end());
  pipeline_.ApplyProcessors(work_, history_);
  SampleResult result;
  if (pipeline_.greedy()) {
    KILN_ASSIGN_OR_RETURN(result.token_id, Greedy(work_));
  } else {
    KILN_ASSIGN_OR_RETURN(result.token_id, Draw(work_));
  }
  if (logprob_options_.any()) result.logprobs = Logprobs(logits, result.token_id);
  history_.Append(result.token_id);
  return result;
}

}  // namespace kiln::engine::sample
