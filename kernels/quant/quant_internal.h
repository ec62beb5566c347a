// Internal to kernels/quant: the per-format halves of quant_matrix.cc's dispatch.
// bnb_formats.cc holds kBnb4 and kInt8, gptq_awq_formats.cc holds kGptq and kAwq.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "kernels/quant/quant_matrix.h"

namespace kiln::kernels::quant_internal {

absl::Status ValidateBnb4(const QuantizedMatrix& m, const std::string& name);
absl::Status ValidateInt8(const QuantizedMatrix& m, const std::string& name);
absl::Status ValidateGptq(const QuantizedMatrix& m, const std::string& name);
absl::Status ValidateAwq(const QuantizedMatrix& m, const std::string& name);

void DequantizeBnb4Rows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst);
void DequantizeInt8Rows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst);
void DequantizeGptqRows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst);
void DequantizeAwqRows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst);

// Rounds n values in place to `dtype` (F32: unchanged; F16/BF16: round-to-nearest-even).
void RoundTo(DType dtype, float* values, int64_t n);

}  // namespace kiln::kernels::quant_internal
