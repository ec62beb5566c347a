// CausalLm behaviour on the committed tiny fixtures: registry, weight-loading errors, batch
// invariance, chunked/incremental decode == one prefill, input validation, KvBlockPool.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "engine/io/checkpoint.h"
#include "engine/io/safetensors.h"
#include "engine/model/causal_lm.h"
#include "engine/model/registry.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "nlohmann/json.hpp"

namespace kiln::engine {
namespace {

namespace fs = std::filesystem;
const std::string kModels = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/";

std::unique_ptr<kernels::Backend> Cpu() { return std::move(*kernels::cpu::CreateCpuBackend({.num_threads = 2})); }

struct Model {
  std::unique_ptr<kernels::Backend> backend = Cpu();
  std::unique_ptr<CausalLm> lm;
};

Model LoadFixture(const std::string& name, kernels::DType dtype = kernels::DType::kF32) {
  Model m;
  auto config = LoadModelConfig(kModels + name);
  EXPECT_TRUE(config.ok()) << config.status();
  auto ckpt = Checkpoint::Open(kModels + name);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  auto lm = LoadCausalLm(*config, **ckpt, {.dtype = dtype}, *m.backend);
  EXPECT_TRUE(lm.ok()) << lm.status();
  if (lm.ok()) m.lm = std::move(*lm);
  return m;  // the checkpoint closes here: weights must not point into it
}

std::vector<int32_t> Tokens(int n, int seed, int vocab) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((seed * 131 + i * 37) % vocab);
  return ids;
}

double MaxDiff(std::span<const float> a, std::span<const float> b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double{a[i]} - b[i]));
  return m;
}

TEST(RegistryTest, UnknownArchitectureListsSupported) {
  auto f = FindArchitecture("FalconForCausalLM");
  ASSERT_EQ(f.status().code(), absl::StatusCode::kUnimplemented);
  for (const char* name : {"FalconForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel"}) {
    EXPECT_NE(f.status().message().find(name), std::string::npos) << f.status();
  }
  EXPECT_TRUE(FindArchitecture("GPT2LMHeadModel").ok());
  EXPECT_EQ(RegisteredArchitectures().size(), 4u);
}

