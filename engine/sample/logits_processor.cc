#include "engine/sample/logits_processor.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>

#include "engine/sample/vec_math.h"

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

float LogitsPipeline::TopKThreshold(std::span<const float> logits, size_t k) {
  if (k <= 1024) {
    // A min-heap of the k largest so far: in practice almost every logit fails the first
    // comparison, so this is one pass.
    scratch_.assign(logits.begin(), logits.begin() + static_cast<std::ptrdiff_t>(k));
    std::make_heap(scratch_.begin(), scratch_.end(), std::greater<float>());
    for (size_t i = k; i < logits.size(); ++i) {
      if (logits[i] > scratch_.front()) {
        std::pop_heap(scratch_.begin(), scratch_.end(), std::greater<float>());
        scratch_.back() = logits[i];
        std::push_heap(scratch_.begin(), scratch_.end(), std::greater<float>());
      }
    }
    return scratch_.front();
  }
  scratch_.assign(logits.begin(), logits.end());
  std::nth_element(scratch_.begin(), scratch_.begin() + static_cast<std::ptrdiff_t>(k - 1),
                   scratch_.end(), std::greater<float>());
  return scratch_[k - 1];
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
  const size_t k = static_cast<size_t>(std::max(sampling_.top_k, 0));
  const bool top_k_on = k > 0 && k < vocab;
  const bool top_p_on = sampling_.top_p < 1.0f;
  if (top_p_on && !top_k_on && TopPFromHead(logits, kept)) {
    if (sampling_.min_p > 0.0f) MinP(kept);
    std::sort(kept->begin(), kept->end(), ById);
    return;
  }
  const float threshold = top_k_on ? TopKThreshold(logits, k) : kNegInf;
  kept->clear();
  float max_logit = kNegInf;
  for (size_t i = 0; i < vocab; ++i) {
    const float x = logits[i];
    if (x > kNegInf && x >= threshold) {
      kept->push_back({x, static_cast<int32_t>(i), 0.0f});
      max_logit = std::max(max_logit, x);
    }
  }
  if (kept->empty()) return;
  double total = 0;
  for (Candidate& c : *kept) {
    c.weight = FastExp(c.logit - max_logit);
    total += c.weight;
  }

  if (top_p_on) TopP(kept, total);
  if (sampling_.min_p > 0.0f) MinP(kept);
}

float LogitsPipeline::TopPThreshold() const {
  // transformers compares a float32 cumsum with float32(1 - top_p), top_p a Python float.
  return static_cast<float>(1.0 - static_cast<double>(sampling_.top_p));
}

bool LogitsPipeline::TopPFromHead(std::span<const float> logits, std::vector<Candidate>* kept) {
  const float max_logit = MaxValue(logits);
  if (max_logit == kNegInf) return false;
  const double total = SumExpShifted(logits, max_logit);
  // The kHead most probable tokens, by one pass with a heap whose front is the least probable
  // of them (almost every token fails the first comparison).
  constexpr size_t kHead = 64;
  kept->clear();
  size_t num_finite = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float x = logits[i];
    if (!(x > kNegInf)) continue;
    ++num_finite;
    const Candidate c{x, static_cast<int32_t>(i), 0.0f};
    if (kept->size() < kHead) {
      kept->push_back(c);
      std::push_heap(kept->begin(), kept->end(), Before);
    } else if (Before(c, kept->front())) {
      std::pop_heap(kept->begin(), kept->end(), Before);
      kept->back() = c;
      std::push_heap(kept->begin(), kept->end(), Before);
    }
  }
  std::sort(kept->begin(), kept->end(), Before);
  const float threshold = TopPThreshold();
  double above = 0;
  for (size_t r = 0; r < kept->size(); ++r) {
    Candidate& c = (*kept)[r];
    if (r > 0 && static_cast<float>((total - above) / total) <= threshold) {
      kept->resize(r);
      return true;
    }
    c.weight = FastExp(c.logit - max_logit);
    above += c.weight;
  }
  return kept->size() == num_finite;  // else the boundary lies beyond the head
}

void LogitsPipeline::TopP(std::vector<Candidate>* candidates, double total) {
  // Rank a copy; `candidates` keeps its id order and is filtered at the end (sorting the
  // survivors back into id order would cost O(n log n) on a flat distribution).
  std::vector<Candidate>& c = rank_scratch_;
  c.assign(candidates->begin(), candidates->end());
  const size_t n = c.size();
  // Token r (0-based, most probable first) has ascending cumulative probability
  // (total - above_r) / total, where above_r is the mass ranked before it; it is removed when
  // that is <= threshold. The first such r (r >= 1) is the number of survivors; the
  // predicate is monotone in r, which the searches below rely on.
  const float threshold = TopPThreshold();
  const auto removed = [&](double above) {
    return static_cast<float>((total - above) / total) <= threshold;
  };
  const auto at = [&](size_t i) { return c.begin() + static_cast<std::ptrdiff_t>(i); };
  const auto mass = [&](size_t from, size_t to) {
    double m = 0;
    for (size_t i = from; i < to; ++i) m += c[i].weight;
    return m;
  };
  // Invariant: the answer r* lies in (lo, hi]; [0, lo) precedes [lo, hi) precedes [hi, n) in
  // rank order; above_lo is the mass of [0, lo). removed(total) holds, so r* <= n.
  size_t lo = 0, hi = n;
  double above_lo = 0;
  // Real distributions put the top_p mass in a few tokens: try the 64 most probable first.
  const size_t first = std::min<size_t>(n, 64);
  if (first < n) std::nth_element(c.begin(), at(first), c.end(), Before);
  const double first_mass = mass(0, first);
  if (first == n || removed(first_mass)) {
    hi = first;
  } else {
    lo = first;
    above_lo = first_mass;
  }
  // Otherwise quickselect on mass: expected O(n) instead of a full sort.
  while (hi - lo > 256) {
    const size_t mid = lo + (hi - lo) / 2;
    std::nth_element(at(lo), at(mid), at(hi), Before);
    const double m = mass(lo, mid);
    if (removed(above_lo + m)) {
      hi = mid;
    } else {
      lo = mid;
      above_lo += m;
    }
  }
  std::sort(at(lo), at(hi), Before);
  size_t keep = hi;
  double above = above_lo;
  for (size_t r = lo; r < hi; ++r) {
    if (r > 0 && removed(above)) {
      keep = r;
      break;
    }
    above += c[r].weight;
  }
  if (keep == n) return;
  // Survivors are exactly the tokens ranked at or before the last one kept.
  const Candidate last = c[keep - 1];
  std::erase_if(*candidates, [&](const Candidate& x) { return Before(last, x); });
}

void LogitsPipeline::MinP(std::vector<Candidate>* candidates) const {
  std::vector<Candidate>& c = *candidates;
  double sum = 0;
  for (const Candidate& x : c) sum += x.weight;
  // As torch: probs = exp(x - max) * (1 / sum); the top prob is exp(0) * (1 / sum).
  const float inv_sum = static_cast<float>(1.0 / sum);
  const float scaled_min_p = sampling_.min_p * inv_sum;
  std::erase_if(c, [&](const Candidate& x) { return x.weight * inv_sum < scaled_min_p; });
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
