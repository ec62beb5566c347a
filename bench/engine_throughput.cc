// engine_throughput: generated tokens/s of the engine's continuous batching at 1, 8, 32 and
// 128 concurrent streams on the CPU backend, against the one-at-a-time runner measured in
// the same run (a benchmark, not a test: DESIGN.md §8).
//
// The model is a random-weight Llama (~23M parameters, fp32) written to a temp directory at
// start (config.json + one safetensors file + the llama_tiny fixture's tokenizer), so the
// numbers exercise real GEMM sizes rather than a 100k-parameter fixture.
//
//   engine_throughput [--out_dir=bench/results] [--max_new_tokens=32] [--prompt_tokens=16]
//                     [--threads=0]
//
// Writes <out_dir>/engine_throughput-<YYYY-MM-DD>.{json,md} and prints the table.
#include <algorithm>
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

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/runtime/engine_factory.h"
#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
using kiln::engine::Engine;
using kiln::engine::GenerateChunk;
using kiln::engine::GenerateRequest;
using kiln::engine::GenerateStream;

constexpr int kHidden = 512, kLayers = 8, kHeads = 8, kKvHeads = 2, kInter = 1408, kVocab = 640;
constexpr int kHeadDim = kHidden / kHeads;

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  float fill = 0;  // 0 = random normal(0, 0.02)
};

// Writes a Llama checkpoint with random weights under `dir`.
bool WriteRandomLlama(const fs::path& dir, const fs::path& fixture) {
  fs::create_directories(dir);
  std::vector<Tensor> tensors = {{"model.embed_tokens.weight", {kVocab, kHidden}},
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
  for (const Tensor& t : tensors) {
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
  for (const Tensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<float> data(static_cast<size_t>(n));
    for (float& x : data) x = t.fill != 0 ? t.fill : normal(rng);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(n * 4));
  }
  nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
      {"hidden_size", kHidden}, {"intermediate_size", kInter},
      {"num_hidden_layers", kLayers}, {"num_attention_heads", kHeads},
      {"num_key_value_heads", kKvHeads}, {"head_dim", kHeadDim}, {"hidden_act", "silu"},
      {"max_position_embeddings", 512}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
      {"vocab_size", kVocab}, {"bos_token_id", 1}, {"eos_token_id", 2},
      {"tie_word_embeddings", false}, {"dtype", "float32"}};
  std::ofstream(dir / "config.json") << config.dump(2);
  std::error_code ec;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(fixture / f, dir / f, fs::copy_options::overwrite_existing, ec);
    if (ec) return false;
  }
  return static_cast<bool>(out);
}

// Drains a stream to its end; returns the number of generated tokens (0 on error).
int64_t Drain(const std::shared_ptr<GenerateStream>& stream) {
  int64_t tokens = 0;
  bool ok = false;
  absl::Notification done;
  std::function<void()> pump = [&] {
    while (true) {
      GenerateStream::Batch batch = stream->Drain();
      if (batch.empty()) return;
      for (const GenerateChunk& c : batch.events) tokens += static_cast<int64_t>(c.token_ids.size());
      if (batch.final_status.has_value()) {
        ok = batch.final_status->ok();
        done.Notify();
        return;
      }
    }
  };
  stream->SetReadyCallback(pump);
  pump();
  done.WaitForNotification();
  return ok ? tokens : 0;
}

GenerateRequest Request(int index, int prompt_tokens, int max_new) {
  GenerateRequest r;
  r.request_id = "bench-" + std::to_string(index);
  r.model = "bench";
  std::vector<int32_t> prompt;
  for (int i = 0; i < prompt_tokens; ++i) prompt.push_back(3 + (index * 31 + i * 7) % (kVocab - 3));
  r.prompt_token_ids = prompt;
  r.sampling.do_sample = false;
  r.stopping.max_new_tokens = max_new;
  r.stopping.ignore_eos = true;
  return r;
}

// Runs `n` requests with `concurrency` in flight at once; returns generated tokens/s.
double Run(Engine& engine, int n, int concurrency, int prompt_tokens, int max_new, int64_t* total) {
  const absl::Time start = absl::Now();
  *total = 0;
  for (int begin = 0; begin < n; begin += concurrency) {
    std::vector<std::shared_ptr<GenerateStream>> streams;
    for (int i = begin; i < std::min(n, begin + concurrency); ++i) {
      auto s = engine.Generate(Request(i, prompt_tokens, max_new));
      if (!s.ok()) {
        std::fprintf(stderr, "generate: %s\n", std::string(s.status().message()).c_str());
        return 0;
      }
      streams.push_back(*s);
    }
    for (auto& s : streams) *total += Drain(s);
  }
  return static_cast<double>(*total) / absl::ToDoubleSeconds(absl::Now() - start);
}

