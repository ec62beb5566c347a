// CpuBackend::QuantMatmul against DequantizeRows + a dense double-precision product (bnb4), and
// against the LLM.int8 algorithm spelled out step by step from bitsandbytes 0.50's python
// (int8_vectorwise_quant, int8_linear_matmul, int8_mm_dequant, int8_mixed_scaled_mm) — over odd
// shapes, m = 1 (decode) and m > 1, each compute dtype, with and without bias. Bit-exactness
// against bitsandbytes itself is in tests/golden/quant.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/dtype.h"
#include "kernels/quant/quant_matrix.h"

namespace kiln::kernels {
namespace {

std::unique_ptr<Backend> Cpu() {
  auto b = cpu::CreateCpuBackend({.num_threads = 3});
  EXPECT_TRUE(b.ok());
  return std::move(*b);
}

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

float Round(DType t, float v) {
  if (t == DType::kF16) return HalfToFloat(FloatToHalf(v));
  if (t == DType::kBF16) return BFloat16ToFloat(FloatToBFloat16(v));
  return v;
}

// Holds the storage of a random bnb4 matrix.
struct Bnb4Data {
  std::vector<uint8_t> packed;
  std::vector<float> absmax;
  QuantizedMatrix m;
};

Bnb4Data RandomBnb4(int64_t rows, int64_t cols, int64_t blocksize, DType compute, uint32_t seed) {
  Bnb4Data d;
  const int64_t n = rows * cols;
  std::mt19937 rng(seed);
  d.packed.resize(static_cast<size_t>((n + 1) / 2));
  for (uint8_t& b : d.packed) b = static_cast<uint8_t>(rng() & 0xFF);
  d.absmax = Random(static_cast<size_t>((n + blocksize - 1) / blocksize), seed + 1, 0.5f);
  for (float& a : d.absmax) a = std::fabs(a) + 0.01f;
  d.m.format = QuantFormat::kBnb4;
  d.m.rows = rows;
  d.m.cols = cols;
  d.m.compute_dtype = compute;
  d.m.bnb4.packed = TensorView(d.packed.data(), DType::kU8, {static_cast<int64_t>(d.packed.size())});
  d.m.bnb4.absmax = TensorView(d.absmax.data(), DType::kF32, {static_cast<int64_t>(d.absmax.size())});
  // NF4 table (bitsandbytes get_4bit_type("nf4")).
  d.m.bnb4.code = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                   -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                   0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                   0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
  d.m.bnb4.blocksize = blocksize;
  return d;
}

struct Case {
  int64_t m, rows, cols;
};
constexpr Case kCases[] = {{1, 7, 9}, {3, 33, 50}, {5, 72, 136}, {17, 130, 67}, {2, 300, 128}};
constexpr DType kComputeDtypes[] = {DType::kF32, DType::kF16, DType::kBF16};

TEST(QuantMatmulTest, Bnb4MatchesDequantizeRowsPlusDenseProduct) {
  auto backend = Cpu();
  for (const Case& c : kCases) {
    for (DType cd : kComputeDtypes) {
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(testing::Message() << c.m << "x" << c.rows << "x" << c.cols << " " << DTypeName(cd)
                                        << (with_bias ? " bias" : ""));
        Bnb4Data d = RandomBnb4(c.rows, c.cols, 64, cd, static_cast<uint32_t>(c.rows * 31 + c.cols));
        ASSERT_TRUE(ValidateQuantizedMatrix(d.m, "w").ok());
        std::vector<float> x = Random(static_cast<size_t>(c.m * c.cols), 7);
        std::vector<float> bias = Random(static_cast<size_t>(c.rows), 8);
        std::vector<float> deq(static_cast<size_t>(c.rows * c.cols));
        DequantizeRows(d.m, 0, c.rows, deq.data());
        // Rows in pieces give the same values as all at once.
        std::vector<float> part(static_cast<size_t>(c.cols));
        DequantizeRows(d.m, c.rows - 1, c.rows, part.data());
        for (int64_t k = 0; k < c.cols; ++k) ASSERT_EQ(part[k], deq[(c.rows - 1) * c.cols + k]);

        std::vector<float> out(static_cast<size_t>(c.m * c.rows), -1.0f);
        std::vector<uint8_t> ws(backend->QuantMatmulWorkspaceBytes(c.m, d.m) + 64);
        ASSERT_TRUE(backend
                        ->QuantMatmul(TensorView(x.data(), DType::kF32, {c.m, c.cols}), d.m,
                                      with_bias ? TensorView(bias.data(), DType::kF32, {c.rows}) : TensorView(),
                                      TensorView(out.data(), DType::kF32, {c.m, c.rows}),
                                      TensorView(ws.data(), DType::kU8, {static_cast<int64_t>(ws.size())}))
                        .ok());
        for (int64_t r = 0; r < c.m; ++r) {
          for (int64_t j = 0; j < c.rows; ++j) {
            double acc = 0;
            for (int64_t k = 0; k < c.cols; ++k) {
              acc += static_cast<double>(Round(cd, x[r * c.cols + k])) * deq[j * c.cols + k];
            }
            if (with_bias) acc += Round(cd, bias[j]);
            const float got = out[r * c.rows + j];
            // fp32 accumulation order differs from the double reference; then one rounding to cd.
            const double tol = 1e-5 * (1 + std::fabs(acc)) * std::sqrt(static_cast<double>(c.cols)) +
                               (cd == DType::kF32 ? 0.0 : std::fabs(acc) * (cd == DType::kF16 ? 1e-3 : 8e-3));
            ASSERT_NEAR(got, acc, tol) << "row " << r << " col " << j;
            EXPECT_EQ(got, Round(cd, got)) << "output is rounded to the compute dtype";
          }
        }
      }
    }
  }
}

// ---- LLM.int8 -------------------------------------------------------------------------------

struct Int8Data {
  std::vector<int8_t> cb;
  std::vector<float> scb;
  QuantizedMatrix m;
};

Int8Data RandomInt8(int64_t rows, int64_t cols, float threshold, DType cd, uint32_t seed) {
  Int8Data d;
  std::mt19937 rng(seed);
  d.cb.resize(static_cast<size_t>(rows * cols));
  for (int8_t& v : d.cb) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  d.scb = Random(static_cast<size_t>(rows), seed + 3, 0.3f);
  for (float& s : d.scb) s = HalfToFloat(FloatToHalf(std::fabs(s) + 0.05f));  // SCB is an fp16 absmax
  d.m.format = QuantFormat::kInt8;
  d.m.rows = rows;
  d.m.cols = cols;
  d.m.compute_dtype = cd;
  d.m.int8.weight = TensorView(d.cb.data(), DType::kI8, {rows, cols});
  d.m.int8.scb = TensorView(d.scb.data(), DType::kF32, {rows});
  d.m.int8.threshold = threshold;
  return d;
}

// bitsandbytes' MatMul8bitLt forward, literally: quantize A (fp16) with the outlier threshold,
// int32 matmul, int8_mm_dequant (+bias), then addmm of the outlier columns.
std::vector<float> Int8Reference(const std::vector<float>& x_in, const Int8Data& d, int64_t m,
                                 const std::vector<float>* bias) {
  const int64_t k = d.m.cols, n = d.m.rows;
  const DType cd = d.m.compute_dtype;
  std::vector<float> a(x_in.size()), a16(x_in.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = Round(cd, x_in[i]);
    a16[i] = HalfToFloat(FloatToHalf(a[i]));
  }
  const float th = HalfToFloat(FloatToHalf(d.m.int8.threshold));
  std::vector<bool> outlier_col(static_cast<size_t>(k), false);
  std::vector<float> zeroed = a16;
  if (d.m.int8.threshold > 0) {
    for (size_t i = 0; i < a16.size(); ++i) {
      if (std::fabs(a16[i]) >= th) {
        outlier_col[i % static_cast<size_t>(k)] = true;
        zeroed[i] = 0;
      }
    }
  }
  std::vector<float> sca(static_cast<size_t>(m), 0.0f);
  std::vector<int> ca(a.size());
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < k; ++c) sca[r] = std::max(sca[r], std::fabs(zeroed[r * k + c]));
    for (int64_t c = 0; c < k; ++c) {
      const float v = std::nearbyint(zeroed[r * k + c] * ((1.0f / sca[r]) * 127.0f));
      ca[r * k + c] = outlier_col[c] ? 0 : static_cast<int>(v);
    }
  }
  std::vector<float> out(static_cast<size_t>(m * n));
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      int64_t acc = 0;
      for (int64_t c = 0; c < k; ++c) acc += ca[r * k + c] * d.cb[j * k + c];
      float v = static_cast<float>(acc) * (sca[r] * d.scb[j]) * 6.200124e-05f;
      if (bias != nullptr) v += Round(cd, (*bias)[j]);
      v = Round(cd, v);
      double sub = 0;
      bool any = false;
      for (int64_t c = 0; c < k; ++c) {
        if (!outlier_col[c]) continue;
        any = true;
        sub += static_cast<double>(a[r * k + c]) *
               Round(cd, static_cast<float>(d.cb[j * k + c]) * d.scb[j] * 7.874015718698502e-3f);
      }
      out[r * n + j] = any ? Round(cd, static_cast<float>(v + sub)) : v;
    }
  }
  return out;
}

