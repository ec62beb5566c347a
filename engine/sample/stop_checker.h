// StopChecker: when a request stops, and which text is safe to stream meanwhile.
//
// Fed once per generated token with that token's text delta (from the streaming
// detokenizer), it decides, in this order:
//   1. token stops: an eos id (unless ignore_eos) → kEos; a stop_token_id → kStop. The
//      token's text is not emitted.
//   2. stop strings, matched on the output text across token boundaries → kStop; the output
//      ends right before the stop string (which is not emitted).
//   3. max_new_tokens reached → kLength (the token's text is emitted).
// While fewer than min_new_tokens tokens have been generated, 1 and 2 are suppressed: a token
// numbered n (1-based) can stop only when n > min_new_tokens, and a stop string matches only
// within text produced by such tokens (text produced earlier is emitted at once and never
// retracted, so a stop string never reaches back into it).
//
// Holding back: the text returned by Append is final. Any suffix that could still become the
// start of a stop string is held until it either completes a stop string (dropped) or stops
// matching (released); an incomplete trailing UTF-8 character is held until it completes.
// Emitted text is always whole, valid UTF-8 (invalid bytes become U+FFFD).
//
// Overlapping stop strings: the match that ENDS first in the text wins (ties: the one that
// starts first). This is what a byte-by-byte stream would see, so the result does not depend
// on how the text was split into tokens: with stops "ab" and "abc", "xabc" stops at "ab".
//
// Thread-safety: not thread-safe; owned by the request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "engine/runtime/api_types.h"
#include "engine/sample/sampling_params.h"

namespace kiln::engine::sample {

struct StopUpdate {
  std::string text;  // safe to emit now (may be empty)
  std::optional<FinishReason> finish;
  std::string matched_stop;                     // the stop string, when a stop string matched
  std::optional<int32_t> matched_stop_token_id; // the id, on a stop_token_ids stop
};

class StopChecker {
 public:
  explicit StopChecker(ResolvedStopping stopping);

  // Records generated token `token_id` whose detokenized text is `text_delta` and returns
  // what to emit. After a finish, further calls return an empty update with the same finish.
  // A token that ends the request (StopsOn: eos or a stop id) contributes no text of its own:
  // the caller does not push it to the detokenizer and passes as `text_delta` what the
  // detokenizer still held for the earlier tokens (Detokenizer::Flush), which is emitted, so
  // the streamed text equals the decode of the generated ids without the final eos/stop id.
  StopUpdate Append(int32_t token_id, std::string_view text_delta);

  // True when Append(token_id, ...) would finish the request because of the id itself (eos
  // or a stop_token_ids entry, once min_new_tokens is reached).
  bool StopsOn(int32_t token_id) const;

  // Releases held text when generation ends for another reason (cancel, deadline): whatever
  // is pending is emitted, an incomplete trailing character as U+FFFD.
  std::string Flush();

  int32_t num_generated() const { return num_generated_; }
  bool finished() const { return finish_.has_value(); }

 private:
  bool IsEos(int32_t token_id) const;
  bool IsStopToken(int32_t token_id) const;
  // Emits what is safe of pending_ into `out`, keeping the rest pending.
  void Release(std::string* out);

  ResolvedStopping stopping_;
  size_t max_stop_bytes_ = 0;
  int32_t num_generated_ = 0;
  std::string pending_;  // produced but not yet emitted
  std::optional<FinishReason> finish_;
};

}  // namespace kiln::engine::sample
