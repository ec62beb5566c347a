// Fuzz target: tokenizer.json loading (Tokenizer::FromJson), test matrix A12, then a fixed
// encode/decode round on whatever loaded. Input: [1 byte: flags][tokenizer.json text].
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::FuzzInput in(data, size);
  uint8_t flags = in.Byte();
  auto json = in.Rest();
  kiln::tokenizer::TokenizerLimits limits;
  limits.max_json_bytes = 1u << 20;
  limits.max_vocab_size = 1u << 16;
  limits.max_merges = 1u << 16;
  auto tok = kiln::tokenizer::Tokenizer::FromJson(json, {}, {}, limits);
  if (!tok.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(tok.status().message()));
    return 0;
  }
  static const char* kTexts[] = {"Hello world", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", " \t\n x",
                                 "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80", "<s></s><unk>"};
  const std::string text = kTexts[flags % 5];
  bool add_special = (flags & 8) != 0;
  auto ids = (*tok)->Encode(text, add_special);
  if (!ids.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(ids.status().message()));
    return 0;
  }
  for (int32_t id : *ids) {
    KILN_FUZZ_CHECK(id >= 0 && static_cast<size_t>(id) < (*tok)->id_bound(), "id %d", id);
  }
  auto decoded = (*tok)->Decode(*ids, (flags & 16) != 0);
  if (!decoded.ok()) KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(decoded.status().message()));
  return 0;
}
