// CUDA QuantMatmul against the CPU reference: every format (bnb NF4/FP4, LLM.int8 with and
// without outlier columns, GPTQ 2/4/8-bit with sequential and act-order g_idx and both zero
// offsets, AWQ), every compute dtype, decode (fused GEMV, m <= 8) and prefill (dequantize +
// cuBLASLt) row counts, odd shapes, bias on/off, outputs poisoned with NaN. Tensors are built
// on the host as tests/kernels/quant does (random packed payloads and positive scales) and
// uploaded; the CPU reads the same bytes.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/quant/quant_matrix.h"
#include "tests/gpu/gemm_parity_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace kiln::kernels::gpu_test {
namespace {

constexpr int64_t kRowCounts[] = {1, 2, 7, 33, 300};
constexpr DType kComputeDtypes[] = {DType::kF32, DType::kF16, DType::kBF16};

// bitsandbytes get_4bit_type: NF4, and FP4 (its values over their max, 12).
constexpr std::array<float, 16> kNf4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
std::array<float, 16> Fp4() {
  const float v[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12, -4, -6, -2, -3};
  std::array<float, 16> code{};
  for (int i = 0; i < 16; ++i) code[static_cast<size_t>(i)] = v[i] / 12.0f;
  return code;
}

float Round(DType t, float v) {
  if (t == DType::kF16) return HalfToFloat(FloatToHalf(v));
  if (t == DType::kBF16) return BFloat16ToFloat(FloatToBFloat16(v));
  return v;
}

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng() & 0xFF);
  return b;
}

std::vector<float> PositiveScales(size_t n, uint32_t seed, float lo, float hi) {
  return RandomValues(n, seed, lo, hi);
}

// The tensors of one QuantizedMatrix on both backends, and a matrix description for each.
struct QuantTwin {
  std::vector<Twin> parts;
  QuantizedMatrix cpu, gpu;
  std::string name;

  // Adds a tensor; returns its index in parts.
  size_t Add(Backend& backend, const std::vector<uint8_t>& bytes, DType dtype, std::initializer_list<int64_t> shape) {
    parts.push_back(MakeTwin(backend, bytes, dtype, shape));
    return parts.size() - 1;
  }
};

QuantTwin MakeBnb4(Backend& gpu, int64_t rows, int64_t cols, int64_t blocksize, const std::array<float, 16>& code,
                   DType cd, uint32_t seed) {
  QuantTwin q;
  q.name = "bnb4 " + std::to_string(rows) + "x" + std::to_string(cols) + " bs " + std::to_string(blocksize);
  const int64_t n = rows * cols, bytes = (n + 1) / 2, blocks = (n + blocksize - 1) / blocksize;
  const size_t packed = q.Add(gpu, RandomBytes(static_cast<size_t>(bytes), seed), DType::kU8, {bytes});
  const size_t absmax =
      q.Add(gpu, Encode(PositiveScales(static_cast<size_t>(blocks), seed + 1, 0.05f, 1.5f), DType::kF32), DType::kF32,
            {blocks});
  for (QuantizedMatrix* m : {&q.cpu, &q.gpu}) {
    const bool on_gpu = m == &q.gpu;
    m->format = QuantFormat::kBnb4;
    m->rows = rows;
    m->cols = cols;
    m->compute_dtype = cd;
    m->bnb4.packed = on_gpu ? q.parts[packed].gpu() : q.parts[packed].cpu;
    m->bnb4.absmax = on_gpu ? q.parts[absmax].gpu() : q.parts[absmax].cpu;
    m->bnb4.code = code;
    m->bnb4.blocksize = blocksize;
  }
  return q;
}

QuantTwin MakeInt8(Backend& gpu, int64_t rows, int64_t cols, float threshold, DType cd, uint32_t seed) {
  QuantTwin q;
  q.name = "int8 " + std::to_string(rows) + "x" + std::to_string(cols) + " threshold " + std::to_string(threshold);
  std::vector<uint8_t> cb = RandomBytes(static_cast<size_t>(rows * cols), seed);
  for (uint8_t& b : cb) b = b == 0x80 ? 0x81 : b;  // int8 codes in [-127, 127]
  std::vector<float> scb = PositiveScales(static_cast<size_t>(rows), seed + 1, 0.05f, 0.4f);
  for (float& s : scb) s = HalfToFloat(FloatToHalf(s));  // SCB is an fp16 absmax
  const size_t weight = q.Add(gpu, cb, DType::kI8, {rows, cols});
  const size_t scale = q.Add(gpu, Encode(scb, DType::kF32), DType::kF32, {rows});
  for (QuantizedMatrix* m : {&q.cpu, &q.gpu}) {
    const bool on_gpu = m == &q.gpu;
    m->format = QuantFormat::kInt8;
    m->rows = rows;
    m->cols = cols;
    m->compute_dtype = cd;
    m->int8.weight = on_gpu ? q.parts[weight].gpu() : q.parts[weight].cpu;
    m->int8.scb = on_gpu ? q.parts[scale].gpu() : q.parts[scale].cpu;
    m->int8.threshold = threshold;
  }
  return q;
}

