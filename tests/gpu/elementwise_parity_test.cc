// Parity of every elementwise-group CUDA op (cuda_ops.h: Convert, Embedding, RmsNorm,
// AddRmsNorm, LayerNorm, Rope, Add, SiluMul, Gelu, GatherRows) with the CPU reference, over odd
// and vector-friendly row lengths, each weight dtype, fresh random inputs (the seed is printed on
// failure) and NaN-poisoned outputs. Both backends read the same weight bits and differ only in
// fp32 summation order and libm ulps, so the fp32 tolerance applies whatever the weight dtype.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/gpu/gpu_test_util.h"

namespace kiln::kernels::gpu_test {
namespace {

constexpr DType kFloatTypes[] = {DType::kF32, DType::kF16, DType::kBF16};
constexpr int64_t kCols[] = {1, 3, 127, 128, 4097};
constexpr int64_t kRows[] = {1, 7};

std::string Name(DType dtype) { return std::string(DTypeName(dtype)); }

uint32_t FreshSeed() { return std::random_device{}(); }

std::vector<int32_t> RandomIndices(size_t n, int32_t limit, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, limit - 1);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(rng);
  if (n >= 2) {  // the edges of the table always appear
    v[0] = 0;
    v[n - 1] = limit - 1;
  }
  return v;
}

class ElementwiseParityTest : public GpuParityTest {
 protected:
  struct Both {
    DeviceTensor cpu;
    DeviceTensor gpu;
  };
  Both Upload2(const std::vector<float>& values, DType dtype, std::initializer_list<int64_t> shape) {
    return {Upload(cpu(), values, dtype, shape), Upload(gpu(), values, dtype, shape)};
  }
  Both Poisoned2(DType dtype, std::initializer_list<int64_t> shape) {
    return {Poisoned(cpu(), dtype, shape), Poisoned(gpu(), dtype, shape)};
  }
  void ExpectParity(const Both& t, float atol, const std::string& what) {
    ExpectClose(Download(gpu(), t.gpu.view), Download(cpu(), t.cpu.view), RelTolerance(DType::kF32),
                atol, what);
  }
};

TEST_F(ElementwiseParityTest, ConvertIsBitIdenticalForEveryDtypePair) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  for (DType from : kFloatTypes) {
    for (DType to : kFloatTypes) {
      for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{127}, int64_t{4097}}) {
        // Wide range so half types see subnormals, rounding ties and large values.
        std::vector<float> v = RandomValues(static_cast<size_t>(n), seed + static_cast<uint32_t>(n), -3e4f, 3e4f);
        for (size_t i = 0; i < v.size(); i += 3) v[i] *= 1e-9f;
        const Both src = Upload2(v, from, {n});
        const Both dst = Poisoned2(to, {n});
        ASSERT_TRUE(cpu().Convert(src.cpu.view, dst.cpu.view).ok());
        ASSERT_TRUE(gpu().Convert(src.gpu.view, dst.gpu.view).ok());
        EXPECT_EQ(DownloadBytes(gpu(), dst.gpu.view), DownloadBytes(cpu(), dst.cpu.view))
            << DTypeName(from) << " -> " << DTypeName(to) << " n=" << n;
      }
    }
  }
}

TEST_F(ElementwiseParityTest, EmbeddingForEveryTableDtype) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  constexpr int64_t kTableRows = 50;
  for (DType dtype : kFloatTypes) {
    for (int64_t dim : kCols) {
      const Both table = Upload2(RandomValues(static_cast<size_t>(kTableRows * dim), seed + 1), dtype,
                                 {kTableRows, dim});
      for (size_t n : {size_t{1}, size_t{9}}) {
        const std::vector<int32_t> ids = RandomIndices(n, kTableRows, seed + 2);
        const auto rows = static_cast<int64_t>(n);
        const Both out = Poisoned2(DType::kF32, {rows, dim});
        ASSERT_TRUE(cpu().Embedding(table.cpu.view, ids, out.cpu.view).ok());
        const absl::Status s = gpu().Embedding(table.gpu.view, ids, out.gpu.view);
        ASSERT_TRUE(s.ok()) << s;
        // A gather converts exactly: no tolerance.
        ExpectClose(Download(gpu(), out.gpu.view), Download(cpu(), out.cpu.view), 0.0f, 0.0f,
                    absl::StrCat("Embedding ", Name(dtype), " dim ", dim, " n ", n));
      }
    }
  }
}

