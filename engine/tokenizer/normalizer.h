// tokenizer.json "normalizer": NFC/NFD/NFKC/NFKD, Lowercase, Prepend, Replace, Strip,
// StripAccents, Sequence. Other types (BertNormalizer, Precompiled, Nmt, ...) are UNIMPLEMENTED.
// Normalizers are immutable after construction and safe to use from several threads.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_access.h"
#include "engine/tokenizer/regex.h"

namespace kiln::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Normalizes `s` (valid UTF-8) in place. Errors: INVALID_ARGUMENT when a regex budget is hit.
  virtual absl::Status Normalize(std::string* s) const = 0;
};

// `path` names the JSON location for errors. A null JSON gives a null normalizer.
absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const Json& j, std::string path,
                                                               RegexLimits limits);

}  // namespace kiln::tokenizer
