// Fuzz target: the strict JSON helpers (depth scan, UTF-8 check, ParseJson, JsonFields getters,
// message quoting). Input: [1 byte: max depth][JSON text].
#include <cstdint>
#include <string>

#include "engine/io/json_util.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::FuzzInput in(data, size);
  int depth = 1 + in.Byte() % 80;
  auto text = in.Rest();
  kiln::engine::JsonLimits limits{1u << 20, depth};

  absl::Status depth_ok = kiln::engine::CheckJsonDepth(text, depth, "f.json");
  absl::Status utf8_ok = kiln::engine::CheckUtf8(text, "f.json");
  std::string quoted = kiln::engine::QuoteForMessage(text, 64);
  for (char c : quoted) KILN_FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);

  auto j = kiln::engine::ParseJson(text, "f.json", limits);
  if (!j.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(j.status().message()));
    return 0;
  }
  // A parsed document passed both pre-checks.
  KILN_FUZZ_CHECK(depth_ok.ok() && utf8_ok.ok());
  KILN_FUZZ_CHECK(kiln::engine::JsonValueForMessage(*j, 80).size() <= 200);
  if (!j->is_object()) return 0;
  kiln::engine::JsonFields f(*j, "f.json", "p.");
  for (auto it = j->begin(); it != j->end(); ++it) {
    const std::string& k = it.key();
    (void)f.OptionalInt(k);
    (void)f.OptionalPositiveInt(k);
    (void)f.OptionalNumber(k);
    (void)f.OptionalBool(k);
    (void)f.OptionalString(k);
    auto list = f.IntOrIntList(k);
    if (!list.ok()) KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(list.status().message()));
    auto req = f.RequiredPositiveInt(k);
    if (!req.ok()) KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(req.status().message()));
  }
  return 0;
}
