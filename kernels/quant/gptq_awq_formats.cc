// kGptq and kAwq halves of the QuantizedMatrix dispatch: shape/dtype validation and the host
// reference dequantizers (the layouts are documented in quant_matrix.h).
//
// Why the checks look the way they do:
//  - GPTQ packs along the input dim (qweight) and along the output dim (qzeros), so both
//    cols and rows must be multiples of the pack factor 32/bits. 3-bit GPTQ straddles words
//    (10 2/3 values per word) and is refused as UNIMPLEMENTED rather than mis-read.
//  - The zero point is z + zero_offset without wrapping to `bits` bits (vLLM / exllama
//    semantics). AutoGPTQ's torch fallback masks (z + 1) & (2^bits - 1); the two only differ
//    for a stored nibble of all ones, which the classic packer can only produce from a zero
//    point of 0 (and it corrupts neighbouring nibbles when it does), so no valid checkpoint
//    tells them apart.
//  - Dequantized values are scale * (q - z) computed in fp32 (exact: a 16-bit scale times an
//    integer below 2^9 fits fp32's mantissa) and then rounded once to compute_dtype, which is
//    bit-identical to the reference's fp16/bf16 multiply.
#include <cstring>
#include <initializer_list>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/quant/quant_internal.h"

namespace kiln::kernels::quant_internal {
namespace {

// AWQ stores output n of an 8-block at nibble kAwqNibbleOfOutput[n % 8] (the inverse of the
// packing order [0,2,4,6,1,3,5,7], i.e. AWQ_REVERSE_ORDER).
constexpr int kAwqNibbleOfOutput[8] = {0, 4, 1, 5, 2, 6, 3, 7};

std::string Shape2(int64_t a, int64_t b, DType dtype) {
  return absl::StrCat("[", a, ", ", b, "] ", std::string(DTypeName(dtype)));
}

// INVALID_ARGUMENT naming `name.role`, the view's shape and the expected shape unless `v` is a
// rank-2 view of one of `dtypes` with dims [d0, d1].
absl::Status CheckView(const TensorView& v, const std::string& name, const char* role,
                       std::initializer_list<DType> dtypes, int64_t d0, int64_t d1) {
  const DType want = *dtypes.begin();
  if (v.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".", role, " is missing; expected ", Shape2(d0, d1, want)));
  }
  bool dtype_ok = false;
  for (DType d : dtypes) dtype_ok = dtype_ok || v.dtype() == d;
  if (!dtype_ok || v.rank() != 2 || v.dim(0) != d0 || v.dim(1) != d1) {
    std::string expected = Shape2(d0, d1, want);
    if (dtypes.size() > 1) {
      for (auto it = dtypes.begin() + 1; it != dtypes.end(); ++it) {
        absl::StrAppend(&expected, " or ", std::string(DTypeName(*it)));
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".", role, ": shape ", v.ShapeString(), ", expected ", expected));
  }
  return absl::OkStatus();
}

// Element (i, j) of a rank-2 I32 view; views may be unaligned (they can point into a file map).
int32_t I32At(const TensorView& v, int64_t i, int64_t j) {
  int32_t x;
  std::memcpy(&x, static_cast<const uint8_t*>(v.data()) + (i * v.dim(1) + j) * 4, 4);
  return x;
}

float ScaleAt(const TensorView& v, int64_t i, int64_t j) {
  const auto* base = static_cast<const uint8_t*>(v.data());
  const int64_t idx = i * v.dim(1) + j;
  if (v.dtype() == DType::kF16) {
    uint16_t h;
    std::memcpy(&h, base + idx * 2, 2);
    return HalfToFloat(h);
  }
  float f;
  std::memcpy(&f, base + idx * 4, 4);
  return f;
}

float RoundToCompute(DType dtype, float x) {
  switch (dtype) {
    case DType::kF16: return HalfToFloat(FloatToHalf(x));
    case DType::kBF16: return BFloat16ToFloat(FloatToBFloat16(x));
    case DType::kF32:
    case DType::kF64:
    case DType::kI8:
    case DType::kU8:
    case DType::kI16:
    case DType::kI32:
    case DType::kI64:
    case DType::kBool: return x;
  }
  return x;
}

}  // namespace

