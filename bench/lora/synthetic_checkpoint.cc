#include "bench/lora/synthetic_checkpoint.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <utility>

#include "nlohmann/json.hpp"

namespace kiln::bench {
namespace {

namespace fs = std::filesystem;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  float fill = 0;  // used when `stddev` is 0
  float stddev = 0;
};

int64_t NumElements(const TensorSpec& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

// One F32 safetensors file, tensors in the given order. Values are generated per tensor and
// streamed to the file, so the model never sits in memory twice.
absl::Status WriteSafetensors(const fs::path& path, const std::vector<TensorSpec>& tensors, uint32_t seed) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    const int64_t bytes = NumElements(t) * 4;
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string head = header.dump();
  while (head.size() % 8 != 0) head += ' ';  // safetensors pads the header to 8 bytes
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t head_len = head.size();
  out.write(reinterpret_cast<const char*>(&head_len), 8);
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  std::mt19937 rng(seed);
  std::vector<float> data;
  for (const TensorSpec& t : tensors) {
    data.assign(static_cast<size_t>(NumElements(t)), t.fill);
    if (t.stddev > 0) {
      std::normal_distribution<float> normal(0.0f, t.stddev);
      for (float& x : data) x = normal(rng);
    }
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size() * 4));
  }
  out.close();
  if (!out) return absl::InternalError("cannot write " + path.filename().string());
  return absl::OkStatus();
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError("cannot write " + path.filename().string());
  return absl::OkStatus();
}

absl::Status CheckShape(const SyntheticLlama& m) {
  for (const auto& [name, v] : {std::pair<const char*, int>{"hidden", m.hidden}, {"layers", m.layers},
                                {"heads", m.heads}, {"kv_heads", m.kv_heads},
                                {"intermediate", m.intermediate}, {"vocab", m.vocab}}) {
    if (v <= 0) return absl::InvalidArgumentError(std::string("synthetic llama: ") + name + " = " +
                                                  std::to_string(v) + " must be > 0");
  }
  if (m.hidden % m.heads != 0 || m.heads % m.kv_heads != 0) {
    return absl::InvalidArgumentError("synthetic llama: heads " + std::to_string(m.heads) +
                                      " must divide hidden " + std::to_string(m.hidden) +
                                      " and be a multiple of kv_heads " + std::to_string(m.kv_heads));
  }
  return absl::OkStatus();
}

// [out, in] of a Llama Linear by its suffix; {0, 0} when unknown.
std::pair<int64_t, int64_t> LinearShape(const SyntheticLlama& m, const std::string& module) {
  const int64_t q = int64_t{m.heads} * m.head_dim(), kv = int64_t{m.kv_heads} * m.head_dim();
  if (module == "self_attn.q_proj") return {q, m.hidden};
  if (module == "self_attn.k_proj" || module == "self_attn.v_proj") return {kv, m.hidden};
  if (module == "self_attn.o_proj") return {m.hidden, q};
  if (module == "mlp.gate_proj" || module == "mlp.up_proj") return {m.intermediate, m.hidden};
  if (module == "mlp.down_proj") return {m.hidden, m.intermediate};
  return {0, 0};
}

}  // namespace

const std::vector<std::string>& LlamaLinearModules() {
  static const std::vector<std::string> kModules = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                    "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                    "mlp.down_proj"};
  return kModules;
}

absl::Status WriteSyntheticLlama(const SyntheticLlama& m, const std::string& dir_name,
                                 const std::string& tokenizer_dir, uint32_t seed) {
  if (absl::Status s = CheckShape(m); !s.ok()) return s;
  const fs::path dir(dir_name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError("cannot create the model directory " + dir.filename().string());
  constexpr float kStd = 0.02f;
  std::vector<TensorSpec> tensors = {{"model.embed_tokens.weight", {m.vocab, m.hidden}, 0, kStd},
                                     {"model.norm.weight", {m.hidden}, 1.0f},
                                     {"lm_head.weight", {m.vocab, m.hidden}, 0, kStd}};
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back({p + "input_layernorm.weight", {m.hidden}, 1.0f});
    tensors.push_back({p + "post_attention_layernorm.weight", {m.hidden}, 1.0f});
    for (const std::string& module : LlamaLinearModules()) {
      const auto [out, in] = LinearShape(m, module);
      tensors.push_back({p + module + ".weight", {out, in}, 0, kStd});
    }
  }
  if (absl::Status s = WriteSafetensors(dir / "model.safetensors", tensors, seed); !s.ok()) return s;
  const nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
      {"hidden_size", m.hidden}, {"intermediate_size", m.intermediate},
      {"num_hidden_layers", m.layers}, {"num_attention_heads", m.heads},
      {"num_key_value_heads", m.kv_heads}, {"head_dim", m.head_dim()}, {"hidden_act", "silu"},
      {"max_position_embeddings", m.max_position_embeddings}, {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0}, {"vocab_size", m.vocab}, {"bos_token_id", 1}, {"eos_token_id", 2},
      {"tie_word_embeddings", false}, {"dtype", "float32"}};
  if (absl::Status s = WriteText(dir / "config.json", config.dump(2)); !s.ok()) return s;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(fs::path(tokenizer_dir) / f, dir / f, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(std::string("cannot copy the fixture tokenizer file ") + f);
  }
  return absl::OkStatus();
}

absl::Status WriteSyntheticAdapter(const SyntheticLlama& m, const SyntheticAdapter& a,
                                   const std::string& dir_name, int64_t* bytes) {
  if (absl::Status s = CheckShape(m); !s.ok()) return s;
  if (a.rank <= 0) {
    return absl::InvalidArgumentError("synthetic adapter: rank = " + std::to_string(a.rank) + " must be > 0");
  }
  const fs::path dir(dir_name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError("cannot create the adapter directory " + dir.filename().string());
  std::vector<TensorSpec> tensors;
  std::vector<std::string> targets;
  int64_t total = 0;
  for (int l = 0; l < m.layers; ++l) {
    for (const std::string& module : a.target_modules) {
      const auto [out, in] = LinearShape(m, module);
      if (out == 0) {
        return absl::InvalidArgumentError("synthetic adapter: target \"" + module.substr(0, 64) +
                                          "\" is not a Llama Linear");
      }
      const std::string name = "model.layers." + std::to_string(l) + "." + module;
      const std::string key = "base_model.model." + name;
      const float a_std = 1.0f / std::sqrt(static_cast<float>(in));
      tensors.push_back({key + ".lora_A.weight", {a.rank, in}, 0, a_std});
      tensors.push_back({key + ".lora_B.weight", {out, a.rank}, 0, a.b_std});
      total += 4 * int64_t{a.rank} * (in + out);
    }
  }
  if (absl::Status s = WriteSafetensors(dir / "adapter_model.safetensors", tensors, a.seed); !s.ok()) return s;
  // Only the fields that change the math (adapter_config.h); the rest keep PEFT's defaults.
  const nlohmann::json config = {{"peft_type", "LORA"},
                                 {"task_type", "CAUSAL_LM"},
                                 {"base_model_name_or_path", a.base_model_name_or_path},
                                 {"r", a.rank},
                                 {"lora_alpha", a.alpha},
                                 {"use_rslora", false},
                                 {"target_modules", a.target_modules},
                                 {"bias", "none"},
                                 {"fan_in_fan_out", false},
                                 {"lora_dropout", 0.0},
                                 {"inference_mode", true}};
  if (absl::Status s = WriteText(dir / "adapter_config.json", config.dump(2)); !s.ok()) return s;
  if (bytes != nullptr) *bytes = total;
  return absl::OkStatus();
}

}  // namespace kiln::bench
