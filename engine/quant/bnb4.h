// bitsandbytes 4-bit blockwise quantization (NF4 / FP4) and the 8-bit "dynamic" blockwise
// quantization used for double quantization of the absmax constants, bit-identical to
// bitsandbytes 0.50 (CPU backend: quantize_4bit from backends/default/ops.py, quantize_blockwise
// from the native cquantize_blockwise_cpu_fp32).
//
// 4-bit, for n weights w (row-major [out, in], flattened), blocksize B:
//  - absmax[b] = max |w| over block b (the last block may be partial);
//  - full blocks are scaled as w * (1 / max(absmax, 1e-38)), the partial block as
//    w / max(absmax, 1e-38) (two different fp32 roundings, as the reference does), clamped
//    to [-1, 1];
//  - the index is the bucket among the midpoints of the sorted code table (a value exactly on
//    a midpoint goes to the lower code); FP4's table is unsorted, so the bucket is mapped back
//    through the stable sort order (its two zeros: exact 0 -> index 0, tiny positive -> 8);
//  - packing: element 2i in the high nibble of byte i, 2i+1 in the low nibble; an odd count
//    pads with the code of 0.
// Double quantization: offset = mean(absmax) (fp32, torch's summation order), then
// (absmax - offset) is quantized with blocksize 256 against the signed dynamic map the way the
// native quantizer does it: per block a = max|x| (NaN skipped; a == 0 gives all codes 0),
// x * (1 / a) clamped to [-1, 1], rounded onto a grid of 65536 points over [-1, 1]
// (trunc(fma((x + 1) * 0.5, 65535, 0.5))), and the code read from a per-grid-point table
// (number of map midpoints strictly below the point). So a value within half a grid step of a
// midpoint may take the farther code, exactly as bitsandbytes 0.50 does (older releases
// searched the map with BinSearch and kept the nearest code; checkpoints carry their codes, so
// loading them is unaffected). The forward's fp32 absmax is code[c] * nested_absmax[i / 256]
// + offset.
// FP4 nibble 8 (sign set, zero magnitude) dequantizes to +0 here; bitsandbytes' CPU
// dequantizer gives -0.0 on its scalar path and +0 on its AVX-512 path, so only the sign of
// that zero is implementation-defined (it never changes a product sum).
// Thread-safety: pure functions (DoubleQuantize builds a 64 KiB table once, on first use,
// through a thread-safe static).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/quant/bnb_config.h"

namespace kiln::engine::quant {

inline constexpr int64_t kNestedBlocksize = 256;

// The 16-entry code table of `type` (bitsandbytes get_4bit_type; FP4 in bit-pattern order).
std::span<const float> Code4bit(Bnb4Type type);
// bitsandbytes create_dynamic_map(signed=True): 256 sorted fp32 values.
std::span<const float> DynamicMap();

struct Packed4bit {
  std::vector<uint8_t> packed;  // [ceil(n / 2)]
  std::vector<float> absmax;    // [ceil(n / blocksize)]
};
// INVALID_ARGUMENT for blocksize not in {32, ..., 4096} powers of two (bitsandbytes' set).
absl::StatusOr<Packed4bit> Quantize4bit(std::span<const float> w, Bnb4Type type, int64_t blocksize);

struct DoubleQuantized {
  std::vector<uint8_t> codes;        // [absmax.size()]
  std::vector<float> nested_absmax;  // [ceil(absmax.size() / 256)]
  float offset = 0.0f;
};
DoubleQuantized DoubleQuantize(std::span<const float> absmax);
// The fp32 absmax the reference forward reconstructs from a double-quantized state.
std::vector<float> DequantizeAbsmax(const DoubleQuantized& dq);

// w[j] = code[nibble j] * absmax[j / blocksize], for j < n. Sizes must match (checked).
absl::StatusOr<std::vector<float>> Dequantize4bit(std::span<const uint8_t> packed, std::span<const float> absmax,
                                                  Bnb4Type type, int64_t blocksize, int64_t n);

}  // namespace kiln::engine::quant
