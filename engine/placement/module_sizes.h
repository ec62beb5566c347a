// The module tree and tensor sizes of the transformers model a ModelConfig describes, as
// transformers 5.23 + accelerate 1.15 see it when planning a device map — before any weight
// is read.
//
// Names are exactly transformers' (`model.embed_tokens.weight`,
// `model.layers.N.self_attn.q_proj.weight`, ..., `model.norm.weight`,
// `model.rotary_emb.inv_freq`, `lm_head.weight`; GPT-2: `transformer.wte/wpe/h.N.../ln_f`,
// `lm_head.weight`), in the order of `named_parameters()` then `named_buffers()`, and every
// module (including parameterless ones such as Dropout and activations, which appear in
// hf_device_map) is in the tree with its class name.
//
// Sizes follow transformers' `compute_module_sizes(model, hf_quantizer)`:
//  - a parameter counts numel * element size of the load dtype;
//  - the RoPE buffers (`inv_freq`, `original_inv_freq`) stay float32 whatever the load dtype;
//  - a tied parameter (`lm_head.weight` when tie_word_embeddings) counts 0: it is the same
//    storage as the embedding;
//  - bitsandbytes: the weight of every nn.Linear (GPT-2: Conv1D) that the quantizer converts
//    counts 0.5 bytes per element (4-bit) or 1 (8-bit); biases keep the load dtype. The
//    modules kept unquantized are transformers' defaults (tied embeddings, lm_head / the output
//    embedding, the module of the last parameter) plus `skip_modules` (kiln keeps lm_head
//    unquantized even when skip_modules is given; transformers would then quantize it).
//  Sizes are doubles because 4-bit counts half bytes; they are exact below 2^53.
// Module sizes are the sum of their tensors' sizes; the root module is "".
//
// Thread-safety: value types; BuildModelLayout is reentrant.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/quant/bnb_config.h"
#include "kernels/dtype.h"

namespace kiln::engine::placement {

enum class TensorKind : uint8_t { kParameter, kBuffer };

struct TensorInfo {
  std::string name;            // "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // as transformers' module holds it (Conv1D: [in, out])
  kernels::DType dtype = kernels::DType::kF32;  // dtype in memory (quantized: the load dtype)
  TensorKind kind = TensorKind::kParameter;
  bool quantized = false;        // a bnb-converted Linear weight
  std::optional<std::string> tied_to;  // "model.embed_tokens.weight" for a tied lm_head.weight
  double bytes = 0;              // what the planner counts (0 when tied)
};

struct ModuleInfo {
  std::string name;        // "" for the root, "model.layers.0.mlp", ...
  std::string class_name;  // "LlamaDecoderLayer", "Linear", "Dropout", ...
  std::vector<int> params;    // indices into ModelLayout::tensors, direct parameters
  std::vector<int> buffers;   // direct buffers
  std::vector<int> children;  // indices into ModelLayout::modules, in definition order
};

struct ModelLayout {
  std::string architecture;          // "LlamaForCausalLM"
  std::vector<TensorInfo> tensors;   // parameters, then buffers
  std::vector<ModuleInfo> modules;   // modules[0] is the root ""
  std::vector<std::string> no_split_module_classes;  // {"LlamaDecoderLayer"}
  // Tied groups as transformers lists them: each sorted, e.g.
  // {"lm_head.weight", "model.embed_tokens.weight"}.
  std::vector<std::vector<std::string>> tied_groups;
  // compute_module_sizes(only_modules=False): every module prefix and every tensor name.
  std::map<std::string, double> sizes;

  double TotalBytes() const;
  // Size of a module or tensor name; 0 when absent (Python's defaultdict).
  double SizeOf(const std::string& name) const;
  // Index of the module / tensor called `name`, or -1.
  int FindModule(const std::string& name) const;
  int FindTensor(const std::string& name) const;
};

struct LayoutOptions {
  kernels::DType dtype = kernels::DType::kF32;  // the resolved load dtype (F32, F16 or BF16)
  std::optional<quant::BnbQuantConfig> bnb;     // on-the-fly bitsandbytes quantization
};

// Builds the layout. INVALID_ARGUMENT when `dtype` is not a floating-point load dtype or a
// dimension product overflows; UNIMPLEMENTED for an architecture without a layout here.
absl::StatusOr<ModelLayout> BuildModelLayout(const ModelConfig& config, const LayoutOptions& options);

}  // namespace kiln::engine::placement
