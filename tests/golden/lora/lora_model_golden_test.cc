// kiln's forward with a LoRA adapter vs peft (tests/golden/fixtures/lora, made by
// tools/fixtures/make_lora_fixtures.py): the adapter is read by engine/adapter's loader,
// uploaded to the model's LoRA sites (engine/model/lora.h) and applied inside every Linear by
// Backend::LoraApply — the serving path, not a merged copy of the weights.
//  - all-position logits of the recorded prompts within 1e-4 max-abs (fp32 compute, as the
//    reference), for every adapter of every architecture;
//  - 16-token greedy continuations identical wherever the reference's top-1/top-2 margin is
//    comfortably above that error;
//  - a batch mixing several adapters and base-only sequences gives each sequence the logits
//    and greedy tokens it gets alone.
// The adapter over an NF4 base (the QLoRA serving case): the base is quantized on load with
// the fixture's BitsAndBytesConfig (nf4 + double quant, bit-exact with bitsandbytes) and the
// adapter applied on top, held to the same bounds.
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
#include "engine/runtime/lora_payloads.h"
#include "engine/quant/bnb_config.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_backend.h"
#include "tests/golden/golden_util.h"

namespace kiln::engine {
namespace {

using golden::Json;
using golden::kFixtures;
using golden::MaxAbsDiff;
using golden::ReadF32;

constexpr double kLogitTol = 1e-4;
constexpr int32_t kBlockSize = 16;
constexpr int32_t kBlocksPerSeq = 8;



std::vector<int32_t> PromptIds(const std::string& base_model, const std::string& prompt) {
  const nlohmann::json prompts = Json("reference/" + base_model + "/prompts.json");
  for (size_t i = 0; i < prompts["prompts"].size(); ++i) {
    if ("prompt" + std::to_string(i) == prompt) return prompts["prompts"][i]["ids"].get<std::vector<int32_t>>();
  }
  ADD_FAILURE() << "no " << prompt << " for " << base_model;
  return {};
}

// A base model with some adapters uploaded to it, and a KV cache with room for a few sequences.
class LoraModel {
 public:
  LoraModel(const std::string& base_model, const nlohmann::json& bnb_kwargs) {
    const std::string dir = kFixtures + "models/" + base_model;
    auto config = LoadModelConfig(dir);
    EXPECT_TRUE(config.ok()) << config.status();
    config_ = *config;
    auto ckpt = Checkpoint::Open(dir);
    EXPECT_TRUE(ckpt.ok()) << ckpt.status();
    backend_ = golden::MakeGoldenBackend();
    LoadOptions options;
    options.dtype = kernels::DType::kF32;
    if (bnb_kwargs.is_object()) {
      BitsAndBytesOptions o;
      o.load_in_4bit = bnb_kwargs.value("load_in_4bit", false);
      o.bnb_4bit_quant_type = bnb_kwargs.value("bnb_4bit_quant_type", std::string());
      o.bnb_4bit_use_double_quant = bnb_kwargs.value("bnb_4bit_use_double_quant", false);
      auto bnb = quant::ValidateBitsAndBytes(o);
      EXPECT_TRUE(bnb.ok()) << bnb.status();
      options.bitsandbytes = *bnb;
    }
    auto model = LoadCausalLm(config_, **ckpt, options, *backend_);
    EXPECT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto cache = model_->CreateKvCache({.num_blocks = 32 * kBlocksPerSeq, .block_size = kBlockSize});
    EXPECT_TRUE(cache.ok()) << cache.status();
    cache_ = std::move(*cache);
  }

  const LoraWeights* Add(const std::string& adapter_rel) {
    auto adapter = LoadLoraAdapter(kFixtures + adapter_rel, ListBaseModules(config_));
    EXPECT_TRUE(adapter.ok()) << adapter.status();
    if (!adapter.ok()) return nullptr;
    const std::vector<HostLoraModule> views = LoraModuleViews(**adapter);
    auto weights = UploadLora(*backend_, model_->lora_sites(), views);
    EXPECT_TRUE(weights.ok()) << weights.status();
    if (!weights.ok()) return nullptr;
    adapters_.push_back(std::make_unique<LoraWeights>(*std::move(weights)));
    return adapters_.back().get();
  }