absl::Status ValidateGptq(const QuantizedMatrix& m, const std::string& name) {
  const GptqMatrix& g = m.gptq;
  if (g.bits == 3) {
    return absl::UnimplementedError(
        absl::StrCat(name, ": GPTQ bits 3 is not supported (3-bit values straddle 32-bit words); supported: 2, 4, 8"));
  }
  if (g.bits != 2 && g.bits != 4 && g.bits != 8) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": GPTQ bits ", g.bits, " is not one of 2, 4, 8"));
  }
  if (g.zero_offset != 0 && g.zero_offset != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": GPTQ zero_offset ", g.zero_offset, " is not 0 (gptq_v2) or 1 (gptq)"));
  }
  const int64_t pack = 32 / g.bits;
  if (m.cols % pack != 0 || m.rows % pack != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": GPTQ ", g.bits, "-bit weight [", m.rows, ", ", m.cols,
                                                   "] needs in_features and out_features divisible by ", pack));
  }
  if (g.groups <= 0 || g.groups > m.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": GPTQ group count ", g.groups, " is outside [1, ", m.cols, "] (in_features)"));
  }
  if (auto s = CheckView(g.qweight, name, "qweight", {DType::kI32}, m.cols / pack, m.rows); !s.ok()) return s;
  if (auto s = CheckView(g.qzeros, name, "qzeros", {DType::kI32}, g.groups, m.rows / pack); !s.ok()) return s;
  if (auto s = CheckView(g.scales, name, "scales", {DType::kF16, DType::kF32}, g.groups, m.rows); !s.ok()) return s;
  if (g.g_idx.empty() || g.g_idx.dtype() != DType::kI32 || g.g_idx.rank() != 1 || g.g_idx.dim(0) != m.cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ".g_idx: shape ", g.g_idx.empty() ? std::string("(missing)") : g.g_idx.ShapeString(), ", expected [",
        m.cols, "] I32"));
  }
  return absl::OkStatus();
}

absl::Status ValidateAwq(const QuantizedMatrix& m, const std::string& name) {
  const AwqMatrix& a = m.awq;
  if (m.rows % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": AWQ weight [", m.rows, ", ", m.cols, "] needs out_features divisible by 8"));
  }
  if (a.group_size <= 0 || m.cols % a.group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": AWQ group_size ", a.group_size,
                                                   " must be positive and divide in_features ", m.cols));
  }
  const int64_t groups = m.cols / a.group_size;
  if (auto s = CheckView(a.qweight, name, "qweight", {DType::kI32}, m.cols, m.rows / 8); !s.ok()) return s;
  if (auto s = CheckView(a.qzeros, name, "qzeros", {DType::kI32}, groups, m.rows / 8); !s.ok()) return s;
  if (auto s = CheckView(a.scales, name, "scales", {DType::kF16, DType::kF32}, groups, m.rows); !s.ok()) return s;
  return absl::OkStatus();
}

void DequantizeGptqRows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst) {
  const GptqMatrix& g = m.gptq;
  const int64_t pack = 32 / g.bits;
  const uint32_t mask = (1u << g.bits) - 1u;
  std::vector<int32_t> g_idx(static_cast<size_t>(m.cols));
  std::memcpy(g_idx.data(), g.g_idx.data(), g_idx.size() * 4);
  for (int64_t n = row_begin; n < row_end; ++n) {
    float* out = dst + (n - row_begin) * m.cols;
    const int zshift = static_cast<int>((n % pack) * g.bits);
    for (int64_t k = 0; k < m.cols; ++k) {
      const int64_t grp = g_idx[static_cast<size_t>(k)];
      const auto qword = static_cast<uint32_t>(I32At(g.qweight, k / pack, n));
      const auto q = static_cast<int32_t>((qword >> ((k % pack) * g.bits)) & mask);
      const auto zword = static_cast<uint32_t>(I32At(g.qzeros, grp, n / pack));
      const auto z = static_cast<int32_t>((zword >> zshift) & mask) + g.zero_offset;
      out[k] = RoundToCompute(m.compute_dtype, ScaleAt(g.scales, grp, n) * static_cast<float>(q - z));
    }
  }
}

void DequantizeAwqRows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst) {
  const AwqMatrix& a = m.awq;
  for (int64_t n = row_begin; n < row_end; ++n) {
    float* out = dst + (n - row_begin) * m.cols;
    const int shift = 4 * kAwqNibbleOfOutput[n % 8];
    for (int64_t k = 0; k < m.cols; ++k) {
      const int64_t grp = k / a.group_size;
      const auto q = static_cast<int32_t>((static_cast<uint32_t>(I32At(a.qweight, k, n / 8)) >> shift) & 0xFu);
      const auto z = static_cast<int32_t>((static_cast<uint32_t>(I32At(a.qzeros, grp, n / 8)) >> shift) & 0xFu);
      out[k] = RoundToCompute(m.compute_dtype, ScaleAt(a.scales, grp, n) * static_cast<float>(q - z));
    }
  }
}

}  // namespace kiln::kernels::quant_internal
