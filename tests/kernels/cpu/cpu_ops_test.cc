// Every CpuBackend op except attention against a naive loop written here (double precision
// where it matters), over odd shapes and each weight dtype.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/dtype.h"

namespace kiln::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Weights in `dtype` (raw bytes) plus the exact fp32 values they hold.
struct Weights {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
  TensorView View(DType dtype, std::initializer_list<int64_t> shape) const {
    return TensorView(bytes.data(), dtype, shape);
  }
};

Weights MakeWeights(size_t n, DType dtype, uint32_t seed) {
  Weights w;
  w.values = Random(n, seed);
  w.bytes.resize(n * DTypeSize(dtype));
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&w.bytes[i * 4], &w.values[i], 4);
      continue;
    }
    const uint16_t h = dtype == DType::kF16 ? FloatToHalf(w.values[i]) : FloatToBFloat16(w.values[i]);
    w.values[i] = dtype == DType::kF16 ? HalfToFloat(h) : BFloat16ToFloat(h);
    std::memcpy(&w.bytes[i * 2], &h, 2);
  }
  return w;
}

class CpuOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = cpu::CreateCpuBackend({.num_threads = 2});
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }
  std::unique_ptr<Backend> backend_;
};

constexpr DType kWeightTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

TEST_F(CpuOpsTest, MatmulMatchesNaiveLoopForEveryDtypeAndOddShapes) {
  for (DType dt : kWeightTypes) {
    for (int64_t m : {1, 2, 3, 4, 5, 7, 33}) {  // <= 4: SmallMMatmul, then sgemm / tiles
      for (int64_t n : {1, 7, 127}) {
        for (int64_t k : {1, 7, 33, 48, 127}) {
          for (bool with_bias : {false, true}) {
            SCOPED_TRACE(testing::Message() << DTypeName(dt) << " m=" << m << " n=" << n << " k=" << k
                                            << " bias=" << with_bias);
            const std::vector<float> x = Random(static_cast<size_t>(m * k), 1);
            const Weights w = MakeWeights(static_cast<size_t>(n * k), dt, 2);
            const Weights b = MakeWeights(static_cast<size_t>(n), dt, 3);
            std::vector<float> out(static_cast<size_t>(m * n), -7.0f);
            std::vector<uint8_t> ws(backend_->MatmulWorkspaceBytes(m, n, k, dt));
            ASSERT_TRUE(backend_
                            ->Matmul(TensorView(x.data(), DType::kF32, {m, k}), w.View(dt, {n, k}),
                                     with_bias ? b.View(dt, {n}) : TensorView(),
                                     TensorView(out.data(), DType::kF32, {m, n}),
                                     TensorView(ws.data(), DType::kU8, {static_cast<int64_t>(ws.size())}))
                            .ok());
            for (int64_t r = 0; r < m; ++r) {
              for (int64_t j = 0; j < n; ++j) {
                double want = with_bias ? b.values[static_cast<size_t>(j)] : 0.0;
                for (int64_t i = 0; i < k; ++i) {
                  want += static_cast<double>(x[static_cast<size_t>(r * k + i)]) * w.values[static_cast<size_t>(j * k + i)];
                }
                ASSERT_NEAR(out[static_cast<size_t>(r * n + j)], want, 1e-5 * (1 + std::sqrt(k)));
              }
            }
          }
        }
      }
    }
  }
}

