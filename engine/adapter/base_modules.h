// The modules of a base model that LoRA can target, named as transformers names them
// (model.named_modules()), so PEFT's matching rules and adapter tensor keys apply unchanged.
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/model_config.h"

namespace kiln::engine {

// One Linear (or GPT-2 Conv1D) of the decoder. The forward computes y = x W^T with W
// [out_features, in_features]; a Conv1D stores its weight transposed ([in, out]) in the
// checkpoint, which `stored_transposed` records (it never changes the LoRA A/B orientation:
// PEFT's lora_A is [r, in] and lora_B [out, r] for both).
struct BaseLinear {
  std::string name;        // "model.layers.3.self_attn.q_proj", "transformer.h.1.attn.c_attn"
  int64_t out_features = 0;
  int64_t in_features = 0;
  bool stored_transposed = false;  // GPT-2 Conv1D
  int64_t layer = 0;               // decoder layer index
};

struct BaseModules {
  std::vector<BaseLinear> linears;  // in named_modules() order, lm_head excluded
  // Modules LoRA could name but kiln does not adapt: embeddings and the output layer
  // ("model.embed_tokens", "lm_head"; GPT-2 "transformer.wte", "transformer.wpe", "lm_head").
  std::vector<std::string> unsupported;
};

// llama/mistral/qwen2: q/k/v/o_proj and gate/up/down_proj per layer; gpt2: attn.c_attn,
// attn.c_proj, mlp.c_fc, mlp.c_proj per layer. Dimensions from the config (head_dim, kv heads,
// intermediate_size).
BaseModules ListBaseModules(const ModelConfig& config);

}  // namespace kiln::engine
