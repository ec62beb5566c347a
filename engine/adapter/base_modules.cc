// Module names follow transformers 5.23's modeling_llama / modeling_mistral / modeling_qwen2 /
// modeling_gpt2 attribute names; the golden fixtures record the same list from named_modules().
#include "engine/adapter/base_modules.h"

#include "engine/io/str_cat.h"

namespace kiln::engine {

using io_internal::Cat;

BaseModules ListBaseModules(const ModelConfig& c) {
  BaseModules out;
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  switch (c.architecture) {
    case Architecture::kLlama:
    case Architecture::kMistral:
    case Architecture::kQwen2: {
      const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = Cat("model.layers.", l, ".");
        out.linears.push_back({p + "self_attn.q_proj", q, hidden, false, l});
        out.linears.push_back({p + "self_attn.k_proj", kv, hidden, false, l});
        out.linears.push_back({p + "self_attn.v_proj", kv, hidden, false, l});
        out.linears.push_back({p + "self_attn.o_proj", hidden, q, false, l});
        out.linears.push_back({p + "mlp.gate_proj", inter, hidden, false, l});
        out.linears.push_back({p + "mlp.up_proj", inter, hidden, false, l});
        out.linears.push_back({p + "mlp.down_proj", hidden, inter, false, l});
      }
      out.unsupported = {"model.embed_tokens", "lm_head"};
      break;
    }
    case Architecture::kGpt2: {
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = Cat("transformer.h.", l, ".");
        out.linears.push_back({p + "attn.c_attn", 3 * hidden, hidden, true, l});
        out.linears.push_back({p + "attn.c_proj", hidden, hidden, true, l});
        out.linears.push_back({p + "mlp.c_fc", inter, hidden, true, l});
        out.linears.push_back({p + "mlp.c_proj", hidden, inter, true, l});
      }
      out.unsupported = {"transformer.wte", "transformer.wpe", "lm_head"};
      break;
    }
  }
  return out;
}

}  // namespace kiln::engine
