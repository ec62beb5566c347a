// kBnb4 and kInt8 halves of the QuantizedMatrix dispatch. Placeholder until the bnb forward
// lands: validation refuses the formats so nothing can reach the dequantizers.
#include "absl/strings/str_cat.h"
#include "kernels/quant/quant_internal.h"

namespace kiln::kernels::quant_internal {

absl::Status ValidateBnb4(const QuantizedMatrix&, const std::string& name) {
  return absl::UnimplementedError(absl::StrCat(name, ": bitsandbytes 4-bit weights are not supported yet"));
}
absl::Status ValidateInt8(const QuantizedMatrix&, const std::string& name) {
  return absl::UnimplementedError(absl::StrCat(name, ": bitsandbytes int8 weights are not supported yet"));
}
void DequantizeBnb4Rows(const QuantizedMatrix&, int64_t, int64_t, float*) {}
void DequantizeInt8Rows(const QuantizedMatrix&, int64_t, int64_t, float*) {}
void RoundTo(DType, float*, int64_t) {}

}  // namespace kiln::kernels::quant_internal
