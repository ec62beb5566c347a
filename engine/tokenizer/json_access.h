// Non-throwing accessors over nlohmann::json for tokenizer.json / tokenizer_config.json, and a
// depth pre-scan so that a deeply nested file is rejected before nlohmann recurses into it.
// Every error is INVALID_ARGUMENT naming the JSON path ("model.vocab", "pre_tokenizer.pattern").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace kiln::tokenizer {

using Json = nlohmann::json;

// Parses `text` (named `what` in errors) after checking its size and nesting depth.
absl::StatusOr<Json> ParseJsonBounded(std::string_view text, absl::string_view what,
                                      size_t max_bytes, int max_depth);

// The member `key` of object `j`, or nullptr when absent or null.
const Json* Member(const Json& j, absl::string_view key);

// Typed getters: absent/null gives `fallback`; a present value of the wrong type is an error.
absl::StatusOr<bool> GetBool(const Json& j, absl::string_view key, absl::string_view path,
                             bool fallback);
absl::StatusOr<std::string> GetString(const Json& j, absl::string_view key, absl::string_view path,
                                      std::string fallback);
absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& j, absl::string_view key,
                                                             absl::string_view path);
absl::StatusOr<int64_t> GetInt(const Json& j, absl::string_view key, absl::string_view path,
                               int64_t fallback);

// The required string member "type" of a component object.
absl::StatusOr<std::string> GetType(const Json& j, absl::string_view path);

}  // namespace kiln::tokenizer