QuantTwin MakeGptq(Backend& gpu, int64_t rows, int64_t cols, int bits, int64_t group_size, bool act_order,
                   int zero_offset, DType scales_dtype, DType cd, uint32_t seed) {
  QuantTwin q;
  q.name = "gptq " + std::to_string(bits) + "-bit " + std::to_string(rows) + "x" + std::to_string(cols) + " group " +
           std::to_string(group_size) + (act_order ? " act-order" : "") + " zero_offset " +
           std::to_string(zero_offset) + " scales " + std::string(DTypeName(scales_dtype));
  const int64_t pack = 32 / bits, groups = (cols + group_size - 1) / group_size;
  std::vector<int32_t> g_idx(static_cast<size_t>(cols));
  for (int64_t k = 0; k < cols; ++k) g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(k / group_size);
  if (act_order) std::shuffle(g_idx.begin(), g_idx.end(), std::mt19937(seed + 7));
  std::vector<uint8_t> g_bytes(g_idx.size() * 4);
  std::memcpy(g_bytes.data(), g_idx.data(), g_bytes.size());
  const size_t qweight = q.Add(gpu, RandomBytes(static_cast<size_t>(cols / pack * rows * 4), seed), DType::kI32,
                               {cols / pack, rows});
  const size_t qzeros = q.Add(gpu, RandomBytes(static_cast<size_t>(groups * (rows / pack) * 4), seed + 1),
                              DType::kI32, {groups, rows / pack});
  const size_t scales = q.Add(gpu, Encode(PositiveScales(static_cast<size_t>(groups * rows), seed + 2, 0.005f, 0.05f),
                                          scales_dtype),
                              scales_dtype, {groups, rows});
  const size_t gi = q.Add(gpu, g_bytes, DType::kI32, {cols});
  for (QuantizedMatrix* m : {&q.cpu, &q.gpu}) {
    const bool on_gpu = m == &q.gpu;
    m->format = QuantFormat::kGptq;
    m->rows = rows;
    m->cols = cols;
    m->compute_dtype = cd;
    m->gptq.qweight = on_gpu ? q.parts[qweight].gpu() : q.parts[qweight].cpu;
    m->gptq.qzeros = on_gpu ? q.parts[qzeros].gpu() : q.parts[qzeros].cpu;
    m->gptq.scales = on_gpu ? q.parts[scales].gpu() : q.parts[scales].cpu;
    m->gptq.g_idx = on_gpu ? q.parts[gi].gpu() : q.parts[gi].cpu;
    m->gptq.bits = bits;
    m->gptq.zero_offset = zero_offset;
    m->gptq.groups = groups;
  }
  EXPECT_TRUE(ValidateGptqIndex(g_idx, groups, "w").ok());
  return q;
}

QuantTwin MakeAwq(Backend& gpu, int64_t rows, int64_t cols, int64_t group_size, DType scales_dtype, DType cd,
                  uint32_t seed) {
  QuantTwin q;
  q.name = "awq " + std::to_string(rows) + "x" + std::to_string(cols) + " group " + std::to_string(group_size);
  const int64_t groups = cols / group_size;
  const size_t qweight =
      q.Add(gpu, RandomBytes(static_cast<size_t>(cols * (rows / 8) * 4), seed), DType::kI32, {cols, rows / 8});
  const size_t qzeros =
      q.Add(gpu, RandomBytes(static_cast<size_t>(groups * (rows / 8) * 4), seed + 1), DType::kI32, {groups, rows / 8});
  const size_t scales = q.Add(gpu, Encode(PositiveScales(static_cast<size_t>(groups * rows), seed + 2, 0.005f, 0.05f),
                                          scales_dtype),
                              scales_dtype, {groups, rows});
  for (QuantizedMatrix* m : {&q.cpu, &q.gpu}) {
    const bool on_gpu = m == &q.gpu;
    m->format = QuantFormat::kAwq;
    m->rows = rows;
    m->cols = cols;
    m->compute_dtype = cd;
    m->awq.qweight = on_gpu ? q.parts[qweight].gpu() : q.parts[qweight].cpu;
    m->awq.qzeros = on_gpu ? q.parts[qzeros].gpu() : q.parts[qzeros].cpu;
    m->awq.scales = on_gpu ? q.parts[scales].gpu() : q.parts[scales].cpu;
    m->awq.group_size = group_size;
  }
  return q;
}

