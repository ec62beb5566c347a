// kGptq and kAwq halves of the QuantizedMatrix dispatch. Placeholder until the GPTQ/AWQ
// dequantizers land: validation refuses the formats so nothing can reach the dequantizers.
#include "absl/strings/str_cat.h"
#include "kernels/quant/quant_internal.h"

namespace kiln::kernels::quant_internal {

absl::Status ValidateGptq(const QuantizedMatrix&, const std::string& name) {
  return absl::UnimplementedError(absl::StrCat(name, ": GPTQ weights are not supported yet"));
}
absl::Status ValidateAwq(const QuantizedMatrix&, const std::string& name) {
  return absl::UnimplementedError(absl::StrCat(name, ": AWQ weights are not supported yet"));
}
void DequantizeGptqRows(const QuantizedMatrix&, int64_t, int64_t, float*) {}
void DequantizeAwqRows(const QuantizedMatrix&, int64_t, int64_t, float*) {}

}  // namespace kiln::kernels::quant_internal
