// quant_decode_bench: batch-1 CPU decode tokens/s of one random-weight Llama loaded as fp32,
// LLM.int8 (bitsandbytes load_in_8bit) and NF4 (load_in_4bit, nf4, fp32 and bf16 compute),
// all in one run, plus the weight bytes each format holds (a benchmark, not a test:
// DESIGN.md §8; ratios are against the fp32 run of the same process).
//
// The model (hidden 1024, 8 layers, 16 heads / 4 KV heads, intermediate 2816, vocab 2048:
// ~90M Linear parameters) is written to a temp directory at start.
//
//   quant_decode_bench [--threads=2] [--decode_tokens=32] [--prompt_tokens=16]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "engine/io/checkpoint.h"
#include "engine/model/causal_lm.h"
#include "engine/model/model_config.h"
#include "engine/quant/bnb_config.h"
#include "kernels/cpu/cpu_backend.h"
#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
using kiln::engine::BitsAndBytesOptions;

constexpr int kHidden = 1024, kLayers = 8, kHeads = 16, kKvHeads = 4, kInter = 2816, kVocab = 2048;
constexpr int kHeadDim = kHidden / kHeads;

bool WriteRandomLlama(const fs::path& dir) {
  fs::create_directories(dir);
  struct T {
    std::string name;
    std::vector<int64_t> shape;
    float fill = 0;
  };
  std::vector<T> tensors = {{"model.embed_tokens.weight", {kVocab, kHidden}},
                            {"model.norm.weight", {kHidden}, 1.0f},
                            {"lm_head.weight", {kVocab, kHidden}}};
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back({p + "input_layernorm.weight", {kHidden}, 1.0f});
    tensors.push_back({p + "post_attention_layernorm.weight", {kHidden}, 1.0f});
    tensors.push_back({p + "self_attn.q_proj.weight", {kHeads * kHeadDim, kHidden}});
    tensors.push_back({p + "self_attn.k_proj.weight", {kKvHeads * kHeadDim, kHidden}});
    tensors.push_back({p + "self_attn.v_proj.weight", {kKvHeads * kHeadDim, kHidden}});
    tensors.push_back({p + "self_attn.o_proj.weight", {kHidden, kHeads * kHeadDim}});
    tensors.push_back({p + "mlp.gate_proj.weight", {kInter, kHidden}});
    tensors.push_back({p + "mlp.up_proj.weight", {kInter, kHidden}});
    tensors.push_back({p + "mlp.down_proj.weight", {kHidden, kInter}});
  }
  nlohmann::json header = nlohmann::json::object();
  int64_t offset = 0;
  for (const T& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + n * 4}}};
    offset += n * 4;
  }
  std::string head = header.dump();
  while (head.size() % 8 != 0) head += ' ';
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  const uint64_t head_len = head.size();
  out.write(reinterpret_cast<const char*>(&head_len), 8);
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (const T& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<float> data(static_cast<size_t>(n));
    for (float& x : data) x = t.fill != 0 ? t.fill : normal(rng);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(n * 4));
  }
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
                           {"hidden_size", kHidden}, {"intermediate_size", kInter},
                           {"num_hidden_layers", kLayers}, {"num_attention_heads", kHeads},
                           {"num_key_value_heads", kKvHeads}, {"head_dim", kHeadDim}, {"hidden_act", "silu"},
                           {"max_position_embeddings", 512}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
                           {"vocab_size", kVocab}, {"bos_token_id", 1}, {"eos_token_id", 2},
                           {"tie_word_embeddings", false}, {"dtype", "float32"}};
  std::ofstream(dir / "config.json") << config.dump(2);
  return static_cast<bool>(out);
}

