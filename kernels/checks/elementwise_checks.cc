#include "kernels/checks/elementwise_checks.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace kiln::kernels::checks {
namespace {

absl::Status CheckF32(const char* op, const char* arg, const TensorView& v, int rank,
                      DeviceKind kind) {
  return CheckView(op, arg, v, rank, kind, /*f32_only=*/true);
}
absl::Status CheckFloat(const char* op, const char* arg, const TensorView& v, int rank,
                        DeviceKind kind) {
  return CheckView(op, arg, v, rank, kind, /*f32_only=*/false);
}

// Same wording as CheckView's device check, for views of any rank and dtype.
absl::Status CheckKind(const char* op, const char* arg, const TensorView& v, DeviceKind kind) {
  if (v.device().kind == kind) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", arg, " is on ", DeviceName(v.device()),
                                                 ", expected ",
                                                 DeviceName(Device{kind, v.device().index})));
}

}  // namespace

absl::Status CheckHostCopy(const char* op, const char* arg, const TensorView& view,
                           DeviceKind kind) {
  if (view.device().kind != kind) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", arg, " not on ", kind == DeviceKind::kCpu ? "cpu" : "cuda"));
  }
  if (view.numel() > 0 && view.data() == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", arg, " has no data"));
  }
  return absl::OkStatus();
}

absl::Status CheckConvert(const TensorView& src, const TensorView& dst, DeviceKind kind) {
  if (src.numel() != dst.numel()) return ShapeError("Convert", "dst", dst, src.ShapeString());
  if (auto s = CheckKind("Convert", "src", src, kind); !s.ok()) return s;
  if (auto s = CheckKind("Convert", "dst", dst, kind); !s.ok()) return s;
  if (src.numel() > 0 && (src.data() == nullptr || dst.data() == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Convert: ", src.data() == nullptr ? "src" : "dst", " has no data"));
  }
  if (src.dtype() != dst.dtype() && (!IsFloat3(src.dtype()) || !IsFloat3(dst.dtype()))) {
    return absl::UnimplementedError(absl::StrCat("Convert: ", std::string(DTypeName(src.dtype())),
                                                 " to ", std::string(DTypeName(dst.dtype())),
                                                 " is not supported"));
  }
  return absl::OkStatus();
}

absl::Status CheckEmbedding(const TensorView& table, std::span<const int32_t> ids,
                            const TensorView& out, DeviceKind kind) {
  if (auto s = CheckFloat("Embedding", "table", table, 2, kind); !s.ok()) return s;
  if (auto s = CheckF32("Embedding", "out", out, 2, kind); !s.ok()) return s;
  const int64_t rows = table.dim(0), dim = table.dim(1);
  if (out.dim(0) != static_cast<int64_t>(ids.size()) || out.dim(1) != dim) {
    return ShapeError("Embedding", "out", out, absl::StrCat("[", ids.size(), ", ", dim, "]"));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= rows) {
      return absl::InvalidArgumentError(absl::StrCat("Embedding: token id ", ids[i], " at index ",
                                                     i, " is outside [0, ", rows, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckNorm(const char* op, const TensorView& x, const TensorView& weight,
                       const TensorView& out, DeviceKind kind) {
  if (auto s = CheckF32(op, "x", x, 2, kind); !s.ok()) return s;
  if (auto s = CheckF32(op, "out", out, 2, kind); !s.ok()) return s;
  if (auto s = CheckFloat(op, "weight", weight, 1, kind); !s.ok()) return s;
  if (!SameShape(x, out)) return ShapeError(op, "out", out, x.ShapeString());
  if (weight.dim(0) != x.dim(1)) {
    return ShapeError(op, "weight", weight, absl::StrCat("[", x.dim(1), "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckAddRmsNorm(const TensorView& residual, const TensorView& x,
                             const TensorView& weight, const TensorView& out, DeviceKind kind) {
  if (auto s = CheckNorm("AddRmsNorm", x, weight, out, kind); !s.ok()) return s;
  if (auto s = CheckF32("AddRmsNorm", "residual", residual, 2, kind); !s.ok()) return s;
  if (!SameShape(residual, x)) {
    return ShapeError("AddRmsNorm", "residual", residual, x.ShapeString());
  }
  return absl::OkStatus();
}

absl::Status CheckLayerNorm(const TensorView& x, const TensorView& weight, const TensorView& bias,
                            const TensorView& out, DeviceKind kind) {
  if (auto s = CheckNorm("LayerNorm", x, weight, out, kind); !s.ok()) return s;
  if (!bias.empty()) {
    if (auto s = CheckFloat("LayerNorm", "bias", bias, 1, kind); !s.ok()) return s;
    if (bias.dim(0) != x.dim(1)) {
      return ShapeError("LayerNorm", "bias", bias, absl::StrCat("[", x.dim(1), "]"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRope(const TensorView& x, std::span<const int32_t> positions,
                       std::span<const float> inv_freq, DeviceKind kind) {
  if (auto s = CheckF32("Rope", "x", x, 3, kind); !s.ok()) return s;
  const int64_t t = x.dim(0), hd = x.dim(2);
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  if (static_cast<int64_t>(positions.size()) != t) {
    return absl::InvalidArgumentError(
        absl::StrCat("Rope: ", positions.size(), " positions for ", t, " tokens"));
  }
  if (half == 0 || 2 * half > hd) {
    return absl::InvalidArgumentError(
        absl::StrCat("Rope: inv_freq has ", half, " entries; head_dim is ", hd));
  }
  return absl::OkStatus();
}

absl::Status CheckElementwise2(const char* op, const TensorView& a, const TensorView& b,
                               const TensorView& out, DeviceKind kind) {
  if (auto s = CheckF32(op, "a", a, a.rank(), kind); !s.ok()) return s;
  if (auto s = CheckF32(op, "b", b, a.rank(), kind); !s.ok()) return s;
  if (auto s = CheckF32(op, "out", out, a.rank(), kind); !s.ok()) return s;
  if (!SameShape(a, b)) return ShapeError(op, "b", b, a.ShapeString());
  if (!SameShape(a, out)) return ShapeError(op, "out", out, a.ShapeString());
  return absl::OkStatus();
}

absl::Status CheckGatherRows(const TensorView& src, std::span<const int32_t> rows,
                             const TensorView& out, DeviceKind kind) {
  if (auto s = CheckF32("GatherRows", "src", src, 2, kind); !s.ok()) return s;
  if (auto s = CheckF32("GatherRows", "out", out, 2, kind); !s.ok()) return s;
  const int64_t d = src.dim(1);
  if (out.dim(0) != static_cast<int64_t>(rows.size()) || out.dim(1) != d) {
    return ShapeError("GatherRows", "out", out, absl::StrCat("[", rows.size(), ", ", d, "]"));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= src.dim(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("GatherRows: row ", rows[i], " outside [0, ", src.dim(0), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOnDevice(const char* op, const char* arg, const TensorView& view,
                           const Device& device) {
  if (view.empty() || view.device() == device) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": ", arg, " is on ", DeviceName(view.device()),
                                                 ", expected ", DeviceName(device)));
}

}  // namespace kiln::kernels::checks
