// CUDA Matmul against the CPU reference: odd shapes on both paths (the GEMV for m <= 8, cuBLASLt
// above), each weight dtype, no bias / F32 bias (cuBLASLt epilogue) / BF16 bias (bias kernel),
// misaligned views (scalar GEMV loads, cuBLASLt alignment preferences), k = 0, outputs poisoned
// with NaN, and identical rejections of bad calls.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/gpu/gemm_parity_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace kiln::kernels::gpu_test {
namespace {

struct Shape {
  int64_t m, n, k;
};
constexpr Shape kShapes[] = {{1, 17, 4101}, {2, 4101, 17}, {7, 17, 17}, {1, 1, 1},     {8, 257, 2048},
                             {1, 4096, 4096}, {33, 1, 4101}, {9, 64, 64}, {300, 4101, 17}, {300, 17, 4101},
                             {33, 4101, 1}};
constexpr DType kWeightDtypes[] = {DType::kF32, DType::kF16, DType::kBF16};

class GemmParityTest : public GpuParityTest {
 protected:
  // Runs Matmul on both backends; `offset` shifts the GPU views of x and w by that many
  // elements into their buffers (misaligned pointers).
  void Check(const Shape& s, DType wt, DType bias_dtype, bool with_bias, int64_t offset) {
    SCOPED_TRACE(testing::Message() << "m " << s.m << " n " << s.n << " k " << s.k << " w " << DTypeName(wt)
                                    << (with_bias ? " bias " : " no bias ")
                                    << (with_bias ? DTypeName(bias_dtype) : "") << " offset " << offset);
    const auto seed = static_cast<uint32_t>(s.m * 131 + s.n * 7 + s.k);
    std::vector<float> x = RandomValues(static_cast<size_t>(s.m * s.k), seed);
    std::vector<float> w = RandomValues(static_cast<size_t>(s.n * s.k), seed + 1);
    const std::vector<float> bias = RandomValues(static_cast<size_t>(s.n), seed + 2);

    // CPU reference.
    const std::vector<uint8_t> w_bytes = Encode(w, wt), b_bytes = Encode(bias, bias_dtype);
    std::vector<float> want(static_cast<size_t>(s.m * s.n), 0.0f);
    std::vector<uint8_t> cpu_ws(cpu().MatmulWorkspaceBytes(s.m, s.n, s.k, wt) + 1);
    const TensorView cpu_bias = with_bias ? HostView(b_bytes, bias_dtype, {s.n}) : TensorView();
    ASSERT_TRUE(cpu().Matmul(TensorView(x.data(), DType::kF32, {s.m, s.k}), HostView(w_bytes, wt, {s.n, s.k}),
                             cpu_bias, TensorView(want.data(), DType::kF32, {s.m, s.n}),
                             TensorView(cpu_ws.data(), DType::kU8, {static_cast<int64_t>(cpu_ws.size())}))
                    .ok());

    // GPU, with the views optionally `offset` elements into bigger buffers.
    std::vector<float> x_pad(static_cast<size_t>(offset), 0.0f), w_pad(static_cast<size_t>(offset), 0.0f);
    x_pad.insert(x_pad.end(), x.begin(), x.end());
    w_pad.insert(w_pad.end(), w.begin(), w.end());
    DeviceTensor gx = Upload(gpu(), x_pad, DType::kF32, {static_cast<int64_t>(x_pad.size())});
    DeviceTensor gw = Upload(gpu(), w_pad, wt, {static_cast<int64_t>(w_pad.size())});
    const TensorView x_view(static_cast<char*>(gx.buffer.data()) + offset * 4, DType::kF32, {s.m, s.k},
                            gx.buffer.device());
    const TensorView w_view(static_cast<char*>(gw.buffer.data()) + offset * static_cast<int64_t>(DTypeSize(wt)), wt,
                            {s.n, s.k}, gw.buffer.device());
    DeviceTensor gb = Upload(gpu(), bias, bias_dtype, {s.n});
    DeviceTensor gout = Poisoned(gpu(), DType::kF32, {s.m, s.n});
    DeviceTensor ws = Workspace(gpu(), gpu().MatmulWorkspaceBytes(s.m, s.n, s.k, wt));
    const absl::Status st =
        gpu().Matmul(x_view, w_view, with_bias ? gb.view : TensorView(), gout.view, ws.view);
    ASSERT_TRUE(st.ok()) << st;
    const float rtol = RelTolerance(wt);
    ExpectClose(Download(gpu(), gout.view), want, rtol, DotAtol(rtol, s.k), "Matmul");
  }
};

TEST_F(GemmParityTest, EveryShapeAndWeightDtype) {
  for (const Shape& s : kShapes) {
    for (DType wt : kWeightDtypes) {
      Check(s, wt, DType::kF32, /*with_bias=*/false, /*offset=*/0);
      Check(s, wt, DType::kF32, /*with_bias=*/true, /*offset=*/0);
    }
  }
}

TEST_F(GemmParityTest, HalfPrecisionBiasGoesThroughTheBiasKernel) {
  for (const Shape& s : {Shape{1, 17, 33}, Shape{300, 130, 67}}) {
    Check(s, DType::kBF16, DType::kBF16, true, 0);
    Check(s, DType::kF32, DType::kF16, true, 0);
  }
}

TEST_F(GemmParityTest, MisalignedViews) {
  // One element in: 2- or 4-byte aligned pointers, no 16-byte vector loads, cuBLASLt told so.
  for (const Shape& s : {Shape{1, 64, 256}, Shape{4, 100, 4096}, Shape{64, 96, 128}, Shape{300, 33, 512}}) {
    for (DType wt : kWeightDtypes) Check(s, wt, DType::kF32, true, /*offset=*/1);
  }
}

TEST_F(GemmParityTest, EmptyReductionWritesTheBias) {
  Check(Shape{3, 5, 0}, DType::kBF16, DType::kF32, true, 0);
  Check(Shape{12, 5, 0}, DType::kF32, DType::kF32, true, 0);
  Check(Shape{12, 5, 0}, DType::kF16, DType::kF32, false, 0);
}

TEST_F(GemmParityTest, RepeatedShapesReuseThePlan) {
  // The second call of a shape hits the plan cache; its result must not change.
  for (int i = 0; i < 3; ++i) Check(Shape{40, 96, 160}, DType::kBF16, DType::kF32, true, 0);
}

TEST_F(GemmParityTest, RejectsWhatTheCpuRejects) {
  std::vector<float> x(6), w(8), out(4);
  std::vector<uint8_t> ws(64);
  DeviceTensor gx = Upload(gpu(), x, DType::kF32, {2, 3});
  DeviceTensor gw = Upload(gpu(), w, DType::kF32, {2, 4});
  DeviceTensor gout = Upload(gpu(), out, DType::kF32, {2, 2});
  DeviceTensor gws = Workspace(gpu(), 64);
  // w's k (4) does not match x's (3).
  ExpectSameStatus(cpu().Matmul(TensorView(x.data(), DType::kF32, {2, 3}), TensorView(w.data(), DType::kF32, {2, 4}),
                                TensorView(), TensorView(out.data(), DType::kF32, {2, 2}),
                                TensorView(ws.data(), DType::kU8, {64})),
                   gpu().Matmul(gx.view, gw.view, TensorView(), gout.view, gws.view), "k mismatch");
  // A host view given to the GPU is refused, never dereferenced.
  const absl::Status host = gpu().Matmul(TensorView(x.data(), DType::kF32, {2, 3}), gw.view, TensorView(), gout.view,
                                         gws.view);
  EXPECT_EQ(host.code(), absl::StatusCode::kInvalidArgument) << host;
  // Too small a workspace for the cuBLASLt path.
  DeviceTensor big_x = Upload(gpu(), std::vector<float>(64 * 8), DType::kF32, {64, 8});
  DeviceTensor big_w = Upload(gpu(), std::vector<float>(16 * 8), DType::kBF16, {16, 8});
  DeviceTensor big_out = Poisoned(gpu(), DType::kF32, {64, 16});
  const absl::Status small = gpu().Matmul(big_x.view, big_w.view, TensorView(), big_out.view, gws.view);
  EXPECT_EQ(small.code(), absl::StatusCode::kInvalidArgument) << small;
  EXPECT_NE(small.message().find("workspace"), std::string::npos) << small;
}

}  // namespace
}  // namespace kiln::kernels::gpu_test
