// ReadPrequantizedLinear over the committed pre-quantized fixtures
// (tools/fixtures/make_prequant_fixtures.py): what kiln reads dequantizes bit-identically to the
// reference's dequantized weights, and every checkpoint tensor belongs to some module.
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/io/checkpoint.h"
#include "engine/io/json_util.h"
#include "engine/io/safetensors.h"
#include "engine/quant/bnb4.h"
#include "engine/quant/prequant/prequant_config.h"
#include "engine/quant/prequant/prequant_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/quant/quant_matrix.h"

namespace kiln::engine::quant {
namespace {

using kernels::DType;

const std::string kRoot = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/prequant/";

struct Module {
  std::string name;
  int64_t out, in;
};
// The modules whose dequantized weights the fixtures record.
const std::vector<Module> kRecorded = {{"model.layers.0.self_attn.q_proj", 72, 72},
                                       {"model.layers.0.self_attn.k_proj", 24, 72},
                                       {"model.layers.1.mlp.down_proj", 72, 136}};

std::vector<Module> AllLinears() {
  std::vector<Module> all;
  for (int layer = 0; layer < 2; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    for (auto [n, o, i] : std::vector<std::tuple<const char*, int64_t, int64_t>>{
             {"self_attn.q_proj", 72, 72}, {"self_attn.k_proj", 24, 72}, {"self_attn.v_proj", 24, 72},
             {"self_attn.o_proj", 72, 72}, {"mlp.gate_proj", 136, 72}, {"mlp.up_proj", 136, 72},
             {"mlp.down_proj", 72, 136}}) {
      all.push_back({p + n, o, i});
    }
  }
  return all;
}

class Fixture {
 public:
  explicit Fixture(const std::string& variant) : dir_(kRoot + variant) {
    auto cfg_json = ReadJsonFile(dir_ + "/config.json", "config.json");
    EXPECT_TRUE(cfg_json.ok()) << cfg_json.status();
    std::string qc;
    if (cfg_json.ok() && cfg_json->contains("quantization_config")) qc = (*cfg_json)["quantization_config"].dump();
    auto cfg = DetectPrequantConfig(dir_, qc);
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    EXPECT_TRUE(cfg.ok() && cfg->has_value());
    if (cfg.ok() && cfg->has_value()) config_ = **cfg;
    auto ckpt = Checkpoint::Open(dir_);
    EXPECT_TRUE(ckpt.ok()) << ckpt.status();
    if (ckpt.ok()) ckpt_ = *std::move(ckpt);
    auto ref = SafetensorsFile::Open(kRoot + variant + ".reference.safetensors", "reference");
    EXPECT_TRUE(ref.ok()) << ref.status();
    if (ref.ok()) ref_ = *std::move(ref);
  }
  bool ok() const { return ckpt_ != nullptr && ref_ != nullptr; }
  const Checkpoint& ckpt() const { return *ckpt_; }
  const PrequantConfig& config() const { return config_; }

  // A reference tensor widened to fp32 (F32 or F16).
  std::vector<float> Ref(const std::string& name) const {
    const TensorInfo* info = ref_->Find(name);
    EXPECT_NE(info, nullptr) << name;
    if (info == nullptr) return {};
    std::vector<uint8_t> bytes(info->num_bytes());
    EXPECT_TRUE(ref_->Read(*info, bytes).ok());
    std::vector<float> out(info->num_elements);
    for (size_t i = 0; i < out.size(); ++i) {
      if (info->dtype == DType::kF16) {
        uint16_t h;
        std::memcpy(&h, bytes.data() + 2 * i, 2);
        out[i] = kernels::HalfToFloat(h);
      } else {
        std::memcpy(&out[i], bytes.data() + 4 * i, 4);
      }
    }
    return out;
  }

 private:
  std::string dir_;
  PrequantConfig config_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<SafetensorsFile> ref_;
};

std::vector<float> Dequantize(const kernels::QuantizedMatrix& m) {
  std::vector<float> w(static_cast<size_t>(m.rows * m.cols));
  kernels::DequantizeRows(m, 0, m.rows, w.data());
  return w;
}

// Bit-identical (so -0.0 vs 0.0 or NaN payloads would show up too).
void ExpectBitIdentical(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t first = got.size();
  size_t count = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      if (first == got.size()) first = i;
      ++count;
    }
  }
  EXPECT_EQ(count, 0u) << what << ": " << count << " differ, first at " << first << ": " << got[first] << " vs "
                       << want[first];
}

class GptqAwqFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GptqAwqFixtureTest, DequantizedWeightsAreBitIdentical) {
  Fixture f(GetParam());
  ASSERT_TRUE(f.ok());
  for (const Module& m : kRecorded) {
    SCOPED_TRACE(m.name);
    auto lin = ReadPrequantizedLinear(f.ckpt(), f.config(), m.name, m.out, m.in, {.compute_dtype = DType::kF32});
    ASSERT_TRUE(lin.ok()) << lin.status();
    // The published formula in fp32 (scale * (q - z)).
    ExpectBitIdentical(Dequantize(lin->matrix), f.Ref(m.name + ".dequant"), "fp32");
    // The reference's own fp16 dequantization (AutoGPTQ / AutoAWQ semantics).
    kernels::QuantizedMatrix half = lin->matrix;
    half.compute_dtype = DType::kF16;
    ExpectBitIdentical(Dequantize(half), f.Ref(m.name + ".dequant_f16"), "fp16");
    // Row ranges agree with the whole.
    std::vector<float> all = Dequantize(lin->matrix);
    std::vector<float> part(static_cast<size_t>(5 * m.in));
    kernels::DequantizeRows(lin->matrix, 7, 12, part.data());
    EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin() + 7 * m.in));
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, GptqAwqFixtureTest,
                         ::testing::Values("gptq_4bit_g32_sym", "gptq_4bit_g32_asym_descact", "gptq_8bit_gall_asym",
                                           "awq_4bit_g8"));

TEST(PrequantFixtureTest, DescActFixtureHasAPermutedGIdx) {
  Fixture f("gptq_4bit_g32_asym_descact");
  ASSERT_TRUE(f.ok());
  auto lin = ReadPrequantizedLinear(f.ckpt(), f.config(), "model.layers.0.self_attn.q_proj", 72, 72);
  ASSERT_TRUE(lin.ok()) << lin.status();
  const auto& g_idx = lin->tensors.back();
  ASSERT_EQ(g_idx.role, QuantRole::kGptqGIdx);
  std::vector<int32_t> idx(72);
  std::memcpy(idx.data(), g_idx.bytes.data(), 72 * 4);
  EXPECT_FALSE(std::is_sorted(idx.begin(), idx.end()));
  EXPECT_EQ(lin->matrix.gptq.groups, 3);  // ceil(72 / 32)
  EXPECT_EQ(lin->matrix.gptq.zero_offset, 1);
}

TEST(PrequantFixtureTest, GIdxDefaultsToKOverGroupSizeWhenAbsent) {
  Fixture f("gptq_8bit_gall_asym");  // written without g_idx, group_size -1
  ASSERT_TRUE(f.ok());
  auto lin = ReadPrequantizedLinear(f.ckpt(), f.config(), "model.layers.1.mlp.down_proj", 72, 136);
  ASSERT_TRUE(lin.ok()) << lin.status();
  EXPECT_EQ(lin->matrix.gptq.groups, 1);
  EXPECT_EQ(lin->matrix.gptq.bits, 8);
  EXPECT_EQ(lin->consumed.size(), 3u);  // no g_idx consumed
}

