#include "engine/quant/bnb_int8.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/dtype.h"

namespace kiln::engine::quant {

absl::StatusOr<Int8Quantized> QuantizeInt8(std::span<const float> w, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0 || static_cast<int64_t>(w.size()) != rows * cols) {
    return absl::InvalidArgumentError(absl::StrCat("int8 quantization: ", w.size(), " weights for shape [", rows,
                                                   ", ", cols, "]"));
  }
  Int8Quantized q;
  q.cb.resize(w.size());
  q.scb.resize(static_cast<size_t>(rows));
  std::vector<float> row16(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      // The reference quantizes B.to(float16): every value is first rounded to fp16.
      row16[static_cast<size_t>(c)] = kernels::HalfToFloat(kernels::FloatToHalf(w[static_cast<size_t>(r * cols + c)]));
      amax = std::max(amax, std::fabs(row16[static_cast<size_t>(c)]));
    }
    q.scb[static_cast<size_t>(r)] = amax;
    // torch evaluates `127.0 / row_stats` as row_stats.reciprocal() * 127 (Tensor.__rtruediv__),
    // two fp32 roundings, not one division.
    const float scale = (1.0f / amax) * 127.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = row16[static_cast<size_t>(c)] * scale;
      // torch.round is half-to-even (nearbyint under the default rounding mode).
      q.cb[static_cast<size_t>(r * cols + c)] =
          std::isnan(v) ? int8_t{0} : static_cast<int8_t>(std::clamp(std::nearbyint(v), -128.0f, 127.0f));
    }
  }
  return q;
}

}  // namespace kiln::engine::quant
