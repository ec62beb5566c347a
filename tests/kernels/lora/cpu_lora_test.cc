// CpuBackend::LoraApply against a naive double-precision triple loop: mixed ranks, segments
// without an adapter, empty segments, one row, many rows; and every validation error leaves
// `out` untouched.
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace kiln::kernels {
namespace {

using ::testing::HasSubstr;

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct HostPair {
  int64_t r = 0;
  std::vector<float> a;  // [r, in]
  std::vector<float> b;  // [out, r]
  float scale = 1.0f;
};

HostPair MakePair(int64_t r, int64_t in, int64_t out, float scale, uint32_t seed) {
  return HostPair{r, Random(static_cast<size_t>(r * in), seed),
                  Random(static_cast<size_t>(out * r), seed + 1000), scale};
}

// out[rows of s] += scale * sum_k (sum_i x[row, i] * a[k, i]) * b[j, k].
std::vector<float> Naive(const std::vector<float>& x, int64_t m, int64_t in, int64_t out,
                         const std::vector<HostPair>& pairs, const std::vector<int32_t>& starts,
                         const std::vector<int32_t>& slots, std::vector<float> base) {
  (void)m;
  for (size_t s = 0; s < slots.size(); ++s) {
    if (slots[s] < 0) continue;
    const HostPair& p = pairs[static_cast<size_t>(slots[s])];
    for (int64_t row = starts[s]; row < starts[s + 1]; ++row) {
      std::vector<double> t(static_cast<size_t>(p.r), 0.0);
      for (int64_t k = 0; k < p.r; ++k) {
        for (int64_t i = 0; i < in; ++i) t[static_cast<size_t>(k)] += double{x[row * in + i]} * p.a[k * in + i];
      }
      for (int64_t j = 0; j < out; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < p.r; ++k) acc += t[static_cast<size_t>(k)] * p.b[j * p.r + k];
        base[static_cast<size_t>(row * out + j)] += static_cast<float>(p.scale * acc);
      }
    }
  }
  return base;
}

class CpuLoraTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = cpu::CreateCpuBackend({.num_threads = 2});
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }

  // Runs LoraApply on a copy of `base` and compares with the naive loop.
  void CheckParity(int64_t m, int64_t in, int64_t out, const std::vector<HostPair>& host,
                   const std::vector<int32_t>& starts, const std::vector<int32_t>& slots) {
    const std::vector<float> x = Random(static_cast<size_t>(m * in), 7);
    const std::vector<float> base = Random(static_cast<size_t>(m * out), 8);
    std::vector<LoraPair> pairs;
    int64_t max_rank = 0;
    for (const HostPair& p : host) {
      pairs.push_back({TensorView(p.a.data(), DType::kF32, {p.r, in}),
                       TensorView(p.b.data(), DType::kF32, {out, p.r}), p.scale});
      max_rank = std::max(max_rank, p.r);
    }
    std::vector<float> got = base;
    std::vector<float> ws(backend_->LoraWorkspaceBytes(m, max_rank) / 4 + 1);
    const absl::Status s = backend_->LoraApply(
        TensorView(x.data(), DType::kF32, {m, in}), pairs, LoraSegments{starts, slots},
        TensorView(got.data(), DType::kF32, {m, out}),
        TensorView(ws.data(), DType::kF32, {static_cast<int64_t>(ws.size())}));
    ASSERT_TRUE(s.ok()) << s;
    const std::vector<float> want = Naive(x, m, in, out, host, starts, slots, base);
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::fabs(want[i]))) << "element " << i;
    }
    // Rows in no-adapter segments and rows past the last segment are exactly the base.
    for (size_t s2 = 0; s2 < slots.size(); ++s2) {
      if (slots[s2] >= 0) continue;
      for (int64_t row = starts[s2]; row < starts[s2 + 1]; ++row) {
        for (int64_t j = 0; j < out; ++j) {
          ASSERT_EQ(got[static_cast<size_t>(row * out + j)], base[static_cast<size_t>(row * out + j)]);
        }
      }
    }
    for (int64_t row = starts.empty() ? 0 : starts.back(); row < m; ++row) {
      for (int64_t j = 0; j < out; ++j) {
        ASSERT_EQ(got[static_cast<size_t>(row * out + j)], base[static_cast<size_t>(row * out + j)]);
      }
    }
  }

  std::unique_ptr<Backend> backend_;
};

TEST_F(CpuLoraTest, MixedRanksNoAdapterAndEmptySegments) {
  const int64_t in = 37, out = 29;
  std::vector<HostPair> pairs = {MakePair(1, in, out, 0.5f, 1), MakePair(8, in, out, 2.0f, 2),
                                 MakePair(3, in, out, -1.25f, 3)};
  // Segments: pair 1 (3 rows), none (2), empty with pair 0, pair 0 (1 row), pair 2 (5), empty none,
  // pair 1 again (4).
  CheckParity(15, in, out, pairs, {0, 3, 5, 5, 6, 11, 11, 15}, {1, -1, 0, 0, 2, -1, 1});
}

TEST_F(CpuLoraTest, OneRow) {
  const int64_t in = 16, out = 48;
  CheckParity(1, in, out, {MakePair(4, in, out, 1.0f, 4)}, {0, 1}, {0});
}