TEST_F(ElementwiseParityTest, GatherRows) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  for (int64_t d : kCols) {
    const Both src = Upload2(RandomValues(static_cast<size_t>(40 * d), seed), DType::kF32, {40, d});
    const std::vector<int32_t> rows = RandomIndices(13, 40, seed + 1);
    const Both out = Poisoned2(DType::kF32, {13, d});
    ASSERT_TRUE(cpu().GatherRows(src.cpu.view, rows, out.cpu.view).ok());
    const absl::Status s = gpu().GatherRows(src.gpu.view, rows, out.gpu.view);
    ASSERT_TRUE(s.ok()) << s;
    ExpectClose(Download(gpu(), out.gpu.view), Download(cpu(), out.cpu.view), 0.0f, 0.0f,
                absl::StrCat("GatherRows d ", d));
  }
}

TEST_F(ElementwiseParityTest, RmsNormForEveryWeightDtype) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  for (DType dtype : kFloatTypes) {
    for (int64_t d : kCols) {
      for (int64_t m : kRows) {
        const std::string what = absl::StrCat("RmsNorm ", Name(dtype), " [", m, ", ", d, "]");
        const Both x = Upload2(RandomValues(static_cast<size_t>(m * d), seed + 1, -2.0f, 2.0f),
                               DType::kF32, {m, d});
        const Both w = Upload2(RandomValues(static_cast<size_t>(d), seed + 2), dtype, {d});
        const Both out = Poisoned2(DType::kF32, {m, d});
        ASSERT_TRUE(cpu().RmsNorm(x.cpu.view, w.cpu.view, 1e-6f, out.cpu.view).ok());
        const absl::Status s = gpu().RmsNorm(x.gpu.view, w.gpu.view, 1e-6f, out.gpu.view);
        ASSERT_TRUE(s.ok()) << s;
        ExpectParity(out, 1e-6f, what);
        // In place (out aliases x) gives the same numbers.
        ASSERT_TRUE(gpu().RmsNorm(x.gpu.view, w.gpu.view, 1e-6f, x.gpu.view).ok());
        ExpectClose(Download(gpu(), x.gpu.view), Download(cpu(), out.cpu.view),
                    RelTolerance(DType::kF32), 1e-6f, what + " in place");
      }
    }
  }
}

TEST_F(ElementwiseParityTest, AddRmsNormUpdatesResidualAndNormalizes) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  for (DType dtype : kFloatTypes) {
    for (int64_t d : kCols) {
      for (int64_t m : kRows) {
        const std::string what = absl::StrCat("AddRmsNorm ", Name(dtype), " [", m, ", ", d, "]");
        const Both residual = Upload2(RandomValues(static_cast<size_t>(m * d), seed + 1), DType::kF32, {m, d});
        const Both x = Upload2(RandomValues(static_cast<size_t>(m * d), seed + 2), DType::kF32, {m, d});
        const Both w = Upload2(RandomValues(static_cast<size_t>(d), seed + 3), dtype, {d});
        const Both out = Poisoned2(DType::kF32, {m, d});
        ASSERT_TRUE(cpu().AddRmsNorm(residual.cpu.view, x.cpu.view, w.cpu.view, 1e-5f, out.cpu.view).ok());
        const absl::Status s =
            gpu().AddRmsNorm(residual.gpu.view, x.gpu.view, w.gpu.view, 1e-5f, out.gpu.view);
        ASSERT_TRUE(s.ok()) << s;
        // residual + x is one fp32 add on both sides: exact.
        ExpectClose(Download(gpu(), residual.gpu.view), Download(cpu(), residual.cpu.view), 0.0f,
                    0.0f, what + " residual");
        ExpectParity(out, 1e-6f, what);
      }
    }
  }
}