std::string Flag(int argc, char** argv, const std::string& name, const std::string& def) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) return argv[i] + prefix.size();
  }
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string out_dir = Flag(argc, argv, "out_dir", std::string(KILN_SOURCE_DIR) + "/bench/results");
  const int max_new = std::stoi(Flag(argc, argv, "max_new_tokens", "32"));
  const int prompt_tokens = std::stoi(Flag(argc, argv, "prompt_tokens", "16"));
  const int threads = std::stoi(Flag(argc, argv, "threads", "0"));

  const fs::path root = fs::temp_directory_path() / ("kiln-bench-" + std::to_string(::getpid()));
  const fs::path fixture = fs::path(KILN_SOURCE_DIR) / "tests/golden/fixtures/models/llama_tiny";
  if (!WriteRandomLlama(root / "bench", fixture)) {
    std::fprintf(stderr, "could not write the random model under %s\n", root.c_str());
    return 1;
  }
  kiln::engine::EngineOptions options;
  options.model_roots = {root.string()};
  options.num_compute_threads = threads;
  options.limits.max_running_requests = 128;
  options.limits.max_batched_tokens = 4096;
  auto engine = kiln::engine::CreateEngine(options);
  if (!engine.ok()) return 1;
  kiln::engine::LoadModelOptions load;
  load.model = "bench";
  load.kv_cache_bytes = int64_t{2} * kLayers * kKvHeads * kHeadDim * 4 * 128 * (prompt_tokens + max_new + 16);
  absl::Notification loaded;
  absl::Status load_status;
  auto load_stream = (*engine)->LoadModel(load);
  std::function<void()> pump = [&] {
    while (true) {
      auto batch = load_stream->Drain();
      if (batch.empty()) return;
      if (batch.final_status) {
        load_status = *batch.final_status;
        loaded.Notify();
        return;
      }
    }
  };
  load_stream->SetReadyCallback(pump);
  pump();
  loaded.WaitForNotification();
  if (!load_status.ok()) {
    std::fprintf(stderr, "load: %s\n", std::string(load_status.message()).c_str());
    return 1;
  }

  int64_t tokens = 0;
  Run(**engine, 1, 1, prompt_tokens, max_new, &tokens);  // warm-up
  const int baseline_n = 8;
  const double baseline = Run(**engine, baseline_n, 1, prompt_tokens, max_new, &tokens);
  std::printf("one-at-a-time baseline: %.1f tokens/s (%d requests)\n", baseline, baseline_n);
  nlohmann::json results = nlohmann::json::array();
  std::string md = "| concurrent streams | requests | generated tokens | tokens/s | vs one-at-a-time |\n"
                   "| ---: | ---: | ---: | ---: | ---: |\n";
  md += "| 1 (sequential baseline) | " + std::to_string(baseline_n) + " | " +
        std::to_string(tokens) + " | " + std::to_string(static_cast<int>(baseline)) + " | 1.00 |\n";
  for (int c : {1, 8, 32, 128}) {
    const int n = std::max(c, 8);
    const double tps = Run(**engine, n, c, prompt_tokens, max_new, &tokens);
    const double ratio = baseline > 0 ? tps / baseline : 0;
    std::printf("%4d streams: %8.1f tokens/s  x%.2f\n", c, tps, ratio);
    results.push_back({{"concurrency", c}, {"requests", n}, {"generated_tokens", tokens},
                       {"tokens_per_s", tps}, {"ratio_vs_sequential", ratio}});
    char row[256];
    std::snprintf(row, sizeof(row), "| %d | %d | %lld | %.1f | %.2f |\n", c, n,
                  static_cast<long long>(tokens), tps, ratio);
    md += row;
  }
  (*engine)->Shutdown();
  std::error_code ec;
  fs::remove_all(root, ec);

  const std::string date = absl::FormatTime("%Y-%m-%d", absl::Now(), absl::LocalTimeZone());
  nlohmann::json doc = {
      {"benchmark", "engine_throughput"}, {"date", date}, {"backend", "cpu"},
      {"threads", threads}, {"model", {{"architecture", "LlamaForCausalLM"}, {"hidden", kHidden},
                                       {"layers", kLayers}, {"heads", kHeads}, {"kv_heads", kKvHeads},
                                       {"intermediate", kInter}, {"vocab", kVocab}, {"dtype", "float32"}}},
      {"prompt_tokens", prompt_tokens}, {"max_new_tokens", max_new},
      {"baseline_tokens_per_s", baseline}, {"results", results}};
  fs::create_directories(out_dir, ec);
  const std::string stem = out_dir + "/engine_throughput-" + date;
  std::ofstream(stem + ".json") << doc.dump(2) << "\n";
  std::ofstream(stem + ".md") << "# engine_throughput " << date << "\n\n"
                              << "CPU backend, random-weight Llama (hidden " << kHidden << ", "
                              << kLayers << " layers, " << kHeads << "/" << kKvHeads
                              << " heads, fp32, ~23M parameters), greedy, prompt " << prompt_tokens
                              << " tokens, " << max_new << " new tokens per request; tokens/s are "
                              << "generated tokens over wall time, ratios against one request at a "
                              << "time measured in the same run.\n\n"
                              << md;
  std::printf("wrote %s.{json,md}\n", stem.c_str());
  return 0;
}
