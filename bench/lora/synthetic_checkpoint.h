// Synthetic checkpoints for the LoRA serving benchmark: a random-weight Llama (config.json +
// model.safetensors + a tokenizer copied from a fixture) and random PEFT LoRA adapters
// (adapter_config.json + adapter_model.safetensors) for it. Benchmark inputs only: the weights
// are random, so the numbers measure compute cost, not quality. Never committed; written under
// a temp dir by the benchmark.
//
// Thread-safety: free functions, reentrant (each call writes its own directory).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kiln::bench {

// Shape of the synthetic Llama. The vocabulary must match the tokenizer copied next to it
// (the llama_tiny fixture has 640 tokens); prompts are token ids, so the text side is unused.
struct SyntheticLlama {
  int hidden = 512;
  int layers = 8;
  int heads = 8;
  int kv_heads = 2;
  int intermediate = 1408;
  int vocab = 640;
  int max_position_embeddings = 512;

  int head_dim() const { return hidden / heads; }
};

// The Linear modules of one Llama layer that adapters may target (PEFT suffix names).
const std::vector<std::string>& LlamaLinearModules();

// Writes config.json, model.safetensors (fp32, weights ~ N(0, 0.02), norms 1) and
// tokenizer.json / tokenizer_config.json copied from `tokenizer_dir` into `dir` (created).
// INVALID_ARGUMENT for a shape that is not positive or heads that do not divide hidden;
// INTERNAL when a file cannot be written or copied.
absl::Status WriteSyntheticLlama(const SyntheticLlama& model, const std::string& dir,
                                 const std::string& tokenizer_dir, uint32_t seed);

// A random PEFT LoRA adapter for a SyntheticLlama. lora_A ~ N(0, 1/in) and
// lora_B ~ N(0, b_std²), so the low-rank delta is a visible fraction of the base output and
// greedy runs with the adapter differ from the base (a trained adapter's B is not zero either).
struct SyntheticAdapter {
  int rank = 16;
  double alpha = 32;
  std::vector<std::string> target_modules = LlamaLinearModules();  // suffixes, every layer
  std::string base_model_name_or_path;
  float b_std = 0.02f;
  uint32_t seed = 1;
};

// Writes adapter_config.json and adapter_model.safetensors (keys
// base_model.model.model.layers.<l>.<module>.lora_{A,B}.weight, [r, in] / [out, r], F32) into
// `dir` (created). INVALID_ARGUMENT for rank <= 0 or a target that is not a Llama Linear;
// INTERNAL on write errors. Returns the fp32 bytes of all A/B through `bytes` (may be null).
absl::Status WriteSyntheticAdapter(const SyntheticLlama& model, const SyntheticAdapter& adapter,
                                   const std::string& dir, int64_t* bytes);

}  // namespace kiln::bench