TEST(QuantMatmulTest, Int8FollowsLlmInt8WithAndWithoutOutliers) {
  auto backend = Cpu();
  for (const Case& c : kCases) {
    for (DType cd : kComputeDtypes) {
      for (float threshold : {0.0f, 6.0f, 1.5f}) {
        SCOPED_TRACE(testing::Message() << c.m << "x" << c.rows << "x" << c.cols << " " << DTypeName(cd)
                                        << " threshold " << threshold);
        Int8Data d = RandomInt8(c.rows, c.cols, threshold, cd, static_cast<uint32_t>(c.rows + c.cols));
        ASSERT_TRUE(ValidateQuantizedMatrix(d.m, "w").ok());
        std::vector<float> x = Random(static_cast<size_t>(c.m * c.cols), 11);
        x[0] = 7.5f;  // a real outlier column for threshold 6
        std::vector<float> bias = Random(static_cast<size_t>(c.rows), 12);
        std::vector<float> out(static_cast<size_t>(c.m * c.rows));
        std::vector<uint8_t> ws(backend->QuantMatmulWorkspaceBytes(c.m, d.m));
        ASSERT_TRUE(backend
                        ->QuantMatmul(TensorView(x.data(), DType::kF32, {c.m, c.cols}), d.m,
                                      TensorView(bias.data(), DType::kF32, {c.rows}),
                                      TensorView(out.data(), DType::kF32, {c.m, c.rows}),
                                      TensorView(ws.data(), DType::kU8, {static_cast<int64_t>(ws.size())}))
                        .ok());
        const std::vector<float> want = Int8Reference(x, d, c.m, &bias);
        std::vector<float> deq(static_cast<size_t>(c.rows * c.cols));
        DequantizeRows(d.m, 0, c.rows, deq.data());
        for (int64_t r = 0; r < c.m; ++r) {
          for (int64_t j = 0; j < c.rows; ++j) {
            const float got = out[r * c.rows + j], ref = want[r * c.rows + j];
            // The int8 part is exact arithmetic; only the outlier sum's order can differ.
            ASSERT_NEAR(got, ref, 1e-5f * (1 + std::fabs(ref)) * (cd == DType::kF32 ? 1 : 800))
                << "row " << r << " col " << j;
            // And the whole is LLM.int8's approximation of the dense product.
            double dense = bias[j];
            double norm = 0;
            for (int64_t k = 0; k < c.cols; ++k) {
              dense += static_cast<double>(x[r * c.cols + k]) * deq[j * c.cols + k];
              norm += std::fabs(x[r * c.cols + k] * deq[j * c.cols + k]);
            }
            EXPECT_NEAR(got, dense, 0.02 * norm + 0.02 * std::fabs(dense) + 1e-3);
          }
        }
      }
    }
  }
}

