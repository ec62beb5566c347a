// Reads one pre-quantized Linear module of a checkpoint into host tensors plus the
// kernels::QuantizedMatrix that describes them, validating every tensor first.
//
// Formats (anchors-features.md §4.4–4.6; layouts in kernels/quant/quant_matrix.h), module P:
//  - bitsandbytes 4-bit: P.weight (packed, any quant_storage dtype: the bytes are the bytes),
//    P.weight.absmax (F32, or U8 codes with P.weight.nested_absmax / nested_quant_map when
//    double-quantized), P.weight.quant_map (must equal the NF4/FP4 table: bitsandbytes
//    dequantizes with its own table), P.weight.quant_state.bitsandbytes__nf4|fp4 (U8 holding
//    JSON: quant_type, blocksize, dtype, shape, and nested_blocksize / nested_dtype /
//    nested_offset when nested). Double-quantized absmax is expanded to fp32 on the host exactly
//    as bitsandbytes' dequantize_4bit does: code[c] * nested_absmax[i / nested_blocksize], then
//    + nested_offset (two fp32 roundings).
//  - bitsandbytes 8-bit: P.weight I8 [out, in], P.SCB F32 [out], P.weight_format (0 = row;
//    others UNIMPLEMENTED).
//  - GPTQ: P.qweight, P.qzeros, P.scales, P.g_idx (optional unless desc_act; default
//    k / group_size). Group count = ceil(in / group_size), or 1 for group_size -1.
//  - AWQ GEMM: P.qweight, P.qzeros, P.scales (group_size must divide in).
//  - P.bias, when present, is returned as stored (any float dtype, [out]).
// BF16 GPTQ/AWQ scales are widened to F32 (exact). Scales and absmax must be finite.
//
// Order of checks (reliability.md A15–A16): every tensor's presence, dtype and shape (from
// the safetensors header, before any byte is read), then the quant_state JSON, then values
// (g_idx range, finite scales, the code table). Nothing out of range reaches a dequantizer.
//
// Status codes: INVALID_ARGUMENT naming the tensor, its shape/value and what was expected
// (missing tensor, wrong dtype/shape/group count, g_idx out of range, malformed quant_state,
// blocksize 0 or not a power of two, shape != [out, in], quant_type not matching the tensor
// name, non-finite scales); UNIMPLEMENTED for a weight_format other than row or a packing
// this reader does not know. Messages name tensors, never files or paths.
// Thread-safety: pure functions over an immutable Checkpoint.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/checkpoint.h"
#include "engine/quant/prequant/prequant_config.h"
#include "kernels/dtype.h"
#include "kernels/quant/quant_matrix.h"
#include "kernels/tensor.h"

namespace kiln::engine::quant {

// Which QuantizedMatrix view a host tensor backs.
enum class QuantRole : uint8_t {
  kBnb4Packed,   // bnb4.packed  U8 [ceil(out*in/2)]
  kBnb4Absmax,   // bnb4.absmax  F32 [ceil(out*in/blocksize)]
  kInt8Weight,   // int8.weight  I8 [out, in]
  kInt8Scb,      // int8.scb     F32 [out]
  kGptqQweight,  // gptq.qweight I32 [in*bits/32, out]
  kGptqQzeros,   // gptq.qzeros  I32 [groups, out*bits/32]
  kGptqScales,   // gptq.scales  F16/F32 [groups, out]
  kGptqGIdx,     // gptq.g_idx   I32 [in]
  kAwqQweight,   // awq.qweight  I32 [in, out/8]
  kAwqQzeros,    // awq.qzeros   I32 [in/group_size, out/8]
  kAwqScales,    // awq.scales   F16/F32 [in/group_size, out]
};
std::string QuantRoleName(QuantRole role);  // "bnb4.packed", "gptq.qweight", ...

// Owned host bytes of one tensor, row-major.
struct HostTensor {
  QuantRole role = QuantRole::kBnb4Packed;
  kernels::DType dtype = kernels::DType::kU8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  // A CPU view of `bytes` (valid while this HostTensor lives and is not resized).
  kernels::TensorView View() const;
};

struct PrequantLinear {
  PrequantLinear() = default;
  PrequantLinear(PrequantLinear&&) = default;
  PrequantLinear& operator=(PrequantLinear&&) = default;
  // Copying would leave `matrix` pointing at the source's bytes.
  PrequantLinear(const PrequantLinear&) = delete;
  PrequantLinear& operator=(const PrequantLinear&) = delete;

  // Views point into `tensors` (host memory): usable as is on the CPU backend.
  kernels::QuantizedMatrix matrix;
  // The format's tensors, one per view of `matrix`.
  std::vector<HostTensor> tensors;
  // The module's bias as stored ([out], a float dtype); nullopt when the checkpoint has none.
  struct Bias {
    kernels::DType dtype = kernels::DType::kF32;
    std::vector<uint8_t> bytes;
  };
  std::optional<Bias> bias;
  // bitsandbytes 4-bit: the dtype the reference casts the dequantized weight to before its
  // matmul (quant_state "dtype"); F32 otherwise.
  kernels::DType dequant_dtype = kernels::DType::kF32;
  // Every checkpoint tensor name this module consumed (for "all tensors used" checks).
  std::vector<std::string> consumed;

  // For device upload: a copy of `matrix` whose views are `views[i]` in place of tensors[i]
  // (same order). INVALID_ARGUMENT when the count, a dtype or a shape differs.
  absl::StatusOr<kernels::QuantizedMatrix> Rebind(std::span<const kernels::TensorView> views) const;
};

struct PrequantReadOptions {
  // The dtype GPTQ/AWQ/int8 dequantize and multiply in (the model's dtype, as transformers
  // computes with the scales cast to it). bnb 4-bit uses bnb_4bit_compute_dtype instead.
  kernels::DType compute_dtype = kernels::DType::kF32;
};

// `module`: e.g. "model.layers.0.self_attn.q_proj"; out/in: the Linear's features.
absl::StatusOr<PrequantLinear> ReadPrequantizedLinear(const Checkpoint& checkpoint, const PrequantConfig& config,
                                                      const std::string& module, int64_t out, int64_t in,
                                                      const PrequantReadOptions& options = {});

// The checkpoint tensor names that belong to `module` under `config` (present ones only,
// bias included), whether or not they are valid.
std::vector<std::string> PrequantTensorNames(const Checkpoint& checkpoint, const PrequantConfig& config,
                                             const std::string& module);

}  // namespace kiln::engine::quant
