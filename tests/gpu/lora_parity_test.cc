// CUDA LoraApply against the CPU reference: mixed slots (several segments sharing a pair),
// segments without an adapter, empty segments, rows past the last segment, different ranks
// (1 to 300, beyond one shared-memory chunk), decode and prefill row counts, odd in/out dims.
// `out` starts from the same random values on both sides (LoraApply accumulates); rows no
// adapter touches must come back bit-identical. Rejections match the CPU's, and a rejected call
// writes nothing.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gemm_parity_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace kiln::kernels::gpu_test {
namespace {

struct PairSpec {
  int64_t rank;
  float scale;
};

class LoraParityTest : public GpuParityTest {
 protected:
  void Check(int64_t m, int64_t in, int64_t out_dim, const std::vector<PairSpec>& specs,
             const std::vector<int32_t>& starts, const std::vector<int32_t>& slots) {
    SCOPED_TRACE(testing::Message() << "m " << m << " in " << in << " out " << out_dim << " pairs " << specs.size()
                                    << " segments " << slots.size());
    const auto seed = static_cast<uint32_t>(m * 31 + in * 7 + out_dim);
    const std::vector<float> x = RandomValues(static_cast<size_t>(m * in), seed);
    const std::vector<float> base = RandomValues(static_cast<size_t>(m * out_dim), seed + 1);
    std::vector<Twin> tensors;
    tensors.reserve(specs.size() * 2);
    std::vector<LoraPair> cpu_pairs, gpu_pairs;
    int64_t max_rank = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      const int64_t r = specs[i].rank;
      max_rank = std::max(max_rank, r);
      tensors.push_back(MakeTwin(gpu(), RandomValues(static_cast<size_t>(r * in), seed + 10 + static_cast<uint32_t>(i)),
                                 DType::kF32, {r, in}));
      tensors.push_back(MakeTwin(gpu(),
                                 RandomValues(static_cast<size_t>(out_dim * r), seed + 100 + static_cast<uint32_t>(i)),
                                 DType::kF32, {out_dim, r}));
      const Twin& a = tensors[tensors.size() - 2];
      const Twin& b = tensors[tensors.size() - 1];
      cpu_pairs.push_back({a.cpu, b.cpu, specs[i].scale});
      gpu_pairs.push_back({a.gpu(), b.gpu(), specs[i].scale});
    }
    const LoraSegments segments{starts, slots};

    std::vector<float> want = base;
    std::vector<float> cpu_ws(static_cast<size_t>(std::max<int64_t>(1, m * max_rank)));
    const absl::Status cs = cpu().LoraApply(
        TensorView(x.data(), DType::kF32, {m, in}), cpu_pairs, segments, TensorView(want.data(), DType::kF32, {m, out_dim}),
        TensorView(cpu_ws.data(), DType::kF32, {static_cast<int64_t>(cpu_ws.size())}));
    ASSERT_TRUE(cs.ok()) << cs;

    DeviceTensor gx = Upload(gpu(), x, DType::kF32, {m, in});
    DeviceTensor gout = Upload(gpu(), base, DType::kF32, {m, out_dim});
    DeviceTensor ws = Workspace(gpu(), gpu().LoraWorkspaceBytes(m, max_rank));
    const absl::Status gs = gpu().LoraApply(gx.view, gpu_pairs, segments, gout.view, ws.view);
    ASSERT_TRUE(gs.ok()) << gs;
    const std::vector<float> got = Download(gpu(), gout.view);
    ExpectClose(got, want, RelTolerance(DType::kF32), DotAtol(RelTolerance(DType::kF32), in * max_rank), "LoraApply");

    // Rows outside every adapted segment are untouched (bit for bit).
    std::vector<bool> adapted(static_cast<size_t>(m), false);
    for (size_t s = 0; s < slots.size(); ++s) {
      if (slots[s] < 0) continue;
      for (int32_t row = starts[s]; row < starts[s + 1]; ++row) adapted[static_cast<size_t>(row)] = true;
    }
    for (int64_t row = 0; row < m; ++row) {
      if (adapted[static_cast<size_t>(row)]) continue;
      for (int64_t j = 0; j < out_dim; ++j) {
        const size_t i = static_cast<size_t>(row * out_dim + j);
        ASSERT_EQ(got[i], base[i]) << "row " << row << " has no adapter but changed";
      }
    }
  }
};

