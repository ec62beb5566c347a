// Fuzz target: config.json -> ModelConfig (ParseModelConfig), test matrix A11. On success the
// derived sizes the runtime multiplies (KV bytes per token, parameter counts) are bounded.
#include <cstdint>

#include "engine/model/model_config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::engine::ModelConfigLimits limits;
  auto c = kiln::engine::ParseModelConfig(kiln::fuzz::AsText(data, size), "config.json", limits);
  if (!c.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(c.status().message()));
    return 0;
  }
  KILN_FUZZ_CHECK(c->vocab_size > 0 && c->vocab_size <= limits.max_vocab_size);
  KILN_FUZZ_CHECK(c->hidden_size > 0 && c->hidden_size <= limits.max_hidden_size);
  KILN_FUZZ_CHECK(c->num_hidden_layers > 0 && c->num_hidden_layers <= limits.max_layers);
  KILN_FUZZ_CHECK(c->num_attention_heads > 0 && c->num_attention_heads <= limits.max_heads);
  KILN_FUZZ_CHECK(c->num_key_value_heads > 0 &&
                  c->num_attention_heads % c->num_key_value_heads == 0);
  KILN_FUZZ_CHECK(c->head_dim > 0);
  KILN_FUZZ_CHECK(c->max_position_embeddings > 0 &&
                  c->max_position_embeddings <= limits.max_position_embeddings);
  KILN_FUZZ_CHECK(c->intermediate_size > 0);
  KILN_FUZZ_CHECK(c->layer_is_sliding.size() == static_cast<size_t>(c->num_hidden_layers));
  for (int64_t id : c->eos_token_ids) KILN_FUZZ_CHECK(id >= 0);
  // KV bytes per token in f32 must not overflow int64 with these caps.
  // (In double: exact enough to bound, and cannot itself overflow.)
  const double kv = static_cast<double>(c->num_hidden_layers) * 2 *
                    static_cast<double>(c->num_key_value_heads) *
                    static_cast<double>(c->head_dim) * 4;
  KILN_FUZZ_CHECK(kv > 0 && kv < 4.6e18, "kv bytes per token %g", kv);
  return 0;
}