class QuantParityTest : public GpuParityTest {
 protected:
  // QuantMatmul of m rows on both backends; x[0] = outlier (when non-zero) plants an LLM.int8
  // outlier column.
  void Check(const QuantTwin& q, int64_t m, bool with_bias, float outlier = 0.0f) {
    ASSERT_TRUE(ValidateQuantizedMatrix(q.cpu, "w").ok()) << q.name;
    const int64_t n = q.cpu.rows, k = q.cpu.cols;
    const DType cd = q.cpu.compute_dtype;
    SCOPED_TRACE(testing::Message() << q.name << " compute " << DTypeName(cd) << " m " << m
                                    << (with_bias ? " bias" : ""));
    const auto seed = static_cast<uint32_t>(m * 977 + n * 13 + k);
    std::vector<float> x = RandomValues(static_cast<size_t>(m * k), seed);
    if (outlier != 0.0f) x[0] = outlier;
    const std::vector<float> bias = RandomValues(static_cast<size_t>(n), seed + 1);

    std::vector<float> want(static_cast<size_t>(m * n), 0.0f);
    std::vector<uint8_t> cpu_ws(cpu().QuantMatmulWorkspaceBytes(m, q.cpu) + 1);
    const absl::Status cs = cpu().QuantMatmul(
        TensorView(x.data(), DType::kF32, {m, k}), q.cpu,
        with_bias ? TensorView(bias.data(), DType::kF32, {n}) : TensorView(), TensorView(want.data(), DType::kF32, {m, n}),
        TensorView(cpu_ws.data(), DType::kU8, {static_cast<int64_t>(cpu_ws.size())}));
    ASSERT_TRUE(cs.ok()) << cs;

    DeviceTensor gx = Upload(gpu(), x, DType::kF32, {m, k});
    DeviceTensor gb = Upload(gpu(), bias, DType::kF32, {n});
    DeviceTensor gout = Poisoned(gpu(), DType::kF32, {m, n});
    DeviceTensor ws = Workspace(gpu(), gpu().QuantMatmulWorkspaceBytes(m, q.gpu));
    const absl::Status gs = gpu().QuantMatmul(gx.view, q.gpu, with_bias ? gb.view : TensorView(), gout.view, ws.view);
    ASSERT_TRUE(gs.ok()) << gs;
    const std::vector<float> got = Download(gpu(), gout.view);
    const float rtol = RelTolerance(cd);
    ExpectClose(got, want, rtol, DotAtol(rtol, k), "QuantMatmul");
    size_t unrounded = 0;
    for (float v : got) unrounded += std::isfinite(v) && v != Round(cd, v) ? 1 : 0;
    EXPECT_EQ(unrounded, 0u) << "outputs are rounded to the compute dtype";
  }
};

TEST_F(QuantParityTest, Bnb4Nf4AndFp4) {
  struct S {
    int64_t rows, cols, blocksize;
  };
  // Odd element counts (scalar path, blocks straddling rows) and 32-aligned rows (vector path).
  for (const S& s : {S{1, 17, 64}, S{17, 33, 32}, S{72, 256, 64}, S{40, 4101, 64}, S{4101, 64, 128}}) {
    for (DType cd : kComputeDtypes) {
      for (const auto& code : {kNf4, Fp4()}) {
        const QuantTwin q = MakeBnb4(gpu(), s.rows, s.cols, s.blocksize, code, cd, static_cast<uint32_t>(s.rows + s.cols));
        for (int64_t m : kRowCounts) Check(q, m, /*with_bias=*/m % 2 == 1);
      }
    }
  }
}

TEST_F(QuantParityTest, Int8WithAndWithoutOutlierColumns) {
  struct S {
    int64_t rows, cols;
  };
  for (const S& s : {S{1, 17}, S{17, 33}, S{72, 256}, S{40, 4101}, S{4101, 64}}) {
    for (DType cd : kComputeDtypes) {
      for (float threshold : {0.0f, 6.0f, 0.9f}) {  // none; one planted column; many columns
        const QuantTwin q = MakeInt8(gpu(), s.rows, s.cols, threshold, cd, static_cast<uint32_t>(s.rows * 3 + s.cols));
        for (int64_t m : kRowCounts) Check(q, m, /*with_bias=*/m != 2, /*outlier=*/7.5f);
      }
    }
  }
}