struct Result {
  std::string format;
  size_t weight_bytes = 0;
  double load_s = 0, tokens_per_s = 0;
};

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool Run(const std::string& format, const std::optional<BitsAndBytesOptions>& bnb, const fs::path& dir, int threads,
         int prompt_tokens, int decode_tokens, Result* r) {
  auto config = kiln::engine::LoadModelConfig(dir.string());
  auto ckpt = kiln::engine::Checkpoint::Open(dir.string());
  auto backend = kiln::kernels::cpu::CreateCpuBackend({.num_threads = threads});
  if (!config.ok() || !ckpt.ok() || !backend.ok()) return false;
  kiln::engine::LoadOptions options{.dtype = kiln::kernels::DType::kF32};
  if (bnb.has_value()) {
    auto cfg = kiln::engine::quant::ValidateBitsAndBytes(*bnb);
    if (!cfg.ok()) return false;
    options.bitsandbytes = *cfg;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto model = kiln::engine::LoadCausalLm(*config, **ckpt, options, **backend);
  const auto t1 = std::chrono::steady_clock::now();
  if (!model.ok()) {
    std::fprintf(stderr, "%s: %s\n", format.c_str(), std::string(model.status().message()).c_str());
    return false;
  }
  auto cache = (*model)->CreateKvCache({.num_blocks = 16, .block_size = 16});
  if (!cache.ok()) return false;
  std::vector<int32_t> blocks(16);
  for (int32_t i = 0; i < 16; ++i) blocks[static_cast<size_t>(i)] = i;
  std::vector<int32_t> step(static_cast<size_t>(prompt_tokens));
  for (int i = 0; i < prompt_tokens; ++i) step[static_cast<size_t>(i)] = 3 + i * 7 % (kVocab - 3);
  int32_t start = 0;
  std::chrono::steady_clock::time_point decode_start;
  for (int t = 0; t <= decode_tokens; ++t) {
    if (t == 1) decode_start = std::chrono::steady_clock::now();  // after the prefill
    kiln::engine::ForwardBatch batch;
    batch.sequences.push_back({.token_ids = step, .start_pos = start, .block_table = blocks});
    kiln::engine::ForwardOutput out;
    if (!(*model)->Forward(batch, **cache, &out).ok()) return false;
    const auto last = out.Last(0);
    start += static_cast<int32_t>(step.size());
    step = {static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin())};
  }
  const auto t2 = std::chrono::steady_clock::now();
  r->format = format;
  r->weight_bytes = (*model)->weight_bytes();
  r->load_s = Seconds(t0, t1);
  r->tokens_per_s = decode_tokens / Seconds(decode_start, t2);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, decode_tokens = 32, prompt_tokens = 16;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--threads=", 0) == 0) threads = std::stoi(a.substr(10));
    if (a.rfind("--decode_tokens=", 0) == 0) decode_tokens = std::stoi(a.substr(16));
    if (a.rfind("--prompt_tokens=", 0) == 0) prompt_tokens = std::stoi(a.substr(16));
  }
  const fs::path dir = fs::temp_directory_path() / ("kiln_quant_bench_" + std::to_string(getpid()));
  if (!WriteRandomLlama(dir)) {
    std::fprintf(stderr, "cannot write the model to %s\n", dir.c_str());
    return 1;
  }
  BitsAndBytesOptions int8;
  int8.load_in_8bit = true;
  BitsAndBytesOptions nf4;
  nf4.load_in_4bit = true;
  nf4.bnb_4bit_quant_type = "nf4";
  BitsAndBytesOptions nf4_bf16 = nf4;
  nf4_bf16.bnb_4bit_compute_dtype = "bfloat16";
  const std::vector<std::pair<std::string, std::optional<BitsAndBytesOptions>>> formats = {
      {"fp32", std::nullopt}, {"int8 (LLM.int8, threshold 6)", int8}, {"nf4 (fp32 compute)", nf4},
      {"nf4 (bf16 compute)", nf4_bf16}};
  std::vector<Result> results;
  for (const auto& [name, bnb] : formats) {
    Result r;
    if (!Run(name, bnb, dir, threads, prompt_tokens, decode_tokens, &r)) {
      std::fprintf(stderr, "%s failed\n", name.c_str());
      fs::remove_all(dir);
      return 1;
    }
    results.push_back(r);
  }
  fs::remove_all(dir);
  std::printf("model: llama hidden %d x %d layers, intermediate %d, vocab %d; batch 1 decode, %d prompt + %d "
              "new tokens, %d threads\n\n",
              kHidden, kLayers, kInter, kVocab, prompt_tokens, decode_tokens, threads);
  std::printf("| format | weight bytes | vs fp32 | load s | decode tok/s | vs fp32 |\n|---|---|---|---|---|---|\n");
  for (const Result& r : results) {
    std::printf("| %s | %zu | %.3f | %.2f | %.2f | %.2f |\n", r.format.c_str(), r.weight_bytes,
                static_cast<double>(r.weight_bytes) / static_cast<double>(results[0].weight_bytes), r.load_s,
                r.tokens_per_s, r.tokens_per_s / results[0].tokens_per_s);
  }
  return 0;
}
