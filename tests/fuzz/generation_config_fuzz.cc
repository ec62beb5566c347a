// Fuzz target: generation_config.json (ParseGenerationConfig). On success every set value is
// in its documented range.
#include <cmath>
#include <cstdint>

#include "engine/model/generation_config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto g = kiln::engine::ParseGenerationConfig(kiln::fuzz::AsText(data, size));
  if (!g.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(g.status().message()));
    return 0;
  }
  if (g->temperature) KILN_FUZZ_CHECK(std::isfinite(*g->temperature) && *g->temperature >= 0);
  if (g->top_k) KILN_FUZZ_CHECK(*g->top_k >= 0);
  if (g->top_p) KILN_FUZZ_CHECK(*g->top_p >= 0 && *g->top_p <= 1);
  if (g->min_p) KILN_FUZZ_CHECK(*g->min_p >= 0 && *g->min_p <= 1);
  if (g->repetition_penalty) {
    KILN_FUZZ_CHECK(std::isfinite(*g->repetition_penalty) && *g->repetition_penalty > 0);
  }
  if (g->max_new_tokens) KILN_FUZZ_CHECK(*g->max_new_tokens > 0);
  if (g->max_length) KILN_FUZZ_CHECK(*g->max_length > 0);
  return 0;
}
