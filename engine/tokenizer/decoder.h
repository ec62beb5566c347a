// tokenizer.json "decoder": ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence
// (others are UNIMPLEMENTED). A decoder rewrites the list of token strings; the result is their
// concatenation. Output is always valid UTF-8. Immutable; safe to use from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_access.h"
#include "engine/tokenizer/regex.h"

namespace kiln::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual absl::Status DecodeChain(std::vector<std::string>* tokens) const = 0;
  // True when some stage is ByteFallback: a run of <0xXX> tokens decodes all-or-nothing, so
  // streaming must not emit text while such a run may still grow.
  virtual bool HasByteFallback() const { return false; }
};

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const Json& j, std::string path,
                                                         RegexLimits limits);

// Parses "<0xXX>" as ByteFallback does (Rust u8::from_str_radix, which accepts a leading '+').
std::optional<uint8_t> ParseByteToken(std::string_view token);

}  // namespace kiln::tokenizer
