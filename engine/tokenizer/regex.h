// A PCRE2 regex (UTF + UCP, JIT when available) with a bounded amount of work per match, so a
// hostile tokenizer.json pattern (nested quantifiers, tokenizers PR #2060) cannot hang encode.
//
// Thread-safety: a compiled Regex is immutable; FindAll may be called concurrently (each call
// uses its own match data; the JIT stack is per thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::tokenizer {

struct RegexLimits {
  uint32_t match_limit = 10'000'000;  // pcre2_set_match_limit, per match attempt
  uint32_t depth_limit = 100'000;     // pcre2_set_depth_limit (interpreter backtracking depth)
};

class Regex {
 public:
  // `owner` names the component for error messages, e.g. "pre_tokenizer Split". Returns
  // INVALID_ARGUMENT (with PCRE2's message and offset) when the pattern does not compile.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern,
                                                        std::string owner, RegexLimits limits);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [start, end) byte ranges of successive non-overlapping matches in `text`
  // (valid UTF-8), with the empty-match rule of Rust's and Oniguruma's find_iter: an empty match
  // right after the previous match is skipped. A match or depth limit hit returns
  // INVALID_ARGUMENT naming the owner and the pattern.
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string pattern_;
  std::string owner_;
};

}  // namespace kiln::tokenizer