TEST_F(ElementwiseParityTest, LayerNormWithAndWithoutBias) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  for (DType dtype : kFloatTypes) {
    for (bool with_bias : {false, true}) {
      for (int64_t d : kCols) {
        for (int64_t m : kRows) {
          const std::string what = absl::StrCat("LayerNorm ", Name(dtype), with_bias ? " bias" : "",
                                                " [", m, ", ", d, "]");
          // An offset mean makes the centering matter.
          const Both x = Upload2(RandomValues(static_cast<size_t>(m * d), seed + 1, 0.5f, 3.0f),
                                 DType::kF32, {m, d});
          const Both w = Upload2(RandomValues(static_cast<size_t>(d), seed + 2), dtype, {d});
          Both bias;
          if (with_bias) bias = Upload2(RandomValues(static_cast<size_t>(d), seed + 3), dtype, {d});
          const Both out = Poisoned2(DType::kF32, {m, d});
          ASSERT_TRUE(cpu().LayerNorm(x.cpu.view, w.cpu.view, bias.cpu.view, 1e-5f, out.cpu.view).ok());
          const absl::Status s =
              gpu().LayerNorm(x.gpu.view, w.gpu.view, bias.gpu.view, 1e-5f, out.gpu.view);
          ASSERT_TRUE(s.ok()) << s;
          // d == 1: x - mean is 0 (exactly on both); larger d: centering cancels digits.
          ExpectParity(out, 2e-5f, what);
        }
      }
    }
  }
}

TEST_F(ElementwiseParityTest, RopeFullAndPartialRotary) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  struct Case {
    int64_t t, heads, head_dim, rotary_dim;
    float scaling;
  };
  for (const Case& c : {Case{1, 1, 2, 2, 1.0f}, Case{5, 3, 64, 64, 1.0f}, Case{7, 4, 128, 128, 0.7f},
                        Case{3, 2, 6, 4, 1.0f}, Case{130, 5, 80, 32, 1.2f}}) {
    const std::string what = absl::StrCat("Rope t ", c.t, " heads ", c.heads, " head_dim ",
                                          c.head_dim, " rotary ", c.rotary_dim);
    std::vector<float> inv_freq(static_cast<size_t>(c.rotary_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) {  // HF default: base^(-2i/rotary_dim)
      inv_freq[i] = 1.0f / std::pow(10000.0f, static_cast<float>(2 * i) / static_cast<float>(c.rotary_dim));
    }
    std::vector<int32_t> positions = RandomIndices(static_cast<size_t>(c.t), 8192, seed + 1);
    const Both x = Upload2(RandomValues(static_cast<size_t>(c.t * c.heads * c.head_dim), seed + 2),
                           DType::kF32, {c.t, c.heads, c.head_dim});
    ASSERT_TRUE(cpu().Rope(x.cpu.view, positions, inv_freq, c.scaling).ok());
    const absl::Status s = gpu().Rope(x.gpu.view, positions, inv_freq, c.scaling);
    ASSERT_TRUE(s.ok()) << s;
    // Angles up to ~8e3 rad: a few ulps of sin/cos differ between libm and CUDA.
    ExpectParity(x, 1e-5f, what);
  }
}

