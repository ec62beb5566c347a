// tokenizer.json "pre_tokenizer": ByteLevel, Split, Metaspace, Digits, Sequence (others are
// UNIMPLEMENTED). A pre-tokenizer refines a list of splits; the model then encodes each split.
// Immutable after construction; safe to use from several threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_access.h"
#include "engine/tokenizer/regex.h"

namespace kiln::tokenizer {

struct PreSplit {
  std::string text;  // normalized text of this split
  // True when the split starts at offset 0 of the original input (Metaspace prepend_scheme
  // "first" prepends only there).
  bool at_origin = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `splits` by their refinement; empty splits are dropped. INVALID_ARGUMENT when a
  // regex exceeds its matching budget.
  virtual absl::Status PreTokenize(std::vector<PreSplit>* splits) const = 0;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const Json& j, std::string path,
                                                                   RegexLimits limits);

// The GPT-2 pre-tokenization regex used by ByteLevel(use_regex=true).
inline constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace kiln::tokenizer