// Decode (m <= 4 rows) gives each row the same dot product whatever else is in the step and
// however many threads split W, so a stream's tokens do not depend on its neighbours.
TEST(CpuMatmulTest, SmallBatchRowIsBitwiseTheSameForAnyBatchSizeAndThreadCount) {
  constexpr int64_t kRows = 4, n = 131, k = 808;  // k: 50 vector steps and a tail of 8
  const std::vector<float> x = Random(static_cast<size_t>(kRows * k), 11);
  for (DType dt : kWeightTypes) {
    SCOPED_TRACE(DTypeName(dt));
    const Weights w = MakeWeights(static_cast<size_t>(n * k), dt, 12);
    auto run = [&](int threads, int64_t first, int64_t m) {
      auto b = cpu::CreateCpuBackend({.num_threads = threads});
      EXPECT_TRUE(b.ok()) << b.status();
      std::vector<float> out(static_cast<size_t>(m * n));
      EXPECT_TRUE((*b)->Matmul(TensorView(const_cast<float*>(x.data()) + first * k, DType::kF32, {m, k}),
                               w.View(dt, {n, k}), TensorView(),
                               TensorView(out.data(), DType::kF32, {m, n}), TensorView())
                      .ok());
      return out;
    };
    const std::vector<float> all = run(2, 0, kRows);
    for (int threads : {1, 3}) {
      for (int64_t m : {1, 2, 3}) {
        for (int64_t first = 0; first + m <= kRows; ++first) {
          const std::vector<float> part = run(threads, first, m);
          ASSERT_EQ(0, std::memcmp(part.data(), all.data() + first * n, part.size() * sizeof(float)))
              << "threads=" << threads << " m=" << m << " first=" << first;
        }
      }
    }
  }
}

TEST_F(CpuOpsTest, MatmulRejectsMismatchedShapesAndSmallWorkspace) {
  std::vector<float> x(6), w(12), out(4);
  absl::Status s = backend_->Matmul(TensorView(x.data(), DType::kF32, {2, 3}),
                                    TensorView(w.data(), DType::kF32, {3, 4}), TensorView(),
                                    TensorView(out.data(), DType::kF32, {2, 2}), TensorView());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("w is [3, 4] F32"), std::string::npos) << s;
  const Weights wb = MakeWeights(64 * 64, DType::kBF16, 1);
  std::vector<float> xb(8 * 64), ob(8 * 64);
  s = backend_->Matmul(TensorView(xb.data(), DType::kF32, {8, 64}), wb.View(DType::kBF16, {64, 64}),
                       TensorView(), TensorView(ob.data(), DType::kF32, {8, 64}), TensorView());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("workspace"), std::string::npos) << s;
}

TEST_F(CpuOpsTest, EmbeddingGathersRowsAndRejectsOutOfRangeIdsBeforeWriting) {
  for (DType dt : kWeightTypes) {
    const Weights table = MakeWeights(33 * 7, dt, 4);
    const std::vector<int32_t> ids = {0, 32, 5, 5, 17};
    std::vector<float> out(ids.size() * 7);
    ASSERT_TRUE(backend_->Embedding(table.View(dt, {33, 7}), ids, TensorView(out.data(), DType::kF32, {5, 7})).ok());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (size_t j = 0; j < 7; ++j) EXPECT_EQ(out[i * 7 + j], table.values[static_cast<size_t>(ids[i]) * 7 + j]);
    }
    std::vector<float> untouched(14, 3.0f);
    for (int32_t bad : {33, -1}) {
      const std::vector<int32_t> bad_ids = {1, bad};
      absl::Status s = backend_->Embedding(table.View(dt, {33, 7}), bad_ids,
                                           TensorView(untouched.data(), DType::kF32, {2, 7}));
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(s.message().find(std::to_string(bad)), std::string::npos) << s;
      for (float v : untouched) EXPECT_EQ(v, 3.0f);
    }
  }
}

