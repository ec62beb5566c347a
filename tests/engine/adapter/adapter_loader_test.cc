// LoadLoraAdapter on the peft fixtures (modules, ranks, scales and per-module scale·B·A against
// what peft computed) and on crafted bad adapters (each must fail with a clear message).
#include "engine/adapter/adapter_loader.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/adapter/adapter_test_util.h"
#include "tests/engine/io/io_test_util.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;
using testing::BaseFor;
using testing::kLoraFixtures;
using testing::LoraManifest;
using testing::TempDir;
using testing::WriteFile;

std::string BaseName(const nlohmann::json& adapter) {
  const std::string dir = adapter["base"].get<std::string>();
  return dir.substr(dir.find('/') + 1);
}

TEST(AdapterLoaderTest, FixturesLoadWithPeftsModulesRanksAndScales) {
  const nlohmann::json m = LoraManifest();
  ASSERT_EQ(m["adapters"].size(), 6u);
  for (const auto& [name, adapter] : m["adapters"].items()) {
    SCOPED_TRACE(name);
    const BaseModules base = BaseFor(BaseName(adapter));
    AdapterLoadOptions options;
    options.expected_base = BaseName(adapter);
    auto loaded = LoadLoraAdapter(kLoraFixtures + "/" + adapter["dir"].get<std::string>(), base, options);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const auto& want = adapter["targeted_modules"];
    ASSERT_EQ((*loaded)->modules.size(), want.size());
    uint64_t bytes = 0;
    for (const LoraModule& mod : (*loaded)->modules) {
      ASSERT_TRUE(want.contains(mod.name)) << mod.name;
      const auto& w = want[mod.name];
      EXPECT_EQ(mod.r, w["r"].get<int64_t>()) << mod.name;
      EXPECT_DOUBLE_EQ(mod.alpha, w["lora_alpha"].get<double>()) << mod.name;
      EXPECT_EQ(mod.scale, static_cast<float>(w["scaling"].get<double>())) << mod.name;
      EXPECT_EQ(mod.a.size(), static_cast<size_t>(mod.r * mod.base->in_features));
      EXPECT_EQ(mod.b.size(), static_cast<size_t>(mod.base->out_features * mod.r));
      bytes += (mod.a.size() + mod.b.size()) * 4;
    }
    EXPECT_EQ((*loaded)->total_bytes, bytes);
  }
}

// delta = scale · B · A in the forward orientation [out, in], as peft computed it (for GPT-2's
// Conv1D too: A/B are used as stored).
TEST(AdapterLoaderTest, DenseDeltasMatchPeft) {
  const nlohmann::json m = LoraManifest();
  int checked = 0;
  for (const auto& [name, adapter] : m["adapters"].items()) {
    if (adapter["delta_modules"].empty()) continue;
    SCOPED_TRACE(name);
    const BaseModules base = BaseFor(BaseName(adapter));
    auto loaded = LoadLoraAdapter(kLoraFixtures + "/" + adapter["dir"].get<std::string>(), base);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto ref = SafetensorsFile::Open(kLoraFixtures + "/reference/" + name + ".safetensors", name);
    ASSERT_TRUE(ref.ok()) << ref.status();
    for (const auto& module_json : adapter["delta_modules"]) {
      const std::string module = module_json.get<std::string>();
      const LoraModule* mod = (*loaded)->Find(module);
      ASSERT_NE(mod, nullptr) << module;
      const TensorInfo* info = (*ref)->Find("delta." + module);
      ASSERT_NE(info, nullptr) << module;
      const int64_t out = mod->base->out_features, in = mod->base->in_features;
      ASSERT_EQ(info->shape, (std::vector<int64_t>{out, in}));
      std::vector<float> want(static_cast<size_t>(out * in));
      ASSERT_TRUE((*ref)->Read(*info, {reinterpret_cast<uint8_t*>(want.data()), want.size() * 4}).ok());
      double max_err = 0;
      for (int64_t o = 0; o < out; ++o) {
        for (int64_t i = 0; i < in; ++i) {
          double acc = 0;
          for (int64_t k = 0; k < mod->r; ++k) acc += double{mod->b[o * mod->r + k]} * mod->a[k * in + i];
          max_err = std::max(max_err, std::fabs(mod->scale * acc - want[static_cast<size_t>(o * in + i)]));
        }
      }
      EXPECT_LE(max_err, 1e-6) << module;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 13);  // llama_qv_r4: 4, qwen2_patterns: 7, gpt2 layer 0: 2
}

TEST(AdapterLoaderTest, RefusedFixtures) {
  const BaseModules base = BaseFor("llama_tiny");
  const std::map<std::string, std::pair<absl::StatusCode, std::string>> cases = {
      {"use_dora", {absl::StatusCode::kUnimplemented, "use_dora"}},
      {"modules_to_save", {absl::StatusCode::kUnimplemented, "modules_to_save"}},
      {"lora_bias", {absl::StatusCode::kUnimplemented, "lora_bias"}},
      {"embedding_target", {absl::StatusCode::kUnimplemented, "model.embed_tokens"}},
      {"bin_only", {absl::StatusCode::kInvalidArgument, "adapter_model.bin"}},
  };
  for (const auto& [dir, want] : cases) {
    auto loaded = LoadLoraAdapter(kLoraFixtures + "/refused/" + dir, base);
    ASSERT_FALSE(loaded.ok()) << dir;
    EXPECT_EQ(loaded.status().code(), want.first) << dir << ": " << loaded.status();
    EXPECT_THAT(loaded.status().message(), HasSubstr(want.second)) << dir;
    EXPECT_THAT(loaded.status().message(), ::testing::Not(HasSubstr(KILN_SOURCE_DIR))) << dir;
  }
}

TEST(AdapterLoaderTest, BaseModelNameMismatchUnlessOverridden) {
  const std::string dir = kLoraFixtures + "/adapters/llama_qv_r4";
  const BaseModules base = BaseFor("llama_tiny");
  AdapterLoadOptions options;
  options.expected_base = "mistral_tiny";
  auto loaded = LoadLoraAdapter(dir, base, options);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(), HasSubstr("base_model_name_or_path \"llama_tiny\""));
  options.allow_base_mismatch = true;
  EXPECT_TRUE(LoadLoraAdapter(dir, base, options).ok());
  options = {};
  options.expected_base = "llama_tiny/";
  EXPECT_TRUE(LoadLoraAdapter(dir, base, options).ok());
  // Absolute paths from the training machine are not echoed.
  LoraConfig c;
  c.base_model_name_or_path = "/home/someone/models/llama_tiny";
  options.expected_base = "other";
  const absl::Status s = CheckBaseModelName(c, options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("/home/someone")));
}

