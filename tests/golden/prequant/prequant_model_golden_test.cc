// kiln loading pre-quantized llama_tiny checkpoints as stored (tests/golden/fixtures/prequant,
// made by tools/fixtures/make_prequant_fixtures.py) vs the reference forward:
//  - bnb_nf4_dq / bnb_int8: bitsandbytes' own save_pretrained output, reference = transformers
//    from_pretrained of that directory on CPU (bitsandbytes' portable forward, fp32);
//  - GPTQ (4-bit sym, 4-bit asym + desc_act, 8-bit group -1 from quantize_config.json) and AWQ
//    GEMM: reference = the model with the published dequantization of every Linear, fp32.
// Logits of the recorded prompts within 1e-4 max-abs; the checkpoint's config is detected by
// LoadCausalLm itself (config.json quantization_config, or quantize_config.json), nothing is
// re-quantized, and the weights take fewer bytes than the dense fp32 model.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/io/checkpoint.h"
#include "engine/io/json_util.h"
#include "engine/io/safetensors.h"
#include "engine/model/causal_lm.h"
#include "engine/model/model_config.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_util.h"
#include "tests/golden/golden_backend.h"

namespace kiln::engine {
namespace {

const std::string kDir = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/prequant/";
constexpr double kLogitTol = 1e-4;

std::vector<float> ReadF32(const std::string& file, const std::string& key) {
  return golden::ReadF32("prequant/" + file, key);
}

class PrequantModelGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PrequantModelGoldenTest, LogitsMatchTheReference) {
  auto manifest = ReadJsonFile(kDir + "manifest.json", "manifest.json");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const std::string dir = kDir + GetParam();
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto checkpoint = Checkpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  std::unique_ptr<kernels::Backend> backend = golden::MakeGoldenBackend();
  ASSERT_NE(backend, nullptr);
  LoadOptions options;
  options.dtype = kernels::DType::kF32;
  auto model = LoadCausalLm(*config, **checkpoint, options, *backend);
  ASSERT_TRUE(model.ok()) << model.status();

  // Quantized Linear weights: well under the dense fp32 model's bytes.
  const auto dense = LoadModelConfig(std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/llama_tiny");
  ASSERT_TRUE(dense.ok());
  auto dense_ckpt = Checkpoint::Open(std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/llama_tiny");
  ASSERT_TRUE(dense_ckpt.ok());
  auto dense_model = LoadCausalLm(*dense, **dense_ckpt, options, *backend);
  ASSERT_TRUE(dense_model.ok());
  EXPECT_LT((*model)->weight_bytes(), (*dense_model)->weight_bytes()) << GetParam();

  auto cache = (*model)->CreateKvCache({.num_blocks = 8, .block_size = 16});
  ASSERT_TRUE(cache.ok());
  std::vector<int32_t> blocks = {0, 1, 2, 3, 4, 5, 6, 7};
  const nlohmann::json& prompts = (*manifest)["prompts"];
  ASSERT_GE(prompts.size(), 2u);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<int32_t> ids = prompts[i].get<std::vector<int32_t>>();
    ForwardBatch batch;
    SequenceInput seq;
    seq.token_ids = ids;
    seq.block_table = blocks;
    seq.all_logits = true;
    batch.sequences.push_back(seq);
    ForwardOutput out;
    ASSERT_TRUE((*model)->Forward(batch, **cache, &out).ok());
    const std::vector<float> ref =
        ReadF32(GetParam() + ".reference.safetensors", "prompt" + std::to_string(i) + ".logits");
    ASSERT_EQ(out.logits.size(), ref.size());
    double worst = 0;
    for (size_t j = 0; j < ref.size(); ++j) worst = std::max(worst, std::fabs(double{out.logits[j]} - ref[j]));
    EXPECT_LE(worst, kLogitTol) << GetParam() << " prompt" << i;
    RecordProperty("prompt" + std::to_string(i) + "_max_abs_error", std::to_string(worst));
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, PrequantModelGoldenTest,
                         ::testing::Values("bnb_nf4_dq", "bnb_int8", "gptq_4bit_g32_sym",
                                           "gptq_4bit_g32_asym_descact", "gptq_8bit_gall_asym", "awq_4bit_g8"));

}  // namespace
}  // namespace kiln::engine