  struct Seq {
    std::vector<int32_t> tokens;  // everything fed so far plus what comes next
    int32_t computed = 0;
    const LoraWeights* lora = nullptr;
    std::vector<int32_t> blocks;
  };

  Seq NewSeq(std::vector<int32_t> prompt, const LoraWeights* lora) {
    Seq s;
    s.tokens = std::move(prompt);
    s.lora = lora;
    for (int32_t b = 0; b < kBlocksPerSeq; ++b) s.blocks.push_back(next_block_++);
    return s;
  }

  // One forward over every sequence's outstanding tokens; returns each one's logits rows.
  std::vector<std::vector<float>> Step(std::vector<Seq*> seqs, bool all_logits) {
    ForwardBatch batch;
    for (Seq* s : seqs) {
      SequenceInput in;
      in.token_ids = std::span<const int32_t>(s->tokens).subspan(static_cast<size_t>(s->computed));
      in.start_pos = s->computed;
      in.block_table = s->blocks;
      in.all_logits = all_logits;
      in.lora = s->lora;
      batch.sequences.push_back(in);
    }
    ForwardOutput out;
    absl::Status status = model_->Forward(batch, *cache_, &out);
    EXPECT_TRUE(status.ok()) << status;
    std::vector<std::vector<float>> rows(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int64_t begin = status.ok() ? out.row_begin[i] : 0;
      const int64_t end = !status.ok() ? 0
                          : i + 1 < seqs.size() ? out.row_begin[i + 1]
                                                : static_cast<int64_t>(out.logits.size()) / out.vocab_size;
      rows[i].assign(out.logits.begin() + begin * out.vocab_size, out.logits.begin() + end * out.vocab_size);
      seqs[i]->computed = static_cast<int32_t>(seqs[i]->tokens.size());
    }
    return rows;
  }

  // Greedy continuation of every sequence together, `n` tokens each.
  std::vector<std::vector<int32_t>> Greedy(std::vector<Seq*> seqs, int n) {
    std::vector<std::vector<int32_t>> generated(seqs.size());
    for (int step = 0; step < n; ++step) {
      std::vector<std::vector<float>> rows = Step(seqs, /*all_logits=*/false);
      for (size_t i = 0; i < seqs.size(); ++i) {
        if (rows[i].empty()) return generated;
        const int32_t next = static_cast<int32_t>(std::max_element(rows[i].begin(), rows[i].end()) - rows[i].begin());
        generated[i].push_back(next);
        seqs[i]->tokens.push_back(next);
      }
    }
    return generated;
  }

  int64_t vocab() const { return config_.vocab_size; }
  absl::Status Merge(const LoraWeights& lora) { return MergeLora(*backend_, model_->lora_sites(), lora); }

 private:
  ModelConfig config_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<CausalLm> model_;
  std::unique_ptr<KvCache> cache_;
  std::vector<std::unique_ptr<LoraWeights>> adapters_;
  int32_t next_block_ = 0;
};


class LoraModelGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraModelGoldenTest, LogitsAndGreedyMatchPeft) {
  const nlohmann::json meta = Json("lora/lora.json");
  const nlohmann::json adapter = meta["adapters"][GetParam()];
  ASSERT_TRUE(adapter.is_object());
  const std::string base_model = adapter["base"].get<std::string>().substr(std::string("models/").size());
  const bool nf4 = adapter.value("nf4_base", false);
  const double tol = kLogitTol;
  LoraModel model(base_model, nf4 ? adapter["bnb_config"] : nlohmann::json());
  const LoraWeights* lora = model.Add("lora/" + adapter["dir"].get<std::string>());
  ASSERT_NE(lora, nullptr);

  for (const auto& prompt : meta["logit_prompts"]) {
    const std::string name = prompt.get<std::string>();
    LoraModel::Seq seq = model.NewSeq(PromptIds(base_model, name), lora);
    const std::vector<float> logits = model.Step({&seq}, /*all_logits=*/true)[0];
    const std::vector<float> ref = ReadF32("lora/reference/" + GetParam() + ".safetensors", "logits." + name);
    const double err = MaxAbsDiff(logits, ref);
    EXPECT_LE(err, tol) << GetParam() << " " << name;
    RecordProperty(name + "_max_abs_error", std::to_string(err));
  }

