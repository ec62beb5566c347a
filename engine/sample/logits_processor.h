// The logits pipeline: what transformers' generate() does to the model's last-position logits
// before choosing a token, plus OpenAI-style presence/frequency penalties.
//
// Order (transformers 5.23 `_get_logits_processor`; processors first, then warpers, and the
// warpers only when sampling):
//
//   processors (greedy and sampling)
//     1. repetition_penalty   RepetitionPenaltyLogitsProcessor: for every token id present in
//                             prompt + generated (once per id): logit < 0 ? logit * penalty
//                                                                         : logit / penalty
//     2. presence/frequency   not in transformers; vLLM/OpenAI semantics over generated tokens
//                             only: logit -= frequency * count; logit -= presence * (count > 0).
//                             Placed after the repetition penalty and before temperature, as
//                             vLLM's apply_penalties does.
//     3. min_new_tokens       MinNewTokensLengthLogitsProcessor: while fewer than
//                             min_new_tokens tokens were generated, eos ids (and the request's
//                             stop_token_ids, as vLLM's min_tokens) get -inf.
//   warpers (sampling only; greedy takes the argmax after step 3)
//     4. temperature          TemperatureLogitsWarper: logit / temperature (float division)
//     5. top_k                TopKLogitsWarper: remove logits < the k-th largest value (ties
//                             with the k-th value all survive, so more than k may survive)
//     6. top_p                TopPLogitsWarper: in ascending order, remove tokens whose
//                             cumulative probability is <= 1 - top_p; the top token always stays
//     7. min_p                MinPLogitsWarper: remove tokens with prob < min_p * max prob
//
// Numerics: elementwise steps use the same float32 operations as torch, so they are
// bit-identical. top_p/min_p decide membership from probabilities computed here with FastExp
// (vec_math.h, ~1e-7 relative) and double sums; torch uses a float32 softmax and cumsum, so
// the two can differ only for a token whose cumulative probability lies within float
// rounding (~1e-7) of the threshold.
// Ties: torch.sort is unstable, so which of several exactly tied tokens straddling the top-p
// boundary transformers keeps depends on the vector's length. kiln is deterministic: in
// descending order, equal logits are ranked by ascending token id (lower ids survive), as in
// greedy argmax ties.
//
// Cost per step for a vocabulary V: O(V) for the elementwise steps; top_k is one pass with a
// k-element heap (k <= 1024; nth_element above that); one exp per surviving token; top_p
// first tries the 64 most probable tokens (one pass with a 64-element heap) and otherwise
// finds the boundary by quickselect on probability mass (expected O(V)), sorting only the
// last <= 256-token window, then filters by the boundary token in one pass. No step sorts
// the whole vocabulary.
//
// Thread-safety: TokenHistory and LogitsPipeline are per-request and not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/sample/sampling_params.h"

namespace kiln::engine::sample {

// The tokens a request has seen, for the penalties.
class TokenHistory {
 public:
  // Prompt ids outside [0, vocab_size) are ignored (they can never be sampled; transformers
  // drops them the same way).
  TokenHistory(int64_t vocab_size, std::span<const int32_t> prompt_token_ids);

  // Records one generated token (ids outside the vocabulary are ignored).
  void Append(int32_t token_id);

  int32_t num_generated() const { return num_generated_; }
  // Distinct ids of prompt + generated, in first-seen order.
  const std::vector<int32_t>& unique_tokens() const { return unique_; }
  // Distinct generated ids with their counts, in first-generated order.
  struct Count {
    int32_t id;
    int32_t count;
  };
  const std::vector<Count>& generated_counts() const { return generated_; }

 private:
  void MarkSeen(int32_t token_id);

  int64_t vocab_size_;
  int32_t num_generated_ = 0;
  std::vector<bool> seen_;  // [vocab]
  std::vector<int32_t> unique_;
  std::vector<Count> generated_;
  absl::flat_hash_map<int32_t, size_t> generated_slot_;  // id -> index into generated_
};

// A token that survived the warpers: its processed (post-temperature) logit and its
// unnormalized probability exp(logit - max logit) (expf; the most probable token always
// survives, so the max is the same at every stage).
struct Candidate {
  float logit;
  int32_t id;
  float weight;
};

class LogitsPipeline {
 public:
  LogitsPipeline(const ResolvedSampling& sampling, int32_t min_new_tokens,
                 std::vector<int32_t> min_new_tokens_suppressed_ids);

  bool greedy() const { return sampling_.greedy; }

  // Steps 1-3 in place. `logits` is [vocab]; every value finite or -inf.
  void ApplyProcessors(std::span<float> logits, const TokenHistory& history) const;

  // Steps 4-7 (call only when !greedy()): temperature in place over `logits` ([vocab]), then
  // fills `kept` with the surviving tokens (finite processed logits) sorted by id. The
  // logits of removed tokens are not rewritten (that would cost O(V) for nothing).
  void ApplyWarpers(std::span<float> logits, std::vector<Candidate>* kept);

  // The whole pipeline, materialized: after it `logits` holds exactly what transformers'
  // LogitsProcessorList returns (-inf for removed tokens). For tests and debugging.
  void Process(std::span<float> logits, const TokenHistory& history);

 private:
  float TopKThreshold(std::span<const float> logits, size_t k);
  // Both filter `candidates` in place and keep their (id) order.
  void TopP(std::vector<Candidate>* candidates, double total);
  // top_p without top_k, when the boundary lies within the 64 most probable tokens (the
  // usual case for a trained model): fills `kept` without materializing every candidate.
  // Returns false (and leaves `kept` to be rebuilt) when the boundary lies further.
  bool TopPFromHead(std::span<const float> logits, std::vector<Candidate>* kept);
  float TopPThreshold() const;
  void MinP(std::vector<Candidate>* candidates) const;

  ResolvedSampling sampling_;
  int32_t min_new_tokens_;
  std::vector<int32_t> suppressed_ids_;
  std::vector<float> scratch_;                // [vocab] for top_k selection
  std::vector<Candidate> kept_scratch_;       // for Process
  std::vector<Candidate> rank_scratch_;       // TopP's ranked copy
};

}  // namespace kiln::engine::sample
