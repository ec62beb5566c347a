// Incremental detokenization for streamed generation, after text-generation-inference's
// prefix-offset / read-offset method: each Push decodes only a small window of recent tokens and
// emits the text the newest tokens add, holding back output while it ends in U+FFFD (an
// unfinished UTF-8 character) or inside a run of <0xXX> byte-fallback tokens.
//
// Invariant: the concatenation of every Push delta and the final Flush equals
// tokenizer.Decode(all ids, skip_special_tokens). Each delta is valid UTF-8. It holds whenever
// fewer than kMaxHeldTokens consecutive tokens leave the text unfinished; past that the
// detokenizer emits what it has (bounding work per token) and a later completion of a character
// cut there could then decode differently. Not for decoders with clean_up_tokenization_spaces.
//
// Cost: O(window) per token (the window is the tokens since the last emission plus the
// previous emission's tokens), not O(sequence).
//
// Thread-safety: not thread-safe (one per sequence, owned by the step loop). The Tokenizer must
// outlive it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::tokenizer {

class StreamingDetokenizer {
 public:
  static constexpr size_t kMaxHeldTokens = 64;

  StreamingDetokenizer(const Tokenizer* tokenizer, bool skip_special_tokens);

  // Adds one generated id; returns the new text (possibly empty). Errors only when the decoder
  // itself fails (INVALID_ARGUMENT from a Replace regex budget).
  absl::StatusOr<std::string> Push(int32_t id);
  // Returns whatever is still held back (at the end of generation).
  absl::StatusOr<std::string> Flush();

 private:
  absl::StatusOr<std::string> DecodeRange(size_t begin, size_t end) const;
  absl::StatusOr<std::string> EmitUpTo(size_t end, bool force);
  bool IsByteToken(const std::string& token) const;

  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  bool byte_fallback_;
  // Kept token strings; tokens before prefix_offset_ are dropped and offsets rebased.
  std::vector<std::string> tokens_;
  size_t prefix_offset_ = 0;
  size_t read_offset_ = 0;
  std::string prefix_text_;  // DecodeRange(prefix_offset_, read_offset_)
};

}  // namespace kiln::tokenizer