// PEFT writes whatever path the base was loaded from: a training machine's local copy, a hub
// id, or a hub-cache snapshot. Each names the served model when its trailing components agree.
TEST(AdapterLoaderTest, BaseModelNameMatchesByTrailingPathComponents) {
  const std::vector<std::pair<std::string, std::string>> match = {
      {"/home/someone/models/llama_tiny", "llama_tiny"},
      {"/home/someone/models/llama_tiny/", "llama_tiny"},
      {"./llama_tiny", "llama_tiny"},
      {"meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"},
      {"meta-llama/Llama-2-7b-hf", "Llama-2-7b-hf"},
      {"Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"},
      {"/data/meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"},
      {"/root/.cache/huggingface/hub/models--meta-llama--Llama-2-7b-hf/snapshots/0123abc",
       "meta-llama/Llama-2-7b-hf"},
      {"/root/.cache/huggingface/hub/models--meta-llama--Llama-2-7b-hf/snapshots/0123abc/",
       "Llama-2-7b-hf"},
  };
  const std::vector<std::pair<std::string, std::string>> mismatch = {
      {"/home/someone/models/llama_tiny", "mistral_tiny"},
      {"mistralai/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"},
      {"/data/other/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf"},
      {"/root/.cache/huggingface/hub/models--meta-llama--Llama-2-13b-hf/snapshots/0123abc",
       "meta-llama/Llama-2-7b-hf"},
      {"llama_tiny_v2", "llama_tiny"},
      {"/", "llama_tiny"},
  };
  AdapterLoadOptions options;
  LoraConfig c;
  for (const auto& [base, served] : match) {
    c.base_model_name_or_path = base;
    options.expected_base = served;
    EXPECT_TRUE(CheckBaseModelName(c, options).ok()) << base << " vs " << served;
  }
  for (const auto& [base, served] : mismatch) {
    c.base_model_name_or_path = base;
    options.expected_base = served;
    const absl::Status s = CheckBaseModelName(c, options);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << base << " vs " << served;
  }
}

// ---- crafted adapters --------------------------------------------------------------------

struct Tensor {
  std::string name;
  std::string dtype;  // "F32", "I32", ...
  std::vector<int64_t> shape;
  float fill = 0.01f;
};

std::string Crafted(const std::vector<Tensor>& tensors) {
  std::string header = "{", data;
  for (const Tensor& t : tensors) {
    int64_t n = 1;
    std::string shape = "[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      n *= t.shape[i];
      shape += (i ? "," : "") + std::to_string(t.shape[i]);
    }
    shape += "]";
    const size_t begin = data.size();
    for (int64_t i = 0; i < n; ++i) data.append(reinterpret_cast<const char*>(&t.fill), 4);
    header += (header.size() > 1 ? "," : "") + testing::Entry(t.name, t.dtype, shape, begin, data.size());
  }
  header += "}";
  return testing::Safetensors(header, data);
}

constexpr char kQ0[] = "base_model.model.model.layers.0.self_attn.q_proj";
constexpr char kQ1[] = "base_model.model.model.layers.1.self_attn.q_proj";