TEST_F(QuantParityTest, GptqBitsGroupsAndZeroOffsets) {
  struct S {
    int bits;
    int64_t rows, cols, group_size;
    bool act_order;
    int zero_offset;
    DType scales;
  };
  const S cases[] = {
      {4, 32, 64, 32, false, 1, DType::kF16},     {4, 96, 4104, 128, true, 1, DType::kF16},
      {4, 4104, 128, 128, false, 0, DType::kF32}, {2, 48, 96, 32, true, 1, DType::kF16},
      {2, 4112, 64, 64, false, 0, DType::kF16},   {8, 20, 36, 12, true, 1, DType::kF32},
      {8, 100, 4100, 4100, false, 1, DType::kF16},
  };
  for (const S& s : cases) {
    for (DType cd : kComputeDtypes) {
      const QuantTwin q = MakeGptq(gpu(), s.rows, s.cols, s.bits, s.group_size, s.act_order, s.zero_offset, s.scales,
                                   cd, static_cast<uint32_t>(s.rows + 5 * s.cols + s.bits));
      for (int64_t m : kRowCounts) Check(q, m, /*with_bias=*/m != 7);
    }
  }
}

TEST_F(QuantParityTest, Awq) {
  struct S {
    int64_t rows, cols, group_size;
    DType scales;
  };
  for (const S& s : {S{8, 32, 32, DType::kF16}, S{72, 256, 128, DType::kF16}, S{4104, 128, 64, DType::kF32},
                     S{40, 4096, 128, DType::kF16}}) {
    for (DType cd : kComputeDtypes) {
      const QuantTwin q = MakeAwq(gpu(), s.rows, s.cols, s.group_size, s.scales, cd, static_cast<uint32_t>(s.rows + s.cols));
      for (int64_t m : kRowCounts) Check(q, m, /*with_bias=*/m != 1);
    }
  }
}

TEST_F(QuantParityTest, RejectsWhatTheCpuRejects) {
  QuantTwin q = MakeInt8(gpu(), 4, 6, 6.0f, DType::kF32, 2);
  std::vector<float> x(5), out(4);
  DeviceTensor gx = Upload(gpu(), x, DType::kF32, {1, 5});
  DeviceTensor gout = Upload(gpu(), out, DType::kF32, {1, 4});
  DeviceTensor ws = Workspace(gpu(), 1 << 16);
  std::vector<uint8_t> cpu_ws(1 << 16);
  // x has 5 columns, w 6.
  ExpectSameStatus(cpu().QuantMatmul(TensorView(x.data(), DType::kF32, {1, 5}), q.cpu, TensorView(),
                                     TensorView(out.data(), DType::kF32, {1, 4}),
                                     TensorView(cpu_ws.data(), DType::kU8, {1 << 16})),
                   gpu().QuantMatmul(gx.view, q.gpu, TensorView(), gout.view, ws.view), "x columns");
  // A malformed matrix (SCB of the wrong length) never reaches a kernel.
  q.cpu.int8.scb = q.cpu.int8.scb.Rows(0, 3);
  q.gpu.int8.scb = q.gpu.int8.scb.Rows(0, 3);
  DeviceTensor gx6 = Upload(gpu(), std::vector<float>(6), DType::kF32, {1, 6});
  std::vector<float> x6(6);
  ExpectSameStatus(cpu().QuantMatmul(TensorView(x6.data(), DType::kF32, {1, 6}), q.cpu, TensorView(),
                                     TensorView(out.data(), DType::kF32, {1, 4}),
                                     TensorView(cpu_ws.data(), DType::kU8, {1 << 16})),
                   gpu().QuantMatmul(gx6.view, q.gpu, TensorView(), gout.view, ws.view), "SCB");
  // Host-memory quantized tensors are refused by the GPU backend.
  QuantTwin h = MakeInt8(gpu(), 4, 6, 6.0f, DType::kF32, 3);
  const absl::Status host = gpu().QuantMatmul(gx6.view, h.cpu, TensorView(), gout.view, ws.view);
  EXPECT_EQ(host.code(), absl::StatusCode::kInvalidArgument) << host;
  EXPECT_NE(host.message().find("w.weight is on cpu"), std::string::npos) << host;
}

}  // namespace
}  // namespace kiln::kernels::gpu_test
