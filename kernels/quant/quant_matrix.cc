#include "kernels/quant/quant_matrix.h"

#include "absl/strings/str_cat.h"
#include "kernels/quant/quant_internal.h"

namespace kiln::kernels {

std::string QuantFormatName(QuantFormat format) {
  switch (format) {
    case QuantFormat::kBnb4: return "bnb4";
    case QuantFormat::kInt8: return "int8";
    case QuantFormat::kGptq: return "gptq";
    case QuantFormat::kAwq: return "awq";
  }
  return "unknown";
}

size_t QuantizedMatrix::bytes() const {
  switch (format) {
    case QuantFormat::kBnb4: return bnb4.packed.bytes() + bnb4.absmax.bytes();
    case QuantFormat::kInt8: return int8.weight.bytes() + int8.scb.bytes();
    case QuantFormat::kGptq:
      return gptq.qweight.bytes() + gptq.qzeros.bytes() + gptq.scales.bytes() + gptq.g_idx.bytes();
    case QuantFormat::kAwq: return awq.qweight.bytes() + awq.qzeros.bytes() + awq.scales.bytes();
  }
  return 0;
}

absl::Status ValidateQuantizedMatrix(const QuantizedMatrix& m, const std::string& name) {
  if (m.rows <= 0 || m.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": quantized weight has shape [", m.rows, ", ", m.cols, "], expected positive dims"));
  }
  if (m.compute_dtype != DType::kF32 && m.compute_dtype != DType::kF16 && m.compute_dtype != DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": compute dtype ", std::string(DTypeName(m.compute_dtype)),
                                                   " is not one of float32, float16, bfloat16"));
  }
  switch (m.format) {
    case QuantFormat::kBnb4: return quant_internal::ValidateBnb4(m, name);
    case QuantFormat::kInt8: return quant_internal::ValidateInt8(m, name);
    case QuantFormat::kGptq: return quant_internal::ValidateGptq(m, name);
    case QuantFormat::kAwq: return quant_internal::ValidateAwq(m, name);
  }
  return absl::InvalidArgumentError(absl::StrCat(name, ": unknown quantization format"));
}

void DequantizeRows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst) {
  switch (m.format) {
    case QuantFormat::kBnb4: return quant_internal::DequantizeBnb4Rows(m, row_begin, row_end, dst);
    case QuantFormat::kInt8: return quant_internal::DequantizeInt8Rows(m, row_begin, row_end, dst);
    case QuantFormat::kGptq: return quant_internal::DequantizeGptqRows(m, row_begin, row_end, dst);
    case QuantFormat::kAwq: return quant_internal::DequantizeAwqRows(m, row_begin, row_end, dst);
  }
}

absl::Status ValidateGptqIndex(std::span<const int32_t> g_idx, int64_t groups, const std::string& name) {
  for (size_t k = 0; k < g_idx.size(); ++k) {
    if (g_idx[k] < 0 || g_idx[k] >= groups) {
      return absl::InvalidArgumentError(absl::StrCat(name, ".g_idx[", k, "] = ", g_idx[k],
                                                     " is outside [0, ", groups, ") (the number of groups)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kiln::kernels
