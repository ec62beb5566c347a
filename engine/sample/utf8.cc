#include "engine/sample/utf8.h"

#include <cstdint>

namespace kiln::engine::sample {
namespace {

// Decodes one character at text[pos]. Returns its length (1-4) when well-formed; otherwise 0,
// with *valid_prefix set to how many bytes formed a well-formed but incomplete prefix (0 when
// the first byte itself is invalid) and *truncated true when the prefix ran into the end.
size_t DecodeOne(std::string_view text, size_t pos, size_t* valid_prefix, bool* truncated) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(pos);
  *valid_prefix = 0;
  *truncated = false;
  if (b0 < 0x80) return 1;
  size_t len = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlongs
    if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
  } else {
    return 0;
  }
  *valid_prefix = 1;
  for (size_t i = 1; i < len; ++i) {
    if (pos + i >= text.size()) {
      *truncated = true;
      return 0;
    }
    const uint8_t b = byte(pos + i);
    const uint8_t min = i == 1 ? lo : 0x80;
    const uint8_t max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) return 0;
    *valid_prefix = i + 1;
  }
  return len;
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t prefix = 0;
    bool truncated = false;
    const size_t len = DecodeOne(text, pos, &prefix, &truncated);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

size_t CompleteUtf8PrefixLength(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t prefix = 0;
    bool truncated = false;
    const size_t len = DecodeOne(text, pos, &prefix, &truncated);
    if (len > 0) {
      pos += len;
    } else if (truncated) {
      return pos;  // an incomplete character at the end: hold it back
    } else {
      pos += prefix > 0 ? prefix : 1;  // an invalid subsequence stays invalid
    }
  }
  return pos;
}

void AppendSanitizedUtf8(std::string_view text, std::string* out) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  size_t pos = 0;
  while (pos < text.size()) {
    size_t prefix = 0;
    bool truncated = false;
    const size_t len = DecodeOne(text, pos, &prefix, &truncated);
    if (len > 0) {
      out->append(text.substr(pos, len));
      pos += len;
    } else {
      out->append(kReplacement);
      pos += prefix > 0 ? prefix : 1;
    }
  }
}

}  // namespace kiln::engine::sample
