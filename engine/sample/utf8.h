// Small UTF-8 helpers for streamed text: where whole characters end, and sanitizing.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kiln::engine::sample {

// True when `text` is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view text);

// The length of the longest prefix of `text` that does not end inside a character that could
// still be completed by more bytes: a trailing, so far well-formed but incomplete sequence
// (at most 3 bytes) is excluded; everything else (complete characters and invalid bytes) is
// included.
size_t CompleteUtf8PrefixLength(std::string_view text);

// Appends `text` to `out`, replacing each maximal invalid subsequence with U+FFFD (the
// "substitution of maximal subparts" practice, as Python's errors="replace").
void AppendSanitizedUtf8(std::string_view text, std::string* out);

}  // namespace kiln::engine::sample
