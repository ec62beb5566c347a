// kBnb4 and kInt8 halves of the QuantizedMatrix dispatch: shape/dtype validation and the
// host reference dequantizers (bitsandbytes 0.50's dequantize_4bit and
// int8_vectorwise_dequant, with their fp32 operation order).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/quant/quant_internal.h"

namespace kiln::kernels::quant_internal {
namespace {

// bitsandbytes' int8_vectorwise_dequant multiplies by this fp32 constant (1/127 rounded as a
// Python float, then to fp32 by torch) instead of dividing by 127: same constant, same rounding.
constexpr float kInv127 = 7.874015718698502e-3f;

absl::Status ViewError(const std::string& name, const char* tensor, const TensorView& v,
                       const char* want_dtype, const std::string& want_shape) {
  const std::string got = v.empty() ? std::string("missing")
                                    : absl::StrCat(std::string(DTypeName(v.dtype())), " ", v.ShapeString());
  return absl::InvalidArgumentError(
      absl::StrCat(name, ".", tensor, " is ", got, ", expected ", want_dtype, " ", want_shape));
}

bool Is(const TensorView& v, DType dtype, std::initializer_list<int64_t> shape) {
  if (v.empty() || v.dtype() != dtype || v.rank() != static_cast<int>(shape.size())) return false;
  int i = 0;
  for (int64_t d : shape) {
    if (v.dim(i++) != d) return false;
  }
  return true;
}

}  // namespace

absl::Status ValidateBnb4(const QuantizedMatrix& m, const std::string& name) {
  const Bnb4Matrix& q = m.bnb4;
  if (q.blocksize <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": bitsandbytes 4-bit blocksize is ", q.blocksize, ", expected a positive block size"));
  }
  const int64_t n = m.rows * m.cols;
  const int64_t bytes = (n + 1) / 2, blocks = (n + q.blocksize - 1) / q.blocksize;
  if (!Is(q.packed, DType::kU8, {bytes})) {
    return ViewError(name, "packed", q.packed, "U8", absl::StrCat("[", bytes, "] (ceil(", m.rows, "*", m.cols, "/2))"));
  }
  if (!Is(q.absmax, DType::kF32, {blocks})) {
    return ViewError(name, "absmax", q.absmax, "F32",
                     absl::StrCat("[", blocks, "] (ceil(", n, "/blocksize ", q.blocksize, "))"));
  }
  return absl::OkStatus();
}

absl::Status ValidateInt8(const QuantizedMatrix& m, const std::string& name) {
  const Int8Matrix& q = m.int8;
  if (!Is(q.weight, DType::kI8, {m.rows, m.cols})) {
    return ViewError(name, "weight", q.weight, "I8", absl::StrCat("[", m.rows, ", ", m.cols, "]"));
  }
  if (!Is(q.scb, DType::kF32, {m.rows})) {
    return ViewError(name, "SCB", q.scb, "F32", absl::StrCat("[", m.rows, "]"));
  }
  if (!std::isfinite(q.threshold)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": llm_int8_threshold is ", q.threshold, ", expected a finite number"));
  }
  return absl::OkStatus();
}

void DequantizeBnb4Rows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst) {
  const uint8_t* packed = m.bnb4.packed.as<uint8_t>();
  const float* absmax = m.bnb4.absmax.as<float>();
  const int64_t bs = m.bnb4.blocksize;
  const int64_t j0 = row_begin * m.cols, j1 = row_end * m.cols;
  // Block by block through a 16-entry table of code[i] * absmax (the reference's fp32
  // product), rounded to compute_dtype once per block rather than once per element.
  float lut[16];
  for (int64_t j = j0; j < j1;) {
    const int64_t block = j / bs, end = std::min(j1, (block + 1) * bs);
    const float scale = absmax[block];
    for (int i = 0; i < 16; ++i) lut[i] = m.bnb4.code[static_cast<size_t>(i)] * scale;
    RoundTo(m.compute_dtype, lut, 16);
    float* out = dst + (j - j0);
    if (j & 1) {  // an odd start: finish the byte's low nibble
      *out++ = lut[packed[j >> 1] & 0xF];
      ++j;
    }
    for (; j + 1 < end; j += 2) {
      const uint8_t byte = packed[j >> 1];
      *out++ = lut[byte >> 4];
      *out++ = lut[byte & 0xF];
    }
    if (j < end) {  // an odd end: the high nibble only
      *out = lut[packed[j >> 1] >> 4];
      ++j;
    }
  }
}

void DequantizeInt8Rows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst) {
  const int8_t* w = m.int8.weight.as<int8_t>();
  const float* scb = m.int8.scb.as<float>();
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int8_t* row = w + r * m.cols;
    float* out = dst + (r - row_begin) * m.cols;
    for (int64_t c = 0; c < m.cols; ++c) out[c] = static_cast<float>(row[c]) * scb[r] * kInv127;
  }
  RoundTo(m.compute_dtype, dst, (row_end - row_begin) * m.cols);
}

void RoundTo(DType dtype, float* values, int64_t n) {
  switch (dtype) {
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) values[i] = HalfToFloat(FloatToHalf(values[i]));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) values[i] = BFloat16ToFloat(FloatToBFloat16(values[i]));
      return;
    case DType::kF32:
    case DType::kF64:
    case DType::kI8:
    case DType::kU8:
    case DType::kI16:
    case DType::kI32:
    case DType::kI64:
    case DType::kBool:
      return;
  }
}

}  // namespace kiln::kernels::quant_internal