TEST_F(CpuLoraTest, ManyRowsOneSegment) {
  const int64_t in = 64, out = 96;
  CheckParity(257, in, out, {MakePair(16, in, out, 0.125f, 5)}, {0, 257}, {0});
}

TEST_F(CpuLoraTest, SegmentsCoverOnlyAPrefixOfTheRows) {
  const int64_t in = 9, out = 11;
  CheckParity(10, in, out, {MakePair(2, in, out, 3.0f, 6)}, {0, 2, 6}, {-1, 0});
}

TEST_F(CpuLoraTest, NoSegmentsIsANoOp) {
  CheckParity(4, 8, 8, {MakePair(2, 8, 8, 1.0f, 7)}, {}, {});
}

TEST_F(CpuLoraTest, WorkspaceBytesGrowWithRowsAndRank) {
  EXPECT_EQ(backend_->LoraWorkspaceBytes(10, 8), 10u * 8u * 4u);
  EXPECT_EQ(backend_->LoraWorkspaceBytes(0, 8), 0u);
}

// One valid setup that each error case breaks in one place.
class CpuLoraErrorTest : public CpuLoraTest {
 protected:
  static constexpr int64_t kM = 6, kIn = 5, kOut = 7;
  void SetUp() override {
    CpuLoraTest::SetUp();
    x_ = Random(kM * kIn, 1);
    out_ = Random(kM * kOut, 2);
    p4_ = MakePair(4, kIn, kOut, 1.0f, 3);
    p2_ = MakePair(2, kIn, kOut, 1.0f, 4);
    pairs_ = {Pair(p4_), Pair(p2_)};
    ws_.assign(kM * 4, 0.0f);
  }
  LoraPair Pair(HostPair& p) {
    return {TensorView(p.a.data(), DType::kF32, {p.r, kIn}), TensorView(p.b.data(), DType::kF32, {kOut, p.r}),
            p.scale};
  }
  absl::Status Run(const std::vector<int32_t>& starts, const std::vector<int32_t>& slots) {
    const std::vector<float> before = out_;
    absl::Status s = backend_->LoraApply(TensorView(x_.data(), DType::kF32, {kM, kIn}), pairs_,
                                         LoraSegments{starts, slots},
                                         TensorView(out_.data(), DType::kF32, {kM, kOut}), Ws());
    if (!s.ok()) {
      EXPECT_EQ(out_, before) << "out written on error: " << s;
    }
    return s;
  }
  TensorView Ws() { return TensorView(ws_.data(), DType::kF32, {static_cast<int64_t>(ws_.size())}); }

  std::vector<float> x_, out_, ws_;
  HostPair p4_, p2_;
  std::vector<LoraPair> pairs_;
};

TEST_F(CpuLoraErrorTest, ValidCallSucceeds) { EXPECT_TRUE(Run({0, 3, 6}, {0, 1}).ok()); }

TEST_F(CpuLoraErrorTest, SlotOutOfRange) {
  const absl::Status s = Run({0, 3, 6}, {0, 2});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("slot[1] = 2"));
}

TEST_F(CpuLoraErrorTest, DecreasingBounds) {
  const absl::Status s = Run({0, 4, 3}, {0, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("seg_start[2] = 3"));
}

TEST_F(CpuLoraErrorTest, BoundsPastRows) {
  const absl::Status s = Run({0, 3, 7}, {0, 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("exceeds the 6 rows"));
}

TEST_F(CpuLoraErrorTest, FirstBoundNotZero) {
  EXPECT_THAT(Run({1, 3, 6}, {0, 1}).message(), HasSubstr("seg_start[0] is 1"));
}

TEST_F(CpuLoraErrorTest, BoundsCountMismatch) {
  EXPECT_THAT(Run({0, 3}, {0, 1}).message(), HasSubstr("expected segments + 1 = 3"));
}

TEST_F(CpuLoraErrorTest, WrongAShape) {
  pairs_[1].a = TensorView(p2_.a.data(), DType::kF32, {1, 2 * kIn});
  EXPECT_THAT(Run({0, 6}, {0}).message(), HasSubstr("pairs[1].a"));
}

TEST_F(CpuLoraErrorTest, RankMismatchBetweenAAndB) {
  pairs_[0].b = TensorView(p4_.b.data(), DType::kF32, {kOut * 2, 2});
  EXPECT_THAT(Run({0, 6}, {0}).message(), HasSubstr("pairs[0].b"));
}

TEST_F(CpuLoraErrorTest, ZeroRank) {
  pairs_[0].a = TensorView(p4_.a.data(), DType::kF32, {0, kIn});
  EXPECT_THAT(Run({0, 6}, {1}).message(), HasSubstr("rank r = 0"));
}

TEST_F(CpuLoraErrorTest, NonF32Pair) {
  pairs_[0].a = TensorView(p4_.a.data(), DType::kF16, {4, kIn});
  EXPECT_EQ(Run({0, 6}, {0}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CpuLoraErrorTest, NonFiniteScale) {
  pairs_[1].scale = std::nanf("");
  EXPECT_THAT(Run({0, 6}, {0}).message(), HasSubstr("pairs[1].scale"));
}

TEST_F(CpuLoraErrorTest, WorkspaceTooSmall) {
  ws_.resize(kM * 4 - 1);
  EXPECT_THAT(Run({0, 6}, {0}).message(), HasSubstr("workspace has"));
}

}  // namespace
}  // namespace kiln::kernels
