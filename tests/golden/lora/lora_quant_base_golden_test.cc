// A LoRA adapter served over quantized bases vs peft (issue #6; tests/golden/fixtures/lora_quant, made by
// tools/fixtures/make_lora_quant_fixtures.py). The adapter lora/adapters/llama_qv_r4 (q/v_proj, r=4) is
// read by engine/adapter's loader, uploaded to the model's LoRA sites and applied per token inside
// the quantized Linears (Backend::LoraApply; nothing is merged) over llama_tiny:
//  - bnb_fp4 / bnb_int8: quantized on load (LoadOptions::bitsandbytes) with the fixture's
//    BitsAndBytesConfig; reference = peft over transformers + bitsandbytes on CPU (fp32 compute);
//  - gptq_* / awq_*: the pre-quantized checkpoints of fixtures/prequant, loaded as stored;
//    reference = peft over the base whose Linears are the published fp32 dequantization (transformers
//    cannot load GPTQ/AWQ on a CPU-only stack; the script checks that base reproduces prequant's own
//    reference logits bit for bit).
// Checks: every adapted module is a quantized site in kiln; all-position logits of the recorded
// prompts within 1e-4 max-abs of peft's (fp32 compute on both sides: kiln and the reference round
// the same quantized weights identically, only fp32 summation order differs; the prequant and bnb
// goldens measure 1e-6..1e-5 for the bases alone); the adapter really moves the logits (the base
// alone is > 1e-2 away from the reference); 16-token greedy continuations identical wherever the
// reference's smallest top-1/top-2 margin is at least 4x the tolerance.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/adapter/adapter_loader.h"
#include "engine/adapter/base_modules.h"
#include "engine/io/checkpoint.h"
#include "engine/io/json_util.h"
#include "engine/io/safetensors.h"
#include "engine/model/causal_lm.h"
#include "engine/model/lora.h"
#include "engine/model/model_config.h"
#include "engine/quant/bnb_config.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_util.h"
#include "kernels/cpu/cpu_backend.h"

namespace kiln::engine {
namespace {

using golden::kFixtures;
using golden::MaxAbsDiff;
constexpr double kLogitTol = 1e-4;
constexpr int32_t kBlockSize = 16;
constexpr int32_t kNumBlocks = 8;  // 128 tokens: the longest prompt (40) + 16 new ones fit

nlohmann::json Meta() {
  auto j = ReadJsonFile(kFixtures + "lora_quant/lora_quant.json", "lora_quant.json");
  EXPECT_TRUE(j.ok()) << j.status();
  return j.ok() ? *j : nlohmann::json();
}

std::vector<float> Reference(const std::string& key) {
  return golden::ReadF32("lora_quant/lora_quant.safetensors", key);
}

// The fixture's BitsAndBytesConfig kwargs as LoadModel options, validated as LoadModel does.
quant::BnbQuantConfig BnbFrom(const nlohmann::json& kwargs) {
  BitsAndBytesOptions o;
  o.load_in_4bit = kwargs.value("load_in_4bit", false);
  o.load_in_8bit = kwargs.value("load_in_8bit", false);
  o.bnb_4bit_quant_type = kwargs.value("bnb_4bit_quant_type", std::string());
  if (kwargs.contains("llm_int8_threshold")) o.llm_int8_threshold = kwargs["llm_int8_threshold"].get<float>();
  auto cfg = quant::ValidateBitsAndBytes(o);
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  return cfg.ok() ? *cfg : quant::BnbQuantConfig{};
}


class LoraQuantBaseGoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    meta_ = Meta();
    base_ = meta_["bases"][GetParam()];
    ASSERT_TRUE(base_.is_object()) << GetParam();
    const bool prequantized = base_["kind"].get<std::string>() == "prequantized";
    const std::string dir =
        kFixtures + (prequantized ? base_["checkpoint"].get<std::string>() : meta_["model"].get<std::string>());
    auto config = LoadModelConfig(dir);
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    auto ckpt = Checkpoint::Open(dir);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    backend_ = std::move(*kernels::cpu::CreateCpuBackend({.num_threads = 2}));
    LoadOptions options;
    options.dtype = kernels::DType::kF32;
    if (!prequantized) options.bitsandbytes = BnbFrom(base_["bnb_config"]);  // prequant: LoadCausalLm detects it
    auto model = LoadCausalLm(config_, **ckpt, options, *backend_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);

    auto adapter = LoadLoraAdapter(kFixtures + meta_["adapter"].get<std::string>(), ListBaseModules(config_));
    ASSERT_TRUE(adapter.ok()) << adapter.status();
    std::vector<HostLoraModule> views;
    for (const LoraModule& m : (*adapter)->modules) {
      adapted_.push_back(m.name);
      views.push_back({.module = m.name, .rank = m.r, .scale = m.scale, .a = m.a, .b = m.b});
    }
    auto weights = UploadLora(*backend_, model_->lora_sites(), views);
    ASSERT_TRUE(weights.ok()) << weights.status();
    lora_ = std::make_unique<LoraWeights>(*std::move(weights));
    adapter_ = std::move(*adapter);  // views point into it
  }