TEST_F(LoraParityTest, DecodeOneRowPerSequence) {
  // Seven sequences, one token each: slots 0, none, 1, 0, 2, none, 1.
  Check(7, 4101, 17, {{8, 2.0f}, {16, 0.5f}, {1, 1.25f}}, {0, 1, 2, 3, 4, 5, 6, 7}, {0, -1, 1, 0, 2, -1, 1});
  Check(1, 64, 4101, {{64, 0.25f}}, {0, 1}, {0});
  Check(2, 17, 33, {{4, 1.0f}, {128, 0.125f}}, {0, 1, 2}, {1, 0});
}

TEST_F(LoraParityTest, PrefillSegmentsMixedRanksEmptyAndTrailingRows) {
  // 300 rows: a 100-row segment, an empty one, one without adapter, a 300-rank pair (two
  // shared-memory chunks), and 33 trailing rows that no segment covers.
  Check(300, 96, 4101, {{16, 2.0f}, {300, 0.5f}, {1, 3.0f}}, {0, 100, 100, 150, 240, 267}, {0, 2, -1, 1, 0});
  Check(33, 4101, 17, {{32, 1.0f}, {7, -0.75f}}, {0, 11, 11, 33}, {1, 0, 1});
}

TEST_F(LoraParityTest, NoAdapterAnywhereLeavesOutUntouched) {
  Check(33, 17, 17, {{8, 1.0f}}, {0, 20, 33}, {-1, -1});
  Check(7, 17, 17, {}, {}, {});
}

TEST_F(LoraParityTest, RejectsWhatTheCpuRejectsAndWritesNothing) {
  const std::vector<float> x = RandomValues(4 * 8, 1), a = RandomValues(2 * 8, 2), b = RandomValues(5 * 2, 3);
  const std::vector<float> base = RandomValues(4 * 5, 4);
  DeviceTensor gx = Upload(gpu(), x, DType::kF32, {4, 8});
  DeviceTensor ga = Upload(gpu(), a, DType::kF32, {2, 8});
  DeviceTensor gb = Upload(gpu(), b, DType::kF32, {5, 2});
  DeviceTensor gout = Upload(gpu(), base, DType::kF32, {4, 5});
  DeviceTensor ws = Workspace(gpu(), 4 * 2 * 4);
  std::vector<float> out = base, cpu_ws(8);
  const LoraPair cpu_pair{TensorView(a.data(), DType::kF32, {2, 8}), TensorView(b.data(), DType::kF32, {5, 2}), 1.0f};
  const LoraPair gpu_pair{ga.view, gb.view, 1.0f};
  auto both = [&](const std::vector<int32_t>& starts, const std::vector<int32_t>& slots, const std::string& what) {
    const LoraSegments seg{starts, slots};
    ExpectSameStatus(cpu().LoraApply(TensorView(x.data(), DType::kF32, {4, 8}), {&cpu_pair, 1}, seg,
                                     TensorView(out.data(), DType::kF32, {4, 5}),
                                     TensorView(cpu_ws.data(), DType::kF32, {8})),
                     gpu().LoraApply(gx.view, {&gpu_pair, 1}, seg, gout.view, ws.view), what);
  };
  both({0, 2, 4}, {0, 1}, "slot out of range");
  both({0, 3, 2}, {0, 0}, "decreasing seg_start");
  both({0, 5}, {0}, "past the rows of x");
  both({1, 4}, {0}, "seg_start[0] != 0");
  EXPECT_EQ(Download(gpu(), gout.view), base);
  // A pair with the wrong inner dimension.
  DeviceTensor bad_a = Upload(gpu(), a, DType::kF32, {4, 4});
  const LoraPair bad{bad_a.view, gb.view, 1.0f};
  const std::vector<int32_t> starts = {0, 4}, slots = {0};
  const absl::Status s = gpu().LoraApply(gx.view, {&bad, 1}, LoraSegments{starts, slots}, gout.view, ws.view);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("pairs[0].a"), std::string::npos) << s;
  EXPECT_EQ(Download(gpu(), gout.view), base);
}

}  // namespace
}  // namespace kiln::kernels::gpu_test