TEST(PrequantFixtureTest, Bnb4NestedDequantizesLikeBitsandbytes) {
  Fixture f("bnb_nf4_dq");
  ASSERT_TRUE(f.ok());
  for (const Module& m : kRecorded) {
    SCOPED_TRACE(m.name);
    auto lin = ReadPrequantizedLinear(f.ckpt(), f.config(), m.name, m.out, m.in);
    ASSERT_TRUE(lin.ok()) << lin.status();
    EXPECT_EQ(lin->matrix.format, kernels::QuantFormat::kBnb4);
    EXPECT_EQ(lin->matrix.bnb4.blocksize, 64);
    ASSERT_EQ(lin->tensors.size(), 2u);
    const HostTensor& packed = lin->tensors[0];
    const HostTensor& absmax = lin->tensors[1];
    std::vector<float> absmax_f32(absmax.bytes.size() / 4);
    std::memcpy(absmax_f32.data(), absmax.bytes.data(), absmax.bytes.size());
    // kiln's bit-exact bnb dequantizer over what the reader produced (expanded nested absmax).
    auto w = Dequantize4bit(packed.bytes, absmax_f32, Bnb4Type::kNf4, lin->matrix.bnb4.blocksize, m.out * m.in);
    ASSERT_TRUE(w.ok()) << w.status();
    ExpectBitIdentical(*w, f.Ref(m.name + ".dequant"), "nf4 double-quant");
  }
}

TEST(PrequantFixtureTest, Int8RowFormatAndScb) {
  Fixture f("bnb_int8");
  ASSERT_TRUE(f.ok());
  for (const Module& m : kRecorded) {
    SCOPED_TRACE(m.name);
    auto lin = ReadPrequantizedLinear(f.ckpt(), f.config(), m.name, m.out, m.in);
    ASSERT_TRUE(lin.ok()) << lin.status();
    EXPECT_EQ(lin->matrix.format, kernels::QuantFormat::kInt8);
    EXPECT_FLOAT_EQ(lin->matrix.int8.threshold, 6.0f);
    const auto* w = reinterpret_cast<const int8_t*>(lin->tensors[0].bytes.data());
    std::vector<float> scb(static_cast<size_t>(m.out));
    std::memcpy(scb.data(), lin->tensors[1].bytes.data(), scb.size() * 4);
    // bitsandbytes' int8_vectorwise_dequant: A * SCB * 7.874015718698502e-3 (fp32 reciprocal of 127).
    std::vector<float> deq(static_cast<size_t>(m.out * m.in));
    for (int64_t r = 0; r < m.out; ++r) {
      for (int64_t c = 0; c < m.in; ++c) {
        deq[r * m.in + c] = static_cast<float>(w[r * m.in + c]) * scb[r] * 7.874015718698502e-3f;
      }
    }
    ExpectBitIdentical(deq, f.Ref(m.name + ".dequant"), "int8");
  }
}

class AllTensorsUsedTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AllTensorsUsedTest, EveryModuleReadsAndEveryTensorIsAccountedFor) {
  Fixture f(GetParam());
  ASSERT_TRUE(f.ok());
  std::set<std::string> used = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
  for (int layer = 0; layer < 2; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    used.insert({p + "input_layernorm.weight", p + "post_attention_layernorm.weight"});
  }
  for (const Module& m : AllLinears()) {
    SCOPED_TRACE(m.name);
    auto lin = ReadPrequantizedLinear(f.ckpt(), f.config(), m.name, m.out, m.in);
    ASSERT_TRUE(lin.ok()) << lin.status();
    std::vector<std::string> names = PrequantTensorNames(f.ckpt(), f.config(), m.name);
    std::vector<std::string> consumed = lin->consumed;
    std::sort(names.begin(), names.end());
    std::sort(consumed.begin(), consumed.end());
    EXPECT_EQ(names, consumed);
    used.insert(names.begin(), names.end());
    // Views point at the host bytes; Rebind accepts same-shaped views and refuses others.
    std::vector<kernels::TensorView> views;
    for (const HostTensor& t : lin->tensors) views.push_back(t.View());
    EXPECT_TRUE(lin->Rebind(views).ok());
    views.pop_back();
    EXPECT_EQ(lin->Rebind(views).status().code(), absl::StatusCode::kInvalidArgument);
  }
  std::vector<std::string> all = f.ckpt().TensorNames();
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()), used);
}

INSTANTIATE_TEST_SUITE_P(Variants, AllTensorsUsedTest,
                         ::testing::Values("bnb_nf4_dq", "bnb_int8", "gptq_4bit_g32_sym",
                                           "gptq_4bit_g32_asym_descact", "gptq_8bit_gall_asym", "awq_4bit_g8"));

}  // namespace
}  // namespace kiln::engine::quant