  // Logits of every position of `ids` (fresh cache).
  std::vector<float> AllLogits(const std::vector<int32_t>& ids, const LoraWeights* lora) {
    auto cache = model_->CreateKvCache({.num_blocks = kNumBlocks, .block_size = kBlockSize});
    EXPECT_TRUE(cache.ok()) << cache.status();
    if (!cache.ok()) return {};
    std::vector<int32_t> blocks(kNumBlocks);
    for (int32_t i = 0; i < kNumBlocks; ++i) blocks[static_cast<size_t>(i)] = i;
    ForwardBatch batch;
    batch.sequences.push_back({.token_ids = ids, .block_table = blocks, .all_logits = true, .lora = lora});
    ForwardOutput out;
    const absl::Status s = model_->Forward(batch, **cache, &out);
    EXPECT_TRUE(s.ok()) << s;
    return out.logits;
  }

  // Greedy continuation through the KV cache: prefill, then one token per step.
  std::vector<int32_t> Greedy(const std::vector<int32_t>& ids, size_t n) {
    auto cache = model_->CreateKvCache({.num_blocks = kNumBlocks, .block_size = kBlockSize});
    EXPECT_TRUE(cache.ok()) << cache.status();
    if (!cache.ok()) return {};
    std::vector<int32_t> blocks(kNumBlocks);
    for (int32_t i = 0; i < kNumBlocks; ++i) blocks[static_cast<size_t>(i)] = kNumBlocks - 1 - i;
    std::vector<int32_t> generated, step = ids;
    int32_t start = 0;
    while (generated.size() < n) {
      ForwardBatch batch;
      batch.sequences.push_back({.token_ids = step, .start_pos = start, .block_table = blocks, .lora = lora_.get()});
      ForwardOutput out;
      const absl::Status s = model_->Forward(batch, **cache, &out);
      EXPECT_TRUE(s.ok()) << s;
      if (!s.ok()) break;
      const auto last = out.Last(0);
      generated.push_back(static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin()));
      start += static_cast<int32_t>(step.size());
      step = {generated.back()};
    }
    return generated;
  }

  nlohmann::json meta_, base_;
  ModelConfig config_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<CausalLm> model_;
  std::unique_ptr<LoraAdapter> adapter_;
  std::unique_ptr<LoraWeights> lora_;
  std::vector<std::string> adapted_;
};

TEST_P(LoraQuantBaseGoldenTest, AdaptedModulesAreQuantizedSites) {
  std::vector<std::string> quantized_adapted;
  for (const LoraSite& site : model_->lora_sites()) {
    if (std::find(adapted_.begin(), adapted_.end(), site.module) == adapted_.end()) continue;
    EXPECT_TRUE(site.dense.empty()) << site.module << " is dense: the adapter would not run over a quantized base";
    quantized_adapted.push_back(site.module);
  }
  std::vector<std::string> want = base_["targeted_modules"].get<std::vector<std::string>>();
  std::sort(quantized_adapted.begin(), quantized_adapted.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(quantized_adapted, want);  // the modules peft adapted, no more, no fewer
}

TEST_P(LoraQuantBaseGoldenTest, LogitsAndGreedyMatchPeft) {
  std::vector<std::vector<int32_t>> prompt_ids;
  for (const auto& run : base_["greedy"]) prompt_ids.push_back(run["input_ids"].get<std::vector<int32_t>>());
  for (const auto& p : meta_["logit_prompts"]) {
    const std::string prompt = p.get<std::string>();
    SCOPED_TRACE(prompt);
    const size_t index = std::stoul(prompt.substr(std::string("prompt").size()));
    ASSERT_LT(index, prompt_ids.size());
    const std::vector<float> ref = Reference(GetParam() + "." + prompt);
    const std::vector<float> got = AllLogits(prompt_ids[index], lora_.get());
    const double err = MaxAbsDiff(got, ref);
    EXPECT_LE(err, kLogitTol);
    const double adapter_effect = MaxAbsDiff(AllLogits(prompt_ids[index], nullptr), ref);
    EXPECT_GT(adapter_effect, 1e-2) << "the adapter barely changes the logits: the comparison proves little";
    RecordProperty(prompt + "_max_abs_error", std::to_string(err));
    std::printf("[ %s %s ] logits max-abs error %.3g (base alone %.3g away)\n", GetParam().c_str(), prompt.c_str(),
                err, adapter_effect);
  }
  int compared = 0;
  for (const auto& run : base_["greedy"]) {
    const std::string prompt = run["prompt"].get<std::string>();
    const double margin = run["min_margin"].get<double>();
    if (margin < 4 * kLogitTol) {
      std::printf("[ %s %s ] greedy not compared: reference margin %.3g is a near tie\n", GetParam().c_str(),
                  prompt.c_str(), margin);
      continue;
    }
    const std::vector<int32_t> want = run["new_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(Greedy(run["input_ids"].get<std::vector<int32_t>>(), want.size()), want) << prompt;
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>(base_["greedy"].size()));  // every reference margin is >= 7e-4
}

INSTANTIATE_TEST_SUITE_P(Bases, LoraQuantBaseGoldenTest,
                         ::testing::Values("bnb_fp4", "bnb_int8", "gptq_4bit_g32_sym", "gptq_4bit_g32_asym_descact",
                                           "gptq_8bit_gall_asym", "awq_4bit_g8"));

}  // namespace
}  // namespace kiln::engine
