// Loader + CPU LoraApply against peft: a batch whose segments use three different llama_tiny
// adapters on layer 0's q_proj (ranks 4, 8, 4) and no adapter. Rows of llama_qv_r4 must equal
// x · deltaᵀ with peft's recorded delta (scale·B·A); rows of the others equal a naive loop over
// their loaded A/B; rows without an adapter stay untouched.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/adapter/adapter_loader.h"
#include "engine/io/json_util.h"
#include "engine/io/safetensors.h"
#include "engine/model/model_config.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace kiln::engine {
namespace {

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures";
constexpr char kModule[] = "model.layers.0.self_attn.q_proj";

TEST(LoraApplyGoldenTest, MixedAdaptersMatchPeft) {
  auto config = LoadModelConfig(kFixtures + "/models/llama_tiny");
  ASSERT_TRUE(config.ok()) << config.status();
  const BaseModules base = ListBaseModules(*config);
  std::vector<std::unique_ptr<LoraAdapter>> adapters;
  for (const char* name : {"llama_qv_r4", "llama_all_linear_rslora_r8", "llama_nf4_base"}) {
    auto a = LoadLoraAdapter(kFixtures + "/lora/adapters/" + name, base);
    ASSERT_TRUE(a.ok()) << name << ": " << a.status();
    adapters.push_back(std::move(*a));
  }
  std::vector<const LoraModule*> mods;
  std::vector<kernels::LoraPair> pairs;
  for (const auto& a : adapters) {
    const LoraModule* m = a->Find(kModule);
    ASSERT_NE(m, nullptr);
    mods.push_back(m);
    pairs.push_back({kernels::TensorView(m->a.data(), kernels::DType::kF32, {m->r, m->base->in_features}),
                     kernels::TensorView(m->b.data(), kernels::DType::kF32, {m->base->out_features, m->r}),
                     m->scale});
  }
  const int64_t in = mods[0]->base->in_features, out = mods[0]->base->out_features;

  // peft's delta for llama_qv_r4.
  auto ref = SafetensorsFile::Open(kFixtures + "/lora/reference/llama_qv_r4.safetensors", "ref");
  ASSERT_TRUE(ref.ok()) << ref.status();
  const TensorInfo* info = (*ref)->Find(std::string("delta.") + kModule);
  ASSERT_NE(info, nullptr);
  std::vector<float> delta(static_cast<size_t>(out * in));
  ASSERT_TRUE((*ref)->Read(*info, {reinterpret_cast<uint8_t*>(delta.data()), delta.size() * 4}).ok());

  // Segments: qv_r4 x3, none x2, all-linear x4, nf4 x1, qv_r4 x2.
  const std::vector<int32_t> starts = {0, 3, 5, 9, 10, 12};
  const std::vector<int32_t> slots = {0, -1, 1, 2, 0};
  const int64_t m = starts.back();
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> x(static_cast<size_t>(m * in)), y(static_cast<size_t>(m * out));
  for (float& v : x) v = dist(rng);
  for (float& v : y) v = dist(rng);
  const std::vector<float> y0 = y;

  auto backend = kernels::cpu::CreateCpuBackend({.num_threads = 2});
  ASSERT_TRUE(backend.ok());
  std::vector<float> ws((*backend)->LoraWorkspaceBytes(m, 8) / 4);
  const absl::Status s = (*backend)->LoraApply(
      kernels::TensorView(x.data(), kernels::DType::kF32, {m, in}), pairs, kernels::LoraSegments{starts, slots},
      kernels::TensorView(y.data(), kernels::DType::kF32, {m, out}),
      kernels::TensorView(ws.data(), kernels::DType::kF32, {static_cast<int64_t>(ws.size())}));
  ASSERT_TRUE(s.ok()) << s;

  double max_err = 0;
  for (size_t seg = 0; seg < slots.size(); ++seg) {
    for (int64_t r = starts[seg]; r < starts[seg + 1]; ++r) {
      for (int64_t j = 0; j < out; ++j) {
        double want = y0[static_cast<size_t>(r * out + j)];
        if (slots[seg] == 0) {
          for (int64_t i = 0; i < in; ++i) want += double{x[r * in + i]} * delta[j * in + i];
        } else if (slots[seg] > 0) {
          const LoraModule* mod = mods[static_cast<size_t>(slots[seg])];
          double acc = 0;
          for (int64_t k = 0; k < mod->r; ++k) {
            double t = 0;
            for (int64_t i = 0; i < in; ++i) t += double{x[r * in + i]} * mod->a[k * in + i];
            acc += t * mod->b[j * mod->r + k];
          }
          want += mod->scale * acc;
        } else {
          ASSERT_EQ(y[static_cast<size_t>(r * out + j)], y0[static_cast<size_t>(r * out + j)]);
        }
        max_err = std::max(max_err, std::fabs(want - y[static_cast<size_t>(r * out + j)]));
      }
    }
  }
  EXPECT_LE(max_err, 1e-4);
}

}  // namespace
}  // namespace kiln::engine
