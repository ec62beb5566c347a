// Bounded, strict JSON parsing for model artifacts (config.json, generation_config.json,
// safetensors index files, adapter configs) and typed field getters whose errors name the
// file and the field.
//
// Every parse here is hostile-input safe: the size is capped, the nesting depth is checked by a
// bracket scan BEFORE nlohmann sees the text (so a depth-10^6 document never recurses), the text
// must be valid UTF-8, and duplicate object keys are rejected (nlohmann silently keeps the last
// one, which lets two readers of the same file disagree).
//
// Thread-safety: all functions are reentrant.
// Status codes: INVALID_ARGUMENT for any malformed input (message names `display_name`, the
// field and the offending value), NOT_FOUND when a file is missing, PERMISSION_DENIED when it
// is unreadable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kiln::engine {

struct JsonLimits {
  size_t max_bytes = 16u << 20;  // config files are a few KB; index files up to a few MB
  int max_depth = 64;            // nesting of objects + arrays
};

// Parses `text`. `display_name` (e.g. "config.json") prefixes every error message.
absl::StatusOr<nlohmann::json> ParseJson(std::string_view text, std::string_view display_name,
                                         const JsonLimits& limits = {});

// Reads the regular file at `path` (refusing FIFOs/devices and files over the limit) and
// parses it. `display_name` is used in messages instead of the path, so absolute paths never
// leak.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path,
                                            std::string_view display_name,
                                            const JsonLimits& limits = {});

// Reads a whole regular file of at most `max_bytes` bytes.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, std::string_view display_name,
                                          size_t max_bytes);

// Fails when brackets outside strings nest deeper than `max_depth`. Linear, no recursion.
absl::Status CheckJsonDepth(std::string_view text, int max_depth, std::string_view display_name);

// Fails unless `text` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
absl::Status CheckUtf8(std::string_view text, std::string_view display_name);

// A printable, quoted, length-capped rendering of untrusted text for error messages:
// control bytes and non-ASCII are escaped, so messages never carry NULs or raw binary.
std::string QuoteForMessage(std::string_view s, size_t max_len = 80);

// A short rendering of a JSON value for messages: strings quoted ("\"4096\""), others dumped,
// capped at `max_len`.
std::string JsonValueForMessage(const nlohmann::json& v, size_t max_len = 80);

// Typed, validated access to the members of one JSON object. Getters return nullopt when the
// key is absent or null (transformers writes null for unset optional fields) and
// INVALID_ARGUMENT "<file>: <prefix><key>: expected <what>, got <value>" on a type mismatch.
class JsonFields {
 public:
  // `obj` must outlive this. `prefix` is prepended to keys in messages (e.g. "rope_scaling.").
  JsonFields(const nlohmann::json& obj, std::string_view display_name, std::string prefix = "");

  bool Has(std::string_view key) const;  // present and not null
  const nlohmann::json* Get(std::string_view key) const;  // nullptr when absent

  // Integers must be JSON integers (4096, not 4096.0, "4096" or true).
  absl::StatusOr<std::optional<int64_t>> OptionalInt(std::string_view key) const;
  absl::StatusOr<int64_t> RequiredInt(std::string_view key) const;
  // > 0.
  absl::StatusOr<std::optional<int64_t>> OptionalPositiveInt(std::string_view key) const;
  absl::StatusOr<int64_t> RequiredPositiveInt(std::string_view key) const;
  // Finite numbers (integers accepted).
  absl::StatusOr<std::optional<double>> OptionalNumber(std::string_view key) const;
  absl::StatusOr<std::optional<bool>> OptionalBool(std::string_view key) const;
  absl::StatusOr<std::optional<std::string>> OptionalString(std::string_view key) const;
  // An integer or a list of integers (eos_token_id); empty when absent or null.
  absl::StatusOr<std::vector<int64_t>> IntOrIntList(std::string_view key) const;

  // INVALID_ARGUMENT "<file>: <prefix><key>: <what> (got <value>)".
  absl::Status Invalid(std::string_view key, std::string_view what) const;
  // INVALID_ARGUMENT "<file>: <prefix><key>: expected <what>, got <value>".
  absl::Status TypeError(std::string_view key, std::string_view expected) const;
  std::string FieldName(std::string_view key) const;  // "<prefix><key>"

 private:
  const nlohmann::json& obj_;
  std::string display_name_;
  std::string prefix_;
};

}  // namespace kiln::engine
