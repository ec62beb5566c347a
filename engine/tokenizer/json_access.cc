#include "engine/tokenizer/json_access.h"

#include "absl/strings/str_cat.h"

namespace kiln::tokenizer {
namespace {

// Maximum nesting depth of `text`, counting brackets outside string literals.
int MaxDepth(std::string_view text, int stop_at) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) max_depth = depth;
      if (max_depth > stop_at) return max_depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace

absl::StatusOr<Json> ParseJsonBounded(std::string_view text, absl::string_view what,
                                      size_t max_bytes, int max_depth) {
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is ", text.size(),
                                                   " bytes, over the limit of ", max_bytes,
                                                   " (max_json_bytes)"));
  }
  const int depth = MaxDepth(text, max_depth);
  if (depth > max_depth) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " nests deeper than the limit of ", max_depth,
                     " levels (JSON nesting depth, max_json_depth)"));
  }
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON"));
  }
  return j;
}

const Json* Member(const Json& j, absl::string_view key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(std::string(key));
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<bool> GetBool(const Json& j, absl::string_view key, absl::string_view path,
                             bool fallback) {
  const Json* v = Member(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".", key, " must be a boolean"));
  }
  return v->get<bool>();
}

absl::StatusOr<std::string> GetString(const Json& j, absl::string_view key, absl::string_view path,
                                      std::string fallback) {
  const Json* v = Member(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".", key, " must be a string"));
  }
  return v->get_ref<const std::string&>();
}

absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& j, absl::string_view key,
                                                             absl::string_view path) {
  const Json* v = Member(j, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".", key, " must be a string or null"));
  }
  return std::optional<std::string>(v->get_ref<const std::string&>());
}

absl::StatusOr<int64_t> GetInt(const Json& j, absl::string_view key, absl::string_view path,
                               int64_t fallback) {
  const Json* v = Member(j, key);
  if (v == nullptr) return fallback;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".", key, " is out of range"));
    }
    return static_cast<int64_t>(u);
  }
  if (!v->is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".", key, " must be an integer"));
  }
  return v->get<int64_t>();
}

absl::StatusOr<std::string> GetType(const Json& j, absl::string_view path) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " must be an object"));
  }
  const Json* t = Member(j, "type");
  if (t == nullptr || !t->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".type must be a string"));
  }
  return t->get_ref<const std::string&>();
}

}  // namespace kiln::tokenizer
