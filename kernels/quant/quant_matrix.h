// QuantizedMatrix: the weight formats kiln multiplies without first expanding them to a dense
// copy: bitsandbytes 4-bit (NF4/FP4, optional double-quantized absmax already expanded to fp32
// on load), bitsandbytes LLM.int8 (row-wise int8 + SCB, outlier decomposition), GPTQ
// (qweight/qzeros/scales/g_idx, classic "v1" zero offset) and AWQ GEMM. Every format describes
// the same logical weight W [rows = out_features, cols = in_features] that a dense Linear
// holds, so the engine's Linear abstraction (and LoRA on top of it) treats them alike.
//
// Layout contracts (bit-exact with the reference formats, ../shared/reference/anchors-features.md
// §4.4–4.6). All views are contiguous and live on the backend's device:
//  - kBnb4:  packed U8 [ceil(rows*cols/2)] — element j of the flattened row-major W is nibble j,
//            element 2i in the high nibble of byte i; absmax F32 [ceil(rows*cols/blocksize)];
//            W[j] = code[nibble j] * absmax[j / blocksize].
//  - kInt8:  weight I8 [rows, cols]; scb F32 [rows]; W[r, c] = weight[r, c] * scb[r] / 127.
//            The forward follows LLM.int8 (bitsandbytes MatMul8bitLt): input columns holding any
//            |x| >= threshold (threshold > 0) are multiplied in higher precision against the
//            dequantized weight columns; the rest go through the int8 x int8 path with
//            row-wise absmax quantization of x.
//  - kGptq:  qweight I32 [cols*bits/32, rows] (packed along the input dim: value of input k
//            at bits (k % (32/bits))*bits of word k/(32/bits)); qzeros I32 [groups,
//            rows*bits/32] (packed along the output dim); scales F16/F32 [groups, rows]; g_idx
//            I32 [cols] with every entry in [0, groups); W[n, k] = scales[g, n] *
//            (q[k, n] - (z[g, n] + zero_offset)), g = g_idx[k]. zero_offset is 1 for the classic
//            GPTQ format (zeros stored minus one), 0 for gptq_v2.
//  - kAwq:   qweight I32 [cols, rows/8], qzeros I32 [groups, rows/8], scales F16/F32 [groups,
//            rows]; the 8 nibbles of a word hold outputs in AWQ order [0,2,4,6,1,3,5,7]
//            (unpack with shifts 0,4,..,28, then reverse-order [0,4,1,5,2,6,3,7]);
//            W[n, k] = scales[k / group_size, n] * (q[k, n] - z[k / group_size, n]).
// compute_dtype: the dtype the reference multiplies in (bnb_4bit_compute_dtype; fp16 for the
// GPTQ/AWQ reference kernels); kernels round the dequantized weight, the input and the output
// to it, accumulating in fp32, so bf16/fp16 compute matches the reference's rounding.
//
// Validation: ValidateQuantizedMatrix checks dtypes and shapes (never data); g_idx ranges are
// checked on the host at load (ValidateGptqIndex) before upload: nothing a kernel reads can be
// out of range.
// Thread-safety: plain data; the views are non-owning.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/tensor.h"

namespace kiln::kernels {

enum class QuantFormat : uint8_t { kBnb4, kInt8, kGptq, kAwq };
std::string QuantFormatName(QuantFormat format);  // "bnb4", "int8", "gptq", "awq"

struct Bnb4Matrix {
  TensorView packed;             // U8 [ceil(rows*cols/2)]
  TensorView absmax;             // F32 [ceil(rows*cols/blocksize)]
  std::array<float, 16> code{};  // quant_map (NF4 or FP4 table in nibble order)
  int64_t blocksize = 64;
};

struct Int8Matrix {
  TensorView weight;       // I8 [rows, cols]
  TensorView scb;          // F32 [rows]
  float threshold = 6.0f;  // <= 0: no outlier decomposition
};

struct GptqMatrix {
  TensorView qweight;  // I32 [cols*bits/32, rows]
  TensorView qzeros;   // I32 [groups, rows*bits/32]
  TensorView scales;   // F16/F32 [groups, rows]
  TensorView g_idx;    // I32 [cols]
  int bits = 4;        // 2, 4 or 8 (32 % bits == 0)
  int zero_offset = 1;
  int64_t groups = 0;
};

struct AwqMatrix {
  TensorView qweight;  // I32 [cols, rows/8]
  TensorView qzeros;   // I32 [groups, rows/8]
  TensorView scales;   // F16/F32 [groups, rows]
  int64_t group_size = 128;
};

struct QuantizedMatrix {
  QuantFormat format = QuantFormat::kBnb4;
  int64_t rows = 0;  // out_features
  int64_t cols = 0;  // in_features
  DType compute_dtype = DType::kF32;  // F32, F16 or BF16
  Bnb4Matrix bnb4;
  Int8Matrix int8;
  GptqMatrix gptq;
  AwqMatrix awq;

  // Device bytes of the format's tensors (what the ledger and ModelInfo report).
  size_t bytes() const;
};

// INVALID_ARGUMENT naming `name`, the tensor and the shapes when a view of m's format does
// not have the dtype and shape its layout contract requires.
absl::Status ValidateQuantizedMatrix(const QuantizedMatrix& m, const std::string& name);

// Host-side reference dequantization of rows [row_begin, row_end) of W into dst
// ([row_end - row_begin, cols] fp32, row-major), rounded to compute_dtype as the reference's
// dequantize does. The views must be host-readable (CPU backend). Shapes must be valid
// (ValidateQuantizedMatrix) and, for GPTQ, g_idx in range (ValidateGptqIndex).
void DequantizeRows(const QuantizedMatrix& m, int64_t row_begin, int64_t row_end, float* dst);

// INVALID_ARGUMENT naming `name` and the first offending index unless every g_idx entry is in
// [0, groups).
absl::Status ValidateGptqIndex(std::span<const int32_t> g_idx, int64_t groups,
                               const std::string& name);

}  // namespace kiln::kernels