TEST_F(CpuOpsTest, NormsMatchNaiveLoops) {
  for (DType dt : kWeightTypes) {
    for (int64_t m : {1, 7}) {
      for (int64_t d : {1, 33, 127}) {
        const std::vector<float> x = Random(static_cast<size_t>(m * d), 5, 3.0f);
        const std::vector<float> res0 = Random(static_cast<size_t>(m * d), 6);
        const Weights w = MakeWeights(static_cast<size_t>(d), dt, 7);
        const Weights b = MakeWeights(static_cast<size_t>(d), dt, 8);
        std::vector<float> rms(x.size()), ln(x.size()), fused(x.size()), res = res0;
        const float eps = 1e-5f;
        ASSERT_TRUE(backend_->RmsNorm(TensorView(x.data(), DType::kF32, {m, d}), w.View(dt, {d}), eps,
                                      TensorView(rms.data(), DType::kF32, {m, d})).ok());
        ASSERT_TRUE(backend_->LayerNorm(TensorView(x.data(), DType::kF32, {m, d}), w.View(dt, {d}), b.View(dt, {d}),
                                        eps, TensorView(ln.data(), DType::kF32, {m, d})).ok());
        ASSERT_TRUE(backend_->AddRmsNorm(TensorView(res.data(), DType::kF32, {m, d}),
                                         TensorView(x.data(), DType::kF32, {m, d}), w.View(dt, {d}), eps,
                                         TensorView(fused.data(), DType::kF32, {m, d})).ok());
        for (int64_t r = 0; r < m; ++r) {
          const float* xr = x.data() + r * d;
          double sq = 0, sum = 0, sqr = 0;
          for (int64_t j = 0; j < d; ++j) {
            sq += double{xr[j]} * xr[j];
            sum += xr[j];
            const double rr = double{res0[static_cast<size_t>(r * d + j)]} + xr[j];
            sqr += rr * rr;
          }
          const double mean = sum / static_cast<double>(d);
          double var = 0;
          for (int64_t j = 0; j < d; ++j) var += (xr[j] - mean) * (xr[j] - mean);
          var /= static_cast<double>(d);
          for (int64_t j = 0; j < d; ++j) {
            const size_t i = static_cast<size_t>(r * d + j);
            const double wj = w.values[static_cast<size_t>(j)];
            EXPECT_NEAR(rms[i], xr[j] / std::sqrt(sq / static_cast<double>(d) + eps) * wj, 1e-5);
            EXPECT_NEAR(ln[i], (xr[j] - mean) / std::sqrt(var + eps) * wj + b.values[static_cast<size_t>(j)], 1e-4);
            const double rr = double{res0[i]} + xr[j];
            EXPECT_FLOAT_EQ(res[i], static_cast<float>(rr));
            EXPECT_NEAR(fused[i], rr / std::sqrt(sqr / static_cast<double>(d) + eps) * wj, 1e-5);
          }
        }
      }
    }
  }
}

TEST_F(CpuOpsTest, RopeRotatesHalvesLikeTransformers) {
  for (int64_t hd : {2, 8, 34}) {
    std::vector<int64_t> rots = {hd};
    if (hd >= 4) rots.push_back(hd - 2);
    for (int64_t rot : rots) {
      const int64_t t = 7, heads = 3, half = rot / 2;
      std::vector<float> x = Random(static_cast<size_t>(t * heads * hd), 9);
      const std::vector<float> x0 = x;
      std::vector<int32_t> pos = {0, 1, 2, 17, 100, 1000, 4095};
      std::vector<float> inv(static_cast<size_t>(half));
      for (int64_t i = 0; i < half; ++i) inv[static_cast<size_t>(i)] = 1.0f / std::pow(10000.0f, 2.0f * i / rot);
      const float scaling = 1.25f;
      ASSERT_TRUE(backend_->Rope(TensorView(x.data(), DType::kF32, {t, heads, hd}), pos, inv, scaling).ok());
      for (int64_t i = 0; i < t; ++i) {
        for (int64_t h = 0; h < heads; ++h) {
          const size_t base = static_cast<size_t>((i * heads + h) * hd);
          for (int64_t j = 0; j < half; ++j) {
            const double f = static_cast<double>(static_cast<float>(pos[static_cast<size_t>(i)]) * inv[static_cast<size_t>(j)]);
            const double c = std::cos(f) * scaling, s = std::sin(f) * scaling;
            const double a = x0[base + static_cast<size_t>(j)], b = x0[base + static_cast<size_t>(j + half)];
            EXPECT_NEAR(x[base + static_cast<size_t>(j)], a * c - b * s, 2e-6);
            EXPECT_NEAR(x[base + static_cast<size_t>(j + half)], b * c + a * s, 2e-6);
          }
          for (int64_t j = rot; j < hd; ++j) EXPECT_EQ(x[base + static_cast<size_t>(j)], x0[base + static_cast<size_t>(j)]);
        }
      }
    }
  }
}