// Rewrites a fixture's single-file checkpoint with `edit` applied to the tensor map.
class BrokenCheckpointTest : public ::testing::Test {
 protected:
  using Tensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) / ("kiln_model_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    fs::copy_file(kModels + "qwen2_tiny/config.json", dir_ / "config.json", fs::copy_options::overwrite_existing);
    auto file = SafetensorsFile::Open(kModels + "qwen2_tiny/model.safetensors", "model.safetensors");
    ASSERT_TRUE(file.ok()) << file.status();
    for (const TensorInfo& t : (*file)->tensors()) {
      std::vector<float> data(t.num_elements);
      ASSERT_TRUE((*file)->Read(t, std::span<uint8_t>(reinterpret_cast<uint8_t*>(data.data()), t.num_bytes())).ok());
      tensors_[t.name] = {t.shape, data};
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  absl::Status LoadWith(const Tensors& tensors) {
    nlohmann::json header = nlohmann::json::object();
    std::string data;
    for (const auto& [name, t] : tensors) {
      header[name] = {{"dtype", "F32"}, {"shape", t.first}, {"data_offsets", {data.size(), data.size() + t.second.size() * 4}}};
      data.append(reinterpret_cast<const char*>(t.second.data()), t.second.size() * 4);
    }
    std::string h = header.dump();
    while (h.size() % 8 != 0) h += ' ';
    std::ofstream out(dir_ / "model.safetensors", std::ios::binary | std::ios::trunc);
    const uint64_t n = h.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << h << data;
    out.close();
    auto config = LoadModelConfig(dir_.string());
    if (!config.ok()) return config.status();
    auto ckpt = Checkpoint::Open(dir_.string());
    if (!ckpt.ok()) return ckpt.status();
    auto backend = Cpu();
    std::vector<std::string> progress;
    auto lm = LoadCausalLm(*config, **ckpt, {.dtype = kernels::DType::kBF16,
                                             .progress = [&](const LoadProgress& p) {
                                               progress.push_back(p.tensor);
                                               EXPECT_EQ(p.tensors_total, static_cast<int64_t>(tensors.size()));
                                               EXPECT_LE(p.bytes_done, p.bytes_total);
                                             }},
                           *backend);
    if (lm.ok()) {
      EXPECT_EQ(progress.size(), tensors.size());  // one callback per tensor
      EXPECT_EQ((*lm)->dtype(), kernels::DType::kBF16);
    }
    return lm.status();
  }

  fs::path dir_;
  Tensors tensors_;
};

TEST_F(BrokenCheckpointTest, IntactCheckpointLoads) { EXPECT_TRUE(LoadWith(tensors_).ok()); }

TEST_F(BrokenCheckpointTest, MissingTensorNamed) {
  Tensors t = tensors_;
  t.erase("model.layers.1.self_attn.k_proj.bias");
  absl::Status s = LoadWith(t);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layers.1.self_attn.k_proj.bias"), std::string::npos) << s;
}

TEST_F(BrokenCheckpointTest, MisShapedTensorNamedWithBothShapes) {
  Tensors t = tensors_;
  auto& w = t["model.layers.0.mlp.up_proj.weight"];
  w.first = {w.first[1], w.first[0]};  // transposed
  absl::Status s = LoadWith(t);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << s;
  EXPECT_NE(s.message().find("[64, 112]"), std::string::npos) << s;
}

TEST_F(BrokenCheckpointTest, UnexpectedTensorNamed) {
  Tensors t = tensors_;
  t["model.layers.2.input_layernorm.weight"] = {{64}, std::vector<float>(64, 1.0f)};
  absl::Status s = LoadWith(t);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layers.2.input_layernorm.weight"), std::string::npos) << s;
}

// Sequences alone vs together (mixed prefill, chunked prefill and decode in one batch).
void ExpectBatchInvariant(CausalLm& lm) {
  const int vocab = static_cast<int>(lm.config().vocab_size);
  const std::vector<int32_t> a = Tokens(13, 1, vocab), b = Tokens(30, 2, vocab), c = Tokens(1, 3, vocab);
  KvBlockPool pool(64);
  auto cache = lm.CreateKvCache({.num_blocks = 64, .block_size = 4});
  ASSERT_TRUE(cache.ok());
  const std::vector<int32_t> ta = *pool.Allocate(8), tb = *pool.Allocate(8), tc = *pool.Allocate(8);
  // Alone: a as one prefill; b's first 20 tokens, then its last 10 as a chunk; c as one token.
  auto run = [&](std::vector<SequenceInput> seqs) {
    ForwardBatch batch{seqs};
    ForwardOutput out;
    absl::Status s = lm.Forward(batch, **cache, &out);
    EXPECT_TRUE(s.ok()) << s;
    return out;
  };
  const std::span<const int32_t> b_head(b.data(), 20), b_tail(b.data() + 20, 10);
  ForwardOutput alone_a = run({{.token_ids = a, .block_table = ta, .all_logits = true}});
  run({{.token_ids = b_head, .block_table = tb}});
  ForwardOutput alone_b = run({{.token_ids = b_tail, .start_pos = 20, .block_table = tb, .all_logits = true}});
  ForwardOutput alone_c = run({{.token_ids = c, .block_table = tc}});
  // Together, into fresh blocks: b's head was cached above in tb, so reuse tb for b's chunk.
  const std::vector<int32_t> ta2 = *pool.Allocate(8), tc2 = *pool.Allocate(8);
  ForwardOutput together = run({{.token_ids = c, .block_table = tc2},
                                {.token_ids = b_tail, .start_pos = 20, .block_table = tb, .all_logits = true},
                                {.token_ids = a, .block_table = ta2, .all_logits = true}});
  // Not bitwise: OpenBLAS picks different sgemm/sgemv kernels for different row counts, which
  // moves results by float rounding. Bound: 5e-6 of the row's logit scale, same argmax.
  auto same = [](std::span<const float> x, std::span<const float> y) {
    double scale = 0;
    for (float v : y) scale = std::max(scale, std::fabs(double{v}));
    EXPECT_LE(MaxDiff(x, y), 5e-6 * scale);
    EXPECT_EQ(std::max_element(x.begin(), x.end()) - x.begin(), std::max_element(y.begin(), y.end()) - y.begin());
  };
  same(together.Last(0), alone_c.Last(0));
  for (int64_t r = 0; r < 10; ++r) same(together.Row(together.row_begin[1] + r), alone_b.Row(r));
  for (int64_t r = 0; r < 13; ++r) same(together.Row(together.row_begin[2] + r), alone_a.Row(r));
}

TEST(CausalLmTest, BatchInvariance) {
  for (const char* name : {"llama_tiny", "mistral_tiny", "qwen2_tiny", "gpt2_tiny"}) {
    SCOPED_TRACE(name);
    Model m = LoadFixture(name);
    ASSERT_NE(m.lm, nullptr);
    ExpectBatchInvariant(*m.lm);
  }
}

TEST(CausalLmTest, IncrementalDecodeEqualsFullPrefill) {
  for (const char* name : {"llama3_tiny", "mistral_tiny", "gpt2_tiny"}) {
    for (kernels::DType dtype : {kernels::DType::kF32, kernels::DType::kBF16}) {
      SCOPED_TRACE(testing::Message() << name << " " << kernels::DTypeName(dtype));
      Model m = LoadFixture(name, dtype);
      ASSERT_NE(m.lm, nullptr);
      const std::vector<int32_t> ids = Tokens(21, 4, static_cast<int>(m.lm->config().vocab_size));
      auto cache = m.lm->CreateKvCache({.num_blocks = 32, .block_size = 4});
      const std::vector<int32_t> full_blocks = {0, 1, 2, 3, 4, 5}, step_blocks = {31, 7, 20, 9, 10, 11};
      ForwardOutput full;
      ASSERT_TRUE(m.lm->Forward({{{.token_ids = ids, .block_table = full_blocks, .all_logits = true}}}, **cache, &full).ok());
      for (int32_t i = 0; i < 21; ++i) {
        ForwardOutput step;
        ASSERT_TRUE(m.lm->Forward({{{.token_ids = std::span<const int32_t>(ids.data() + i, 1), .start_pos = i,
                                     .block_table = step_blocks}}}, **cache, &step).ok());
        EXPECT_LE(MaxDiff(step.Last(0), full.Row(i)), 2e-5) << "position " << i;
      }
    }
  }
}

TEST(CausalLmTest, BadInputIsInvalidArgument) {
  Model m = LoadFixture("gpt2_tiny");
  ASSERT_NE(m.lm, nullptr);
  auto cache = m.lm->CreateKvCache({.num_blocks = 16, .block_size = 16});
  ForwardOutput out;
  const std::vector<int32_t> blocks = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<int32_t> bad_id = {1, static_cast<int32_t>(m.lm->config().vocab_size)};
  absl::Status s = m.lm->Forward({{{.token_ids = bad_id, .block_table = blocks}}}, **cache, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token id 480"), std::string::npos) << s;
  const std::vector<int32_t> ok_ids = {1, 2};
  s = m.lm->Forward({{{.token_ids = ok_ids, .start_pos = 127, .block_table = blocks}}}, **cache, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);  // beyond n_positions = 128
  EXPECT_NE(s.message().find("128"), std::string::npos) << s;
  const std::vector<int32_t> short_table = {0};
  s = m.lm->Forward({{{.token_ids = ok_ids, .start_pos = 15, .block_table = short_table}}}, **cache, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> bad_block = {16};
  s = m.lm->Forward({{{.token_ids = ok_ids, .block_table = bad_block}}}, **cache, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.lm->Forward({}, **cache, &out).code(), absl::StatusCode::kInvalidArgument);
  Model other = LoadFixture("llama_tiny");
  auto wrong = other.lm->CreateKvCache({.num_blocks = 4});
  EXPECT_EQ(m.lm->Forward({{{.token_ids = ok_ids, .block_table = blocks}}}, **wrong, &out).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KvBlockPoolTest, AllocateFreeAndErrors) {
  KvBlockPool pool(3);
  auto two = pool.Allocate(2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.Allocate(2).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_TRUE(pool.Free(*two).ok());
  EXPECT_EQ(pool.Free((*two)[0]).code(), absl::StatusCode::kInvalidArgument);  // double free
  EXPECT_EQ(pool.Free(7).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.num_free(), 3);
}

}  // namespace
}  // namespace kiln::engine
