// Patterns and split behaviours shared by the Split / Metaspace / Digits pre-tokenizers and the
// Replace normalizer/decoder, with `tokenizers`' semantics: a pattern turns a string into a
// covering list of (range, is_match) pieces; a SplitBehavior decides which ranges survive.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_access.h"
#include "engine/tokenizer/regex.h"

namespace kiln::tokenizer {

struct Piece {
  size_t begin = 0;
  size_t end = 0;
  bool is_match = false;
};

class Pattern {
 public:
  // {"String": "..."} (a literal) or {"Regex": "..."}; `owner` names the component in errors.
  static absl::StatusOr<Pattern> FromJson(const Json& j, absl::string_view path, std::string owner,
                                          RegexLimits limits);
  static Pattern Literal(std::string literal);
  static Pattern CharPredicate(std::function<bool(char32_t)> pred);

  // Covering pieces of `text` in order; an empty text gives one empty non-match piece.
  absl::Status FindMatches(std::string_view text, std::vector<Piece>* out) const;
  // Replaces every match with `content` (NormalizedString::replace).
  absl::StatusOr<std::string> ReplaceAll(std::string_view text, std::string_view content) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
  std::function<bool(char32_t)> pred_;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<SplitBehavior> ParseSplitBehavior(const Json& j, absl::string_view path);

// The ranges that survive `behavior` (may include empty ranges; callers drop those).
std::vector<std::pair<size_t, size_t>> ApplySplitBehavior(std::vector<Piece> pieces,
                                                          SplitBehavior behavior);

}  // namespace kiln::tokenizer
