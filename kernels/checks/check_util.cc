#include "kernels/checks/check_util.h"

#include "absl/strings/str_cat.h"

namespace kiln::kernels::checks {

absl::Status ShapeError(const char* op, const char* arg, const TensorView& v,
                        const std::string& want) {
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": ", arg, " is ", v.ShapeString(), ", expected ", want));
}

absl::Status CheckView(const char* op, const char* arg, const TensorView& v, int rank,
                       DeviceKind kind, bool f32_only) {
  if (v.rank() != rank) return ShapeError(op, arg, v, absl::StrCat("rank ", rank));
  if (v.device().kind != kind) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", arg, " is on ", DeviceName(v.device()),
                                                   ", expected ",
                                                   DeviceName(Device{kind, v.device().index})));
  }
  if (f32_only ? v.dtype() != DType::kF32 : !IsFloat3(v.dtype())) {
    return ShapeError(op, arg, v, f32_only ? "F32" : "F32, F16 or BF16");
  }
  if (v.numel() > 0 && v.data() == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", arg, " has no data"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::kernels::checks