TEST_F(ElementwiseParityTest, AddSiluMulGelu) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  for (int64_t n : kCols) {
    for (int64_t m : kRows) {
      const std::string shape = absl::StrCat(" [", m, ", ", n, "]");
      const Both a = Upload2(RandomValues(static_cast<size_t>(m * n), seed + 1, -6.0f, 6.0f), DType::kF32, {m, n});
      const Both b = Upload2(RandomValues(static_cast<size_t>(m * n), seed + 2, -6.0f, 6.0f), DType::kF32, {m, n});
      {
        const Both out = Poisoned2(DType::kF32, {m, n});
        ASSERT_TRUE(cpu().Add(a.cpu.view, b.cpu.view, out.cpu.view).ok());
        ASSERT_TRUE(gpu().Add(a.gpu.view, b.gpu.view, out.gpu.view).ok());
        ExpectClose(Download(gpu(), out.gpu.view), Download(cpu(), out.cpu.view), 0.0f, 0.0f, "Add" + shape);
      }
      {
        const Both out = Poisoned2(DType::kF32, {m, n});
        ASSERT_TRUE(cpu().SiluMul(a.cpu.view, b.cpu.view, out.cpu.view).ok());
        ASSERT_TRUE(gpu().SiluMul(a.gpu.view, b.gpu.view, out.gpu.view).ok());
        ExpectParity(out, 1e-6f, "SiluMul" + shape);
      }
      for (GeluKind kind : {GeluKind::kErf, GeluKind::kTanh}) {
        const Both out = Poisoned2(DType::kF32, {m, n});
        ASSERT_TRUE(cpu().Gelu(a.cpu.view, kind, out.cpu.view).ok());
        ASSERT_TRUE(gpu().Gelu(a.gpu.view, kind, out.gpu.view).ok());
        ExpectParity(out, 1e-6f, (kind == GeluKind::kErf ? "Gelu erf" : "Gelu tanh") + shape);
      }
    }
  }
}

// Views that start 4 bytes into their buffer are not 16-byte aligned, so the kernels must take
// their scalar paths even when the row length is a multiple of 4.
TEST_F(ElementwiseParityTest, UnalignedViewsUseTheScalarPathCorrectly) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  constexpr int64_t m = 3, d = 128;
  const std::vector<float> xv = RandomValues(static_cast<size_t>(m * d + 1), seed);
  const std::vector<float> wv = RandomValues(static_cast<size_t>(d), seed + 1);
  const Both x = Upload2(xv, DType::kF32, {m * d + 1});
  const Both w = Upload2(wv, DType::kF32, {d});
  const Both out = Poisoned2(DType::kF32, {m * d + 1});
  auto shifted = [](const DeviceTensor& t) {
    return TensorView(static_cast<float*>(t.view.data()) + 1, DType::kF32, {m, d}, t.view.device());
  };
  ASSERT_TRUE(cpu().RmsNorm(shifted(x.cpu), w.cpu.view, 1e-6f, shifted(out.cpu)).ok());
  ASSERT_TRUE(gpu().RmsNorm(shifted(x.gpu), w.gpu.view, 1e-6f, shifted(out.gpu)).ok());
  ExpectClose(Download(gpu(), shifted(out.gpu)), Download(cpu(), shifted(out.cpu)),
              RelTolerance(DType::kF32), 1e-6f, "RmsNorm unaligned");
  ASSERT_TRUE(cpu().Add(shifted(x.cpu), shifted(x.cpu), shifted(out.cpu)).ok());
  ASSERT_TRUE(gpu().Add(shifted(x.gpu), shifted(x.gpu), shifted(out.gpu)).ok());
  ExpectClose(Download(gpu(), shifted(out.gpu)), Download(cpu(), shifted(out.cpu)), 0.0f, 0.0f,
              "Add unaligned");
}

// Many rows: more than one row per block is never needed, but every row gets its own block and
// the reductions must not leak between them.
TEST_F(ElementwiseParityTest, ManyRows) {
  const uint32_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  constexpr int64_t m = 3000, d = 96;
  const Both x = Upload2(RandomValues(static_cast<size_t>(m * d), seed, -3.0f, 3.0f), DType::kF32, {m, d});
  const Both w = Upload2(RandomValues(static_cast<size_t>(d), seed + 1), DType::kBF16, {d});
  const Both out = Poisoned2(DType::kF32, {m, d});
  ASSERT_TRUE(cpu().LayerNorm(x.cpu.view, w.cpu.view, TensorView(), 1e-5f, out.cpu.view).ok());
  ASSERT_TRUE(gpu().LayerNorm(x.gpu.view, w.gpu.view, TensorView(), 1e-5f, out.gpu.view).ok());
  ExpectParity(out, 2e-5f, "LayerNorm 3000 rows");
}

}  // namespace
}  // namespace kiln::kernels::gpu_test