TEST(QuantMatmulTest, Int8OutlierColumnsAreComputedInHigherPrecision) {
  // One huge feature: without the decomposition it would swamp the row scale and zero every
  // other feature's int8 code; with it the result stays close to the dense product.
  auto backend = Cpu();
  Int8Data d = RandomInt8(16, 40, 6.0f, DType::kF32, 5);
  std::vector<float> x = Random(40, 13, 0.5f);
  x[17] = 300.0f;
  std::vector<float> deq(16 * 40);
  DequantizeRows(d.m, 0, 16, deq.data());
  std::vector<float> out(16);
  std::vector<uint8_t> ws(backend->QuantMatmulWorkspaceBytes(1, d.m));
  auto run = [&](float threshold) {
    d.m.int8.threshold = threshold;
    EXPECT_TRUE(backend
                    ->QuantMatmul(TensorView(x.data(), DType::kF32, {1, 40}), d.m, TensorView(),
                                  TensorView(out.data(), DType::kF32, {1, 16}),
                                  TensorView(ws.data(), DType::kU8, {static_cast<int64_t>(ws.size())}))
                    .ok());
    double err = 0;
    for (int64_t j = 0; j < 16; ++j) {
      double dense = 0;
      for (int64_t k = 0; k < 40; ++k) dense += static_cast<double>(x[k]) * deq[j * 40 + k];
      dense -= static_cast<double>(x[17]) * deq[j * 40 + 17];  // compare the non-outlier part
      double got = out[j] - static_cast<double>(x[17]) * deq[j * 40 + 17];
      err = std::max(err, std::fabs(got - dense));
    }
    return err;
  };
  const double with = run(6.0f), without = run(0.0f);
  EXPECT_LT(with, 0.05);
  EXPECT_GT(without, 4 * with);
}

