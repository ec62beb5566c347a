// UTF-8 and Unicode helpers for the tokenizer, matching the Rust semantics `tokenizers` relies
// on (char::is_whitespace, char::is_numeric, String::from_utf8_lossy, unicode-normalization).
// Unicode data comes from utf8proc (Debian libutf8proc-dev). All functions are thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiln::tokenizer {

// Decodes the code point starting at s[*pos] and advances *pos. `s` must be valid UTF-8
// (callers validate inputs once with IsValidUtf8).
char32_t NextCodePoint(std::string_view s, size_t* pos);
// Length in bytes of the UTF-8 sequence whose lead byte is `lead` (1 for invalid leads).
size_t Utf8SequenceLength(unsigned char lead);
void AppendUtf8(char32_t cp, std::string* out);
bool IsValidUtf8(std::string_view s);

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// Rust char predicates.
bool IsWhitespace(char32_t cp);     // White_Space property (char::is_whitespace)
bool IsNumeric(char32_t cp);        // general category Nd, Nl, No (char::is_numeric)
bool IsAlphanumeric(char32_t cp);   // letters (L*, Nl) or numeric (char::is_alphanumeric)
bool IsCombiningMark(char32_t cp);  // general category Mn, Mc, Me

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
// Unicode normalization. INTERNAL only if utf8proc fails on valid input (a bug).
absl::StatusOr<std::string> Normalize(std::string_view s, NormalForm form);
// Per-code-point full lowercase as Rust char::to_lowercase (no final-sigma context).
std::string Lowercase(std::string_view s);

// The GPT-2 byte <-> printable code point table used by ByteLevel.
char32_t ByteToChar(uint8_t b);
// Returns the byte for a ByteLevel code point, or -1 when `cp` is not in the table.
int CharToByte(char32_t cp);

// absl::string_view is not std::string_view in this abseil; heterogeneous lookups need it.
inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace kiln::tokenizer
