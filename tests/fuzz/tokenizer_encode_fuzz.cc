// Fuzz target: Encode/Decode of arbitrary input with fixed real tokenizers (the golden
// fixtures: gpt2_tiny byte-level BPE, llama_tiny SentencePiece-style BPE with byte fallback).
// Input: [1 byte: flags][text]. Invariants: every id < id_bound(); decode output is valid
// UTF-8; for the byte-level tokenizer, decode(encode(valid UTF-8 text)) == text.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/sample/utf8.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

std::unique_ptr<kiln::tokenizer::Tokenizer> Load(const char* model) {
  auto t = kiln::tokenizer::Tokenizer::FromDirectory(
      std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/" + model);
  if (!t.ok()) {
    std::fprintf(stderr, "cannot load fixture tokenizer %s: %s\n", model,
                 std::string(t.status().message()).c_str());
    std::abort();
  }
  return std::move(*t);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto* gpt2 = Load("gpt2_tiny").release();
  static auto* llama = Load("llama_tiny").release();
  kiln::fuzz::FuzzInput in(data, size);
  uint8_t flags = in.Byte();
  const std::string text(in.Rest());
  const bool byte_level = (flags & 1) == 0;
  const kiln::tokenizer::Tokenizer& tok = byte_level ? *gpt2 : *llama;
  auto ids = tok.Encode(text, (flags & 2) != 0);
  if (!ids.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(ids.status().message()));
    // Only invalid UTF-8 (or a regex budget) may fail an encode.
    return 0;
  }
  KILN_FUZZ_CHECK(kiln::engine::sample::IsValidUtf8(text), "invalid UTF-8 was encoded");
  for (int32_t id : *ids) {
    KILN_FUZZ_CHECK(id >= 0 && static_cast<size_t>(id) < tok.id_bound(), "id %d", id);
  }
  auto decoded = tok.Decode(*ids, (flags & 4) != 0);
  KILN_FUZZ_CHECK(decoded.ok());
  KILN_FUZZ_CHECK(kiln::engine::sample::IsValidUtf8(*decoded));
  if (byte_level && (flags & 6) == 0) {
    KILN_FUZZ_CHECK(*decoded == text, "byte-level round trip differs");
  }
  // Decoding raw input bytes as ids (some out of range) never fails.
  std::vector<int32_t> raw;
  for (size_t i = 0; i + 1 < text.size() && raw.size() < 256; i += 2) {
    raw.push_back(static_cast<int16_t>((static_cast<uint8_t>(text[i]) << 8) |
                                       static_cast<uint8_t>(text[i + 1])));
  }
  auto d2 = tok.Decode(raw, (flags & 8) != 0);
  KILN_FUZZ_CHECK(d2.ok() && kiln::engine::sample::IsValidUtf8(*d2));
  return 0;
}
