// tokenizer.json "post_processor" for single sequences: TemplateProcessing, BertProcessing,
// RobertaProcessing, ByteLevel (offsets only: no effect on ids), Sequence. Applied only when
// Encode is called with add_special_tokens. Immutable; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_access.h"

namespace kiln::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Rewrites `ids` (one encoded sequence) with the special tokens of the single-sequence template.
  virtual void Process(std::vector<int32_t>* ids) const = 0;
};

// `token_exists(id)` says whether an id names a token; template ids that do not are rejected
// with INVALID_ARGUMENT (a BOS id out of range must never reach the model).
absl::StatusOr<std::unique_ptr<PostProcessor>> PostProcessorFromJson(
    const Json& j, std::string path, const std::function<bool(int64_t)>& token_exists);

}  // namespace kiln::tokenizer
