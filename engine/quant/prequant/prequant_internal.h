// Internal to engine/quant/prequant: tensor lookup/validation helpers shared by the per-format
// readers (prequant_reader.cc: GPTQ, AWQ, int8; prequant_bnb4.cc: bitsandbytes 4-bit).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/checkpoint.h"
#include "engine/quant/prequant/prequant_reader.h"

namespace kiln::engine::quant::prequant_internal {

// "[3, 4] I32".
std::string ShapeString(const std::vector<int64_t>& shape, kernels::DType dtype);

// The header entry of `name`, checked for dtype (one of `dtypes`) and shape before any byte is
// read: INVALID_ARGUMENT "<name>: shape <s>, expected <e>" (or "checkpoint is missing tensor").
absl::StatusOr<TensorRef> RequireTensor(const Checkpoint& ckpt, const std::string& name,
                                        std::initializer_list<kernels::DType> dtypes,
                                        const std::vector<int64_t>& shape, const std::string& why = "");

// Reads the bytes of a tensor (pread) into a HostTensor with `role`.
absl::StatusOr<HostTensor> ReadHost(const TensorRef& ref, QuantRole role);

// INVALID_ARGUMENT naming `name` and the first index unless every value is finite.
absl::Status CheckFinite(const std::vector<float>& values, const std::string& name);

// Reads bnb 4-bit module `module` (P.weight.*) into `out`.
absl::Status ReadBnb4(const Checkpoint& ckpt, const PrequantConfig& config, const std::string& module, int64_t rows,
                      int64_t cols, PrequantLinear& out);

}  // namespace kiln::engine::quant::prequant_internal
