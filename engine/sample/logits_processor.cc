#include "engine/sample/logits_processor.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>

namespace kiln::engine::sample {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Descending by logit, ties by ascending id: the order in which tokens are "most probable".
bool Before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

bool ById(const Candidate& a, const Candidate& b) { return a.id < b.id; }

}  // namespace

TokenHistory::TokenHistory(int64_t vocab_size, std::span<const int32_t> prompt_token_ids)
    : vocab_size_(vocab_size), seen_(static_cast<size_t>(std::max<int64_t>(vocab_size, 0))) {
  for (const int32_t id : prompt_token_ids) MarkSeen(id);
}

void TokenHistory::MarkSeen(int32_t token_id) {
  if (token_id < 0 || token_id >= vocab_size_) return;
  if (seen_[token_id]) return;
  seen_[token_id] = true;
  unique_.push_back(token_id);
}

void TokenHistory::Append(int32_t token_id) {
  ++num_generated_;
  if (token_id < 0 || token_id >= vocab_size_) return;
  MarkSeen(token_id);
  const auto [it, inserted] = generated_slot_.try_emplace(token_id, generated_.size());
  if (inserted) {
    generated_.push_back({token_id, 1});
  } else {
    ++generated_[it->second].count;
  }
}

LogitsPipeline::LogitsPipeline(const ResolvedSampling& sampling, int32_t min_new_tokens,
                               std::vector<int32_t> min_new_tokens_suppressed_ids)
    : sampling_(sampling),
      min_new_tokens_(min_new_tokens),
      suppressed_ids_(std::move(min_new_tokens_suppressed_ids)) {}

void LogitsPipeline::ApplyProcessors(std::span<float> logits, const TokenHistory& history) const {
  const auto vocab = static_cast<int64_t>(logits.size());
  const float penalty = sampling_.repetition_penalty;
  if (penalty != 1.0f) {
    for (const int32_t id : history.unique_tokens()) {
      if (id >= vocab) continue;
      float& x = logits[id];
      x = x < 0.0f ? x * penalty : x / penalty;
    }
  }
  const float frequency = sampling_.frequency_penalty;
  const float presence = sampling_.presence_penalty;
  if (frequency != 0.0f || presence != 0.0f) {
    for (const TokenHistory::Count& c : history.generated_counts()) {
      if (c.id >= vocab) continue;
      float& x = logits[c.id];
      // Two float subtractions, as vLLM's apply_penalties.
      x -= frequency * static_cast<float>(c.count);
      x -= presence;
    }
  }
  if (history.num_generated() < min_new_tokens_) {
    for (const int32_t id : suppressed_ids_) {
      if (id < vocab) logits[id] = kNegInf;
    }
  }
}

void LogitsPipeline::ApplyWarpers(std::span<float> logits, std::vector<Candidate>* kept) {
  const size_t vocab = logits.size();
  kept->clear();
  if (sampling_.temperature != 1.0f) {
    const float t = sampling_.temperature;
    for (float& x : logits) x /= t;
  }

  // top_k: every token whose logit is >= the k-th largest survives (transformers removes
  // `scores < topk(scores, k)[-1]`).
  float threshold = kNegInf;
  const size_t k = static_cast<size_t>(std::max(sampling_.top_k, 0));
  const bool top_k_on = k > 0 && k < vocab;
  if (top_k_on) {
    scratch_.assign(logits.begin(), logits.end());
    std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<std::ptrdiff_t>(k - 1),
                     scratch_.end(), std::greater<float>());
    threshold = scratch_[k - 1];
  }
  for (size_t i = 0; i < vocab; ++i) {
    const float x = logits[i];
    if (x > kNegInf && x >= threshold) kept->push_back({x, static_cast<int32_t>(i)});
  }
  if (kept->empty()) return;

  if (sampling_.top_p < 1.0f) TopP(kept);
  if (sampling_.min_p > 0.0f) MinP(kept);
  std::sort(kept->begin(), kept->end(), ById);
}

void LogitsPipeline::TopP(std::vector<Candidate>* candidates) const {
  std::vector<Candidate>& c = *candidates;
  const size_t n = c.size();
  // transformers compares a float32 cumsum with float32(1 - top_p), top_p a Python float.
  const float threshold = static_cast<float>(1.0 - static_cast<double>(sampling_.top_p));
  float max_logit = kNegInf;
  for (const Candidate& x : c) max_logit = std::max(max_logit, x.logit);
  double total = 0;
  for (const Candidate& x : c) total += std::exp(x.logit - max_logit);

  // Walk tokens from the most probable down, keeping a sorted prefix that grows geometrically:
  // real distributions put the top_p mass in a few tokens, so this rarely sorts much.
  size_t sorted = 0;
  const auto extend = [&](size_t want) {
    want = std::min(want, n);
    const auto first = c.begin() + static_cast<std::ptrdiff_t>(sorted);
    const auto nth = c.begin() + static_cast<std::ptrdiff_t>(want);
    if (want < n) std::nth_element(first, nth, c.end(), Before);
    std::sort(first, nth, Before);
    sorted = want;
  };
  double above = 0;  // mass of the tokens ranked before r
  size_t keep = n;
  for (size_t r = 0; r < n; ++r) {
    if (r == sorted) extend(std::max<size_t>(64, sorted * 4));
    // The ascending cumulative probability of token r is the mass ranked at or after r.
    if (r > 0 && static_cast<float>((total - above) / total) <= threshold) {
      keep = r;
      break;
    }
    above += std::exp(c[r].logit - max_logit);
  }
  if (keep < n) {
    // Only the prefix [0, keep) is known to be the top tokens; it is what survives.
    c.resize(keep);
  }
}

void LogitsPipeline::MinP(std::vector<Candidate>* candidates) const {
  std::vector<Candidate>& c = *candidates;
  float max_logit = kNegInf;
  for (const Candidate& x : c) max_logit = std::max(max_logit, x.logit);
  double sum = 0;
  for (const Candidate& x : c) sum += std::exp(x.logit - max_logit);
  // As torch: probs = exp(x - max) * (1 / sum); the top prob is exp(0) * (1 / sum).
  const float inv_sum = static_cast<float>(1.0 / sum);
  const float scaled_min_p = sampling_.min_p * inv_sum;
  std::erase_if(c, [&](const Candidate& x) {
    return std::exp(x.logit - max_logit) * inv_sum < scaled_min_p;
  });
}

void LogitsPipeline::Process(std::span<float> logits, const TokenHistory& history) {
  ApplyProcessors(logits, history);
  if (sampling_.greedy) return;
  ApplyWarpers(logits, &kept_scratch_);
  size_t next = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (next < kept_scratch_.size() && kept_scratch_[next].id == static_cast<int32_t>(i)) {
      ++next;
    } else {
      logits[i] = kNegInf;
    }
  }
}

}  // namespace kiln::engine::sample
