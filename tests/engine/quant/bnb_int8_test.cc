// Bit-exactness of kiln's LLM.int8 weight quantizer and CPU forward against bitsandbytes 0.50
// (tests/golden/fixtures/quant/blockwise.*, made by tools/fixtures/make_quant_fixtures.py):
// CB and SCB are compared for equality; the forward of an eval-mode Linear8bitLt
// (MatMul8bitLt) is compared bit for bit where no outlier column is involved and within fp32
// summation-order rounding where the outlier columns are added back (the reference adds them
// with an fp32 addmm whose order kiln does not reproduce).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/io/json_util.h"
#include "engine/io/safetensors.h"
#include "engine/quant/bnb_int8.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/quant/quant_matrix.h"

namespace kiln::engine::quant {
namespace {

const std::string kDir = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/quant/";

class Fixture {
 public:
  Fixture() {
    auto f = SafetensorsFile::Open(kDir + "blockwise.safetensors", "blockwise.safetensors");
    EXPECT_TRUE(f.ok()) << f.status();
    if (f.ok()) file_ = std::move(*f);
  }
  template <typename T>
  std::vector<T> Get(const std::string& key) const {
    if (!file_) return {};
    const TensorInfo* info = file_->Find(key);
    EXPECT_NE(info, nullptr) << key;
    if (info == nullptr) return {};
    std::vector<uint8_t> bytes(info->num_bytes());
    EXPECT_TRUE(file_->Read(*info, bytes).ok());
    std::vector<T> out(bytes.size() / sizeof(T));
    std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
    return out;
  }

 private:
  std::unique_ptr<SafetensorsFile> file_;
};

TEST(BnbInt8Test, QuantizeIsBitIdentical) {
  Fixture fx;
  auto meta = ReadJsonFile(kDir + "blockwise.json", "blockwise.json");
  ASSERT_TRUE(meta.ok()) << meta.status();
  int checked = 0;
  for (const auto& c : (*meta)["int8_cases"]) {
    const std::string name = c["matrix"].get<std::string>();
    SCOPED_TRACE(name);
    const std::vector<float> w = fx.Get<float>(name + ".w");
    auto q = QuantizeInt8(w, c["shape"][0].get<int64_t>(), c["shape"][1].get<int64_t>());
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(q->cb, fx.Get<int8_t>(name + ".int8.CB"));
    const std::vector<float> scb = fx.Get<float>(name + ".int8.SCB");
    ASSERT_EQ(q->scb.size(), scb.size());
    for (size_t i = 0; i < scb.size(); ++i) EXPECT_EQ(std::bit_cast<uint32_t>(q->scb[i]), std::bit_cast<uint32_t>(scb[i]));
    ++checked;
  }
  EXPECT_EQ(checked, 6);
}

TEST(BnbInt8Test, ForwardMatchesMatMul8bitLt) {
  Fixture fx;
  auto meta = ReadJsonFile(kDir + "blockwise.json", "blockwise.json");
  ASSERT_TRUE(meta.ok()) << meta.status();
  auto backend = kernels::cpu::CreateCpuBackend({.num_threads = 2});
  ASSERT_TRUE(backend.ok());
  int checked = 0, outlier_cases = 0;
  for (const auto& c : (*meta)["int8_mm_cases"]) {
    const std::string key = c["name"].get<std::string>(), name = c["matrix"].get<std::string>();
    SCOPED_TRACE(key);
    std::vector<int8_t> cb = fx.Get<int8_t>(name + ".int8.CB");
    std::vector<float> scb = fx.Get<float>(name + ".int8.SCB");
    std::vector<float> x = fx.Get<float>(key + ".x"), want = fx.Get<float>(key + ".out");
    std::vector<float> bias = c["bias"].get<bool>() ? fx.Get<float>(key + ".bias") : std::vector<float>();
    const int64_t rows = static_cast<int64_t>(scb.size()), cols = static_cast<int64_t>(cb.size()) / rows;
    const int64_t m = c["rows"].get<int64_t>();
    const float threshold = c["threshold"].get<float>();
    kernels::QuantizedMatrix w;
    w.format = kernels::QuantFormat::kInt8;
    w.rows = rows;
    w.cols = cols;
    w.int8.weight = kernels::TensorView(cb.data(), kernels::DType::kI8, {rows, cols});
    w.int8.scb = kernels::TensorView(scb.data(), kernels::DType::kF32, {rows});
    w.int8.threshold = threshold;
    std::vector<float> out(static_cast<size_t>(m * rows));
    std::vector<uint8_t> ws((*backend)->QuantMatmulWorkspaceBytes(m, w));
    ASSERT_TRUE((*backend)
                    ->QuantMatmul(kernels::TensorView(x.data(), kernels::DType::kF32, {m, cols}), w,
                                  bias.empty() ? kernels::TensorView()
                                               : kernels::TensorView(bias.data(), kernels::DType::kF32, {rows}),
                                  kernels::TensorView(out.data(), kernels::DType::kF32, {m, rows}),
                                  kernels::TensorView(ws.data(), kernels::DType::kU8,
                                                      {static_cast<int64_t>(ws.size())}))
                    .ok());
    // Which columns the reference decomposed: any |fp16(x)| >= threshold.
    bool any_outlier = false;
    for (float v : x) {
      any_outlier |= threshold > 0 && std::fabs(kernels::HalfToFloat(kernels::FloatToHalf(v))) >= threshold;
    }
    outlier_cases += any_outlier;
    ASSERT_EQ(out.size(), want.size());
    for (size_t i = 0; i < out.size(); ++i) {
      if (any_outlier) {
        ASSERT_NEAR(out[i], want[i], 2e-6f * (1 + std::fabs(want[i]))) << i;
      } else {
        ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), std::bit_cast<uint32_t>(want[i])) << i << " " << out[i] << " vs " << want[i];
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, 5);
  EXPECT_GE(outlier_cases, 3);
}

TEST(BnbInt8Test, RejectsMismatchedShape) {
  const std::vector<float> w(6, 1.0f);
  EXPECT_EQ(QuantizeInt8(w, 2, 4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeInt8(w, 0, 6).status().code(), absl::StatusCode::kInvalidArgument);
  auto q = QuantizeInt8(std::vector<float>(4, 0.0f), 2, 2);  // all-zero rows: SCB 0, CB 0
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->scb, std::vector<float>(2, 0.0f));
  EXPECT_EQ(q->cb, std::vector<int8_t>(4, 0));
}

}  // namespace
}  // namespace kiln::engine::quant