// llama_tiny: q_proj is [72, 72]. A valid r=2 q_proj adapter is the starting point.
std::vector<Tensor> ValidQ() {
  return {{std::string(kQ0) + ".lora_A.weight", "F32", {2, 72}},
          {std::string(kQ0) + ".lora_B.weight", "F32", {72, 2}},
          {std::string(kQ1) + ".lora_A.weight", "F32", {2, 72}},
          {std::string(kQ1) + ".lora_B.weight", "F32", {72, 2}}};
}

class CraftedAdapterTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<LoraAdapter>> Load(const std::vector<Tensor>& tensors,
                                                    const std::string& extra_config = "") {
    WriteFile(dir_ / "adapter_config.json",
              R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"])" + extra_config + "}");
    WriteFile(dir_ / "adapter_model.safetensors", Crafted(tensors));
    return LoadLoraAdapter(dir_.path(), base_);
  }
  void ExpectInvalid(const absl::StatusOr<std::unique_ptr<LoraAdapter>>& r, const std::string& needle) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(needle));
    EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr(dir_.path())));
  }
  TempDir dir_;
  BaseModules base_ = BaseFor("llama_tiny");
};

TEST_F(CraftedAdapterTest, ValidAdapterLoads) {
  auto r = Load(ValidQ());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->modules.size(), 2u);
  EXPECT_EQ((*r)->modules[0].scale, 2.0f);
  EXPECT_EQ((*r)->max_rank, 2);
}

TEST_F(CraftedAdapterTest, WrongAShape) {
  auto t = ValidQ();
  t[0].shape = {2, 71};
  ExpectInvalid(Load(t), "q_proj.lora_A.weight\": shape [2, 71], expected [2, 72]");
}

TEST_F(CraftedAdapterTest, RankDisagreesWithConfig) {
  auto t = ValidQ();
  t[2].shape = {4, 72};
  t[3].shape = {72, 4};
  ExpectInvalid(Load(t), "shape [4, 72], expected [2, 72]");
  // ...and with rank_pattern the same tensors are right for layer 1.
  EXPECT_TRUE(Load(t, R"(, "rank_pattern": {"layers\\.1\\.self_attn\\.q_proj": 4})").ok());
}

TEST_F(CraftedAdapterTest, UnknownModule) {
  auto t = ValidQ();
  t.push_back({"base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", "F32", {2, 72}});
  ExpectInvalid(Load(t), "no such Linear module");
}

TEST_F(CraftedAdapterTest, UntargetedModule) {
  auto t = ValidQ();
  t.push_back({"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", "F32", {2, 72}});
  ExpectInvalid(Load(t), "not targeted");
}

TEST_F(CraftedAdapterTest, ExtraTensors) {
  for (const char* extra : {".lora_magnitude_vector", ".lora_B.bias", ".base_layer.weight"}) {
    auto t = ValidQ();
    t.push_back({std::string(kQ0) + extra, "F32", {72}});
    ExpectInvalid(Load(t), extra);
  }
}

TEST_F(CraftedAdapterTest, MissingB) {
  auto t = ValidQ();
  t.pop_back();
  ExpectInvalid(Load(t), "missing tensor \"base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight\"");
}

TEST_F(CraftedAdapterTest, NonFloatDtype) {
  auto t = ValidQ();
  t[1].dtype = "I32";
  ExpectInvalid(Load(t), "dtype I32");
}

TEST_F(CraftedAdapterTest, NonFiniteValues) {
  auto t = ValidQ();
  t[1].fill = std::nanf("");
  ExpectInvalid(Load(t), "not finite");
}

TEST_F(CraftedAdapterTest, TruncatedFile) {
  WriteFile(dir_ / "adapter_config.json", R"({"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]})");
  const std::string full = Crafted(ValidQ());
  WriteFile(dir_ / "adapter_model.safetensors", full.substr(0, full.size() - 100));
  ExpectInvalid(LoadLoraAdapter(dir_.path(), base_), "adapter_model.safetensors");
}

TEST_F(CraftedAdapterTest, NoWeightsFile) {
  WriteFile(dir_ / "adapter_config.json", R"({"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]})");
  ExpectInvalid(LoadLoraAdapter(dir_.path(), base_), "no adapter_model.safetensors");
}

TEST_F(CraftedAdapterTest, TooBig) {
  WriteFile(dir_ / "adapter_config.json", R"({"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]})");
  WriteFile(dir_ / "adapter_model.safetensors", Crafted(ValidQ()));
  AdapterLoadOptions options;
  options.max_adapter_bytes = 1000;
  EXPECT_EQ(LoadLoraAdapter(dir_.path(), base_, options).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(CraftedAdapterTest, WeightsSymlinkOutsideTheRootIsRefused) {
  TempDir outside;
  WriteFile(outside / "adapter_model.safetensors", Crafted(ValidQ()));
  WriteFile(dir_ / "adapter_config.json", R"({"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]})");
  std::filesystem::create_symlink(outside / "adapter_model.safetensors", dir_ / "adapter_model.safetensors");
  auto r = LoadLoraAdapter(dir_.path(), base_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr(outside.path())));
}

}  // namespace
}  // namespace kiln::engine
