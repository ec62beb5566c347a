// bitsandbytes LLM.int8 weight quantization, bit-identical to bitsandbytes 0.50's Int8Params
// quantizing on load (int8_vectorwise_quant of the weight cast to fp16, threshold 0):
//   w16 = fp16(w);  SCB[r] = max_c |w16[r, c]|  (fp32);
//   CB[r, c] = round_half_even(w16[r, c] * ((1 / SCB[r]) * 127))  in fp32, as int8 (torch
//   evaluates 127.0 / tensor as reciprocal() * 127).
// An all-zero row (SCB 0) gives CB 0 (the reference's 0 * inf = NaN cast to int8 is 0 on x86).
// The forward (outlier decomposition) is CpuBackend::QuantMatmul (kernels/quant/quant_matrix.h).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::engine::quant {

struct Int8Quantized {
  std::vector<int8_t> cb;  // [rows, cols] row-major
  std::vector<float> scb;  // [rows]
};

// INVALID_ARGUMENT unless w.size() == rows * cols with rows, cols > 0.
absl::StatusOr<Int8Quantized> QuantizeInt8(std::span<const float> w, int64_t rows, int64_t cols);

}  // namespace kiln::engine::quant