TEST(QuantMatmulTest, ValidationNamesTheTensor) {
  Bnb4Data d = RandomBnb4(8, 8, 64, DType::kF32, 1);
  d.m.bnb4.absmax = TensorView(d.absmax.data(), DType::kF32, {2});
  absl::Status s = ValidateQuantizedMatrix(d.m, "model.layers.0.q_proj");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layers.0.q_proj.absmax"), std::string::npos) << s;
  EXPECT_NE(s.message().find("[1]"), std::string::npos) << s;
  d = RandomBnb4(8, 8, 64, DType::kF32, 1);
  d.m.bnb4.blocksize = 0;
  EXPECT_NE(ValidateQuantizedMatrix(d.m, "w").message().find("blocksize"), std::string::npos);

  Int8Data q = RandomInt8(4, 6, 6.0f, DType::kF32, 2);
  q.m.int8.scb = TensorView(q.scb.data(), DType::kF32, {3});
  s = ValidateQuantizedMatrix(q.m, "lin");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("lin.SCB"), std::string::npos) << s;
  q = RandomInt8(4, 6, NAN, DType::kF32, 2);
  EXPECT_NE(ValidateQuantizedMatrix(q.m, "lin").message().find("threshold"), std::string::npos);

  // A malformed matrix never reaches the kernel.
  auto backend = Cpu();
  std::vector<float> x(6), out(4);
  EXPECT_EQ(backend
                ->QuantMatmul(TensorView(x.data(), DType::kF32, {1, 6}), q.m, TensorView(),
                              TensorView(out.data(), DType::kF32, {1, 4}), TensorView())
                .code(),
            absl::StatusCode::kInvalidArgument);
  q = RandomInt8(4, 6, 6.0f, DType::kF32, 2);
  EXPECT_EQ(backend
                ->QuantMatmul(TensorView(x.data(), DType::kF32, {1, 5}), q.m, TensorView(),
                              TensorView(out.data(), DType::kF32, {1, 4}), TensorView())
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::kernels
