// The GPTQ/AWQ halves of kernels/quant/quant_matrix (gptq_awq_formats.cc): contract validation.
// Dequantization is checked bit-exactly against the reference in prequant_fixture_test.
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/quant/quant_matrix.h"

namespace kiln::kernels {
namespace {

using ::testing::HasSubstr;

// A valid GPTQ 4-bit [rows 8, cols 16] with 2 groups, over zeroed host buffers.
struct GptqBuffers {
  std::vector<int32_t> qweight = std::vector<int32_t>(2 * 8);
  std::vector<int32_t> qzeros = std::vector<int32_t>(2 * 1);
  std::vector<float> scales = std::vector<float>(2 * 8, 1.0f);
  std::vector<int32_t> g_idx = std::vector<int32_t>(16);
  QuantizedMatrix Matrix() {
    QuantizedMatrix m;
    m.format = QuantFormat::kGptq;
    m.rows = 8;
    m.cols = 16;
    m.gptq.qweight = TensorView(qweight.data(), DType::kI32, {2, 8});
    m.gptq.qzeros = TensorView(qzeros.data(), DType::kI32, {2, 1});
    m.gptq.scales = TensorView(scales.data(), DType::kF32, {2, 8});
    m.gptq.g_idx = TensorView(g_idx.data(), DType::kI32, {16});
    m.gptq.groups = 2;
    return m;
  }
};

void ExpectInvalid(const QuantizedMatrix& m, absl::StatusCode code, const std::string& substring) {
  absl::Status s = ValidateQuantizedMatrix(m, "w");
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(substring));
}

TEST(GptqAwqFormatsTest, GptqContract) {
  GptqBuffers b;
  EXPECT_TRUE(ValidateQuantizedMatrix(b.Matrix(), "w").ok());
  QuantizedMatrix m = b.Matrix();
  m.gptq.bits = 3;
  ExpectInvalid(m, absl::StatusCode::kUnimplemented, "bits 3");
  m.gptq.bits = 5;
  ExpectInvalid(m, absl::StatusCode::kInvalidArgument, "bits 5");
  m = b.Matrix();
  m.gptq.zero_offset = 2;
  ExpectInvalid(m, absl::StatusCode::kInvalidArgument, "zero_offset 2");
  m = b.Matrix();
  m.gptq.qweight = TensorView(b.qweight.data(), DType::kI32, {1, 16});
  ExpectInvalid(m, absl::StatusCode::kInvalidArgument, "w.qweight: shape [1, 16] I32, expected [2, 8] I32");
  m = b.Matrix();
  m.gptq.scales = TensorView(b.scales.data(), DType::kBF16, {2, 8});
  ExpectInvalid(m, absl::StatusCode::kInvalidArgument, "w.scales");
  m = b.Matrix();
  m.gptq.g_idx = TensorView();
  ExpectInvalid(m, absl::StatusCode::kInvalidArgument, "w.g_idx");
  m = b.Matrix();
  m.gptq.groups = 3;
  ExpectInvalid(m, absl::StatusCode::kInvalidArgument, "w.qzeros");
  m = b.Matrix();
  m.rows = 4;  // qzeros pack 8 outputs per word
  ExpectInvalid(m, absl::StatusCode::kInvalidArgument, "divisible by 8");
  // 8-bit: 4 values per word.
  m = b.Matrix();
  m.gptq.bits = 8;
  m.gptq.qweight = TensorView(b.qweight.data(), DType::kI32, {4, 8});
  ExpectInvalid(m, absl::StatusCode::kInvalidArgument, "w.qzeros: shape [2, 1] I32, expected [2, 2] I32");
}

TEST(GptqAwqFormatsTest, AwqContract) {
  std::vector<int32_t> qweight(16), qzeros(2);
  std::vector<uint16_t> scales(16, FloatToHalf(1.0f));
  QuantizedMatrix m;
  m.format = QuantFormat::kAwq;
  m.rows = 8;
  m.cols = 16;
  m.awq.qweight = TensorView(qweight.data(), DType::kI32, {16, 1});
  m.awq.qzeros = TensorView(qzeros.data(), DType::kI32, {2, 1});
  m.awq.scales = TensorView(scales.data(), DType::kF16, {2, 8});
  m.awq.group_size = 8;
  EXPECT_TRUE(ValidateQuantizedMatrix(m, "w").ok());
  QuantizedMatrix bad = m;
  bad.awq.group_size = 0;
  ExpectInvalid(bad, absl::StatusCode::kInvalidArgument, "group_size 0");
  bad = m;
  bad.awq.group_size = 16;  // then qzeros/scales need 1 group
  ExpectInvalid(bad, absl::StatusCode::kInvalidArgument, "w.qzeros");
  bad = m;
  bad.awq.qweight = TensorView(qweight.data(), DType::kI32, {8, 2});
  ExpectInvalid(bad, absl::StatusCode::kInvalidArgument, "w.qweight");
  bad = m;
  bad.rows = 12;
  ExpectInvalid(bad, absl::StatusCode::kInvalidArgument, "divisible by 8");
}

}  // namespace
}  // namespace kiln::kernels