TEST_F(CpuOpsTest, ElementwiseOpsMatchFormulas) {
  for (int64_t n : {1, 33, 40000}) {
    const std::vector<float> a = Random(static_cast<size_t>(n), 10, 6.0f), b = Random(static_cast<size_t>(n), 11, 2.0f);
    std::vector<float> add(a.size()), silu(a.size()), erf_gelu(a.size()), tanh_gelu(a.size());
    auto v = [&](const std::vector<float>& d) { return TensorView(d.data(), DType::kF32, {n}); };
    ASSERT_TRUE(backend_->Add(v(a), v(b), v(add)).ok());
    ASSERT_TRUE(backend_->SiluMul(v(a), v(b), v(silu)).ok());
    ASSERT_TRUE(backend_->Gelu(v(a), GeluKind::kErf, v(erf_gelu)).ok());
    ASSERT_TRUE(backend_->Gelu(v(a), GeluKind::kTanh, v(tanh_gelu)).ok());
    for (size_t i = 0; i < a.size(); ++i) {
      const double x = a[i];
      EXPECT_EQ(add[i], a[i] + b[i]);
      EXPECT_NEAR(silu[i], x / (1 + std::exp(-x)) * b[i], 1e-5);
      EXPECT_NEAR(erf_gelu[i], 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))), 1e-5);
      EXPECT_NEAR(tanh_gelu[i], 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))), 1e-5);
    }
  }
}

TEST_F(CpuOpsTest, GatherRowsAndConvert) {
  const std::vector<float> src = Random(7 * 5, 12);
  std::vector<float> out(3 * 5);
  const std::vector<int32_t> rows = {6, 0, 6};
  ASSERT_TRUE(backend_->GatherRows(TensorView(src.data(), DType::kF32, {7, 5}), rows,
                                   TensorView(out.data(), DType::kF32, {3, 5})).ok());
  for (size_t i = 0; i < 3; ++i) {
    for (size_t j = 0; j < 5; ++j) EXPECT_EQ(out[i * 5 + j], src[static_cast<size_t>(rows[i]) * 5 + j]);
  }
  const std::vector<int32_t> bad = {7};
  EXPECT_EQ(backend_->GatherRows(TensorView(src.data(), DType::kF32, {7, 5}), bad,
                                 TensorView(out.data(), DType::kF32, {1, 5})).code(),
            absl::StatusCode::kInvalidArgument);
  for (DType dt : {DType::kF16, DType::kBF16}) {
    std::vector<uint16_t> half(src.size());
    std::vector<float> back(src.size());
    ASSERT_TRUE(backend_->Convert(TensorView(src.data(), DType::kF32, {7, 5}), TensorView(half.data(), dt, {7, 5})).ok());
    ASSERT_TRUE(backend_->Convert(TensorView(half.data(), dt, {7, 5}), TensorView(back.data(), DType::kF32, {35})).ok());
    for (size_t i = 0; i < src.size(); ++i) {
      const uint16_t want = dt == DType::kF16 ? FloatToHalf(src[i]) : FloatToBFloat16(src[i]);
      EXPECT_EQ(half[i], want);
      EXPECT_EQ(back[i], dt == DType::kF16 ? HalfToFloat(want) : BFloat16ToFloat(want));
    }
  }
}

TEST(CpuBackendTest, AllocatesAlignedBuffersAndRejectsNegativeThreads) {
  EXPECT_EQ(cpu::CreateCpuBackend({.num_threads = -1}).status().code(), absl::StatusCode::kInvalidArgument);
  auto b = cpu::CreateCpuBackend({.num_threads = 1});
  ASSERT_TRUE(b.ok());
  auto buf = (*b)->Allocate(100);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf->data()) % 64, 0u);
  EXPECT_EQ(buf->bytes(), 100u);
  DeviceBuffer moved = std::move(*buf);
  EXPECT_EQ(buf->data(), nullptr);
  EXPECT_NE(moved.data(), nullptr);
}

}  // namespace
}  // namespace kiln::kernels