  int compared = 0;
  for (const auto& run : adapter["greedy"]) {
    if (run["min_margin"].get<double>() < 4 * kLogitTol) continue;
    LoraModel::Seq seq = model.NewSeq(run["input_ids"].get<std::vector<int32_t>>(), lora);
    const std::vector<int32_t> want = run["new_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(model.Greedy({&seq}, static_cast<int>(want.size()))[0], want)
        << GetParam() << " " << run["prompt"].get<std::string>();
    ++compared;
  }
  EXPECT_GE(compared, 2) << "too few greedy runs compared for " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Adapters, LoraModelGoldenTest,
                         ::testing::Values("llama_qv_r4", "llama_all_linear_rslora_r8", "qwen2_patterns",
                                           "mistral_regex", "gpt2_fan_in_fan_out", "llama_nf4_base"));

// Three adapters (ranks 4 and 8, one over every Linear) and base-only sequences in one batch, in
// an order that splits an adapter into two segments: every sequence gets what it gets alone.
TEST(LoraMixedBatchTest, EachSequenceGetsWhatItGetsAlone) {
  LoraModel model("llama_tiny", nlohmann::json());
  const LoraWeights* qv = model.Add("lora/adapters/llama_qv_r4");
  const LoraWeights* all = model.Add("lora/adapters/llama_all_linear_rslora_r8");
  ASSERT_NE(qv, nullptr);
  ASSERT_NE(all, nullptr);
  const std::vector<int32_t> p0 = PromptIds("llama_tiny", "prompt0"), p1 = PromptIds("llama_tiny", "prompt1"),
                             p2 = PromptIds("llama_tiny", "prompt2");
  struct Want {
    std::vector<int32_t> prompt;
    const LoraWeights* lora;
  };
  const std::vector<Want> wants = {{p0, qv}, {p1, nullptr}, {p2, all}, {p1, qv}, {p0, nullptr}, {p2, qv}};
  constexpr int kTokens = 8;

  std::vector<std::vector<float>> solo_first;
  std::vector<std::vector<int32_t>> solo_tokens;
  for (const Want& w : wants) {
    LoraModel::Seq s = model.NewSeq(w.prompt, w.lora);
    LoraModel::Seq copy = model.NewSeq(w.prompt, w.lora);
    solo_first.push_back(model.Step({&s}, /*all_logits=*/false)[0]);
    solo_tokens.push_back(model.Greedy({&copy}, kTokens)[0]);
  }
  std::vector<LoraModel::Seq> seqs;
  for (const Want& w : wants) seqs.push_back(model.NewSeq(w.prompt, w.lora));
  std::vector<LoraModel::Seq*> ptrs;
  for (auto& s : seqs) ptrs.push_back(&s);
  std::vector<LoraModel::Seq> again;
  for (const Want& w : wants) again.push_back(model.NewSeq(w.prompt, w.lora));
  std::vector<LoraModel::Seq*> again_ptrs;
  for (auto& s : again) again_ptrs.push_back(&s);

  const std::vector<std::vector<float>> batched_first = model.Step(ptrs, /*all_logits=*/false);
  const std::vector<std::vector<int32_t>> batched_tokens = model.Greedy(again_ptrs, kTokens);
  for (size_t i = 0; i < wants.size(); ++i) {
    // fp32 rounding only: the GEMM kernel OpenBLAS picks depends on the row count (and on the
    // column slice each thread takes), so batched and solo sums differ in order. Leakage
    // between sequences would be orders of magnitude larger. The bound is DESIGN.md §7's fp32
    // logits tolerance.
    EXPECT_LE(MaxAbsDiff(batched_first[i], solo_first[i]), 1e-4) << "sequence " << i;
    EXPECT_EQ(batched_tokens[i], solo_tokens[i]) << "sequence " << i;
  }
  // The adapters really change the output (otherwise the comparison above proves nothing).
  EXPECT_GT(MaxAbsDiff(solo_first[0], solo_first[4]), 1e-2);
  EXPECT_NE(solo_tokens[1], solo_tokens[3]);
}

// merge_adapter: the adapter folded into the dense weights gives peft's logits with no
// adapter applied per token (GPT-2's fused c_attn merges slice by slice).
class LoraMergeGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraMergeGoldenTest, MergedWeightsGivePeftLogits) {
  const nlohmann::json meta = Json("lora/lora.json");
  const nlohmann::json adapter = meta["adapters"][GetParam()];
  const std::string base_model = adapter["base"].get<std::string>().substr(std::string("models/").size());
  LoraModel model(base_model, nlohmann::json());
  const LoraWeights* lora = model.Add("lora/" + adapter["dir"].get<std::string>());
  ASSERT_NE(lora, nullptr);
  ASSERT_TRUE(model.Merge(*lora).ok());
  for (const auto& prompt : meta["logit_prompts"]) {
    const std::string name = prompt.get<std::string>();
    LoraModel::Seq seq = model.NewSeq(PromptIds(base_model, name), /*lora=*/nullptr);
    const std::vector<float> logits = model.Step({&seq}, /*all_logits=*/true)[0];
    const std::vector<float> ref = ReadF32("lora/reference/" + GetParam() + ".safetensors", "logits." + name);
    EXPECT_LE(MaxAbsDiff(logits, ref), kLogitTol) << GetParam() << " " << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Adapters, LoraMergeGoldenTest,
                         ::testing::Values("llama_all_linear_rslora_r8", "qwen2_patterns", "gpt2_fan_in_fan_out"));

TEST(LoraMergeTest, AQuantizedBaseIsRefusedAndLeftUnchanged) {
  nlohmann::json bnb = {{"load_in_4bit", true}, {"bnb_4bit_quant_type", "nf4"}};
  LoraModel model("llama_tiny", bnb);
  const LoraWeights* lora = model.Add("lora/adapters/llama_qv_r4");
  ASSERT_NE(lora, nullptr);
  LoraModel::Seq before = model.NewSeq(PromptIds("llama_tiny", "prompt0"), nullptr);
  const std::vector<float> logits_before = model.Step({&before}, false)[0];
  const absl::Status status = model.Merge(*lora);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("quantized"), std::string::npos) << status;
  LoraModel::Seq after = model.NewSeq(PromptIds("llama_tiny", "prompt0"), nullptr);
  EXPECT_EQ(model.Step({&after}, false)[0], logits_before);
}

TEST(LoraSitesTest, AnAdapterForAnotherModelIsRefusedAtUpload) {
  LoraModel llama("llama_tiny", nlohmann::json());
  LoraModel gpt2("gpt2_tiny", nlohmann::json());
  // gpt2's adapter names modules llama does not have.
  auto adapter = LoadLoraAdapter(kFixtures + "lora/adapters/gpt2_fan_in_fan_out",
                                 ListBaseModules(*LoadModelConfig(kFixtures + "models/gpt2_tiny")));
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_NE(gpt2.Add("lora/adapters/gpt2_fan_in_fan_out"), nullptr);
  const std::vector<HostLoraModule> views = LoraModuleViews(**adapter);
  std::unique_ptr<kernels::Backend> backend = golden::MakeGoldenBackend(1);
  ASSERT_NE(backend, nullptr);
  // Sites of llama: none is a GPT-2 module.
  auto model_config = LoadModelConfig(kFixtures + "models/llama_tiny");
  ASSERT_TRUE(model_config.ok());
  std::vector<LoraSite> llama_sites;
  for (const BaseLinear& b : ListBaseModules(*model_config).linears) {
    llama_sites.push_back({b.name, b.out_features, b.in_features, 0, b.out_features, kernels::TensorView()});
  }
  auto uploaded = UploadLora(*backend, llama_sites, views);
  EXPECT_EQ(uploaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(uploaded.status().message().find("transformer.h.0"), std::string::npos) << uploaded.status();
}

}  // namespace
}  // namespace kiln::engine
