#include "kernels/checks/gemm_checks.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace kiln::kernels::checks {
namespace {

constexpr int64_t kMaxLoraDim = INT_MAX;  // the CPU reference hands these to cblas as int

absl::Status CheckLoraPair(const LoraPair& p, size_t i, int64_t in, int64_t out_dim, DeviceKind kind) {
  const std::string a_name = absl::StrCat("pairs[", i, "].a");
  const std::string b_name = absl::StrCat("pairs[", i, "].b");
  if (auto s = CheckView("LoraApply", a_name.c_str(), p.a, 2, kind, true); !s.ok()) return s;
  if (auto s = CheckView("LoraApply", b_name.c_str(), p.b, 2, kind, true); !s.ok()) return s;
  const int64_t r = p.a.dim(0);
  if (r < 1 || r > kMaxLoraDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoraApply: pairs[", i, "].a has rank r = ", r, ", expected 1 <= r <= ", kMaxLoraDim));
  }
  if (p.a.dim(1) != in) {
    return ShapeError("LoraApply", a_name.c_str(), p.a, absl::StrCat("[", r, ", ", in, "]"));
  }
  if (p.b.dim(0) != out_dim || p.b.dim(1) != r) {
    return ShapeError("LoraApply", b_name.c_str(), p.b, absl::StrCat("[", out_dim, ", ", r, "]"));
  }
  if (!std::isfinite(p.scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoraApply: pairs[", i, "].scale is ", p.scale, ", expected a finite number"));
  }
  return absl::OkStatus();
}

absl::Status CheckLoraSegments(const LoraSegments& seg, size_t num_pairs, int64_t m) {
  const size_t n = seg.slot.size();
  if (n == 0 && seg.seg_start.size() <= 1) {
    if (seg.seg_start.size() == 1 && seg.seg_start[0] != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("LoraApply: seg_start[0] is ", seg.seg_start[0], ", expected 0"));
    }
    return absl::OkStatus();
  }
  if (seg.seg_start.size() != n + 1) {
    return absl::InvalidArgumentError(absl::StrCat("LoraApply: seg_start has ", seg.seg_start.size(),
                                                   " entries, expected segments + 1 = ", n + 1));
  }
  if (seg.seg_start[0] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoraApply: seg_start[0] is ", seg.seg_start[0], ", expected 0"));
  }
  for (size_t s = 0; s < n; ++s) {
    if (seg.seg_start[s + 1] < seg.seg_start[s]) {
      return absl::InvalidArgumentError(absl::StrCat("LoraApply: seg_start[", s + 1, "] = ",
                                                     seg.seg_start[s + 1], " is below seg_start[", s,
                                                     "] = ", seg.seg_start[s]));
    }
    if (seg.slot[s] >= 0 && static_cast<size_t>(seg.slot[s]) >= num_pairs) {
      return absl::InvalidArgumentError(absl::StrCat("LoraApply: slot[", s, "] = ", seg.slot[s],
                                                     " is outside [0, ", num_pairs, ") (pairs)"));
    }
  }
  if (seg.seg_start[n] > m) {
    return absl::InvalidArgumentError(absl::StrCat("LoraApply: seg_start[", n, "] = ", seg.seg_start[n],
                                                   " exceeds the ", m, " rows of x"));
  }
  return absl::OkStatus();
}

// Each tensor of w's format must live where the backend computes.
absl::Status CheckQuantDevices(const QuantizedMatrix& w, DeviceKind kind) {
  auto on = [&](const TensorView& v, const char* role) -> absl::Status {
    if (v.device().kind == kind) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("QuantMatmul: w.", role, " is on ", DeviceName(v.device()),
                                                   ", expected ", DeviceName(Device{kind, v.device().index})));
  };
  switch (w.format) {
    case QuantFormat::kBnb4:
      if (auto s = on(w.bnb4.packed, "packed"); !s.ok()) return s;
      return on(w.bnb4.absmax, "absmax");
    case QuantFormat::kInt8:
      if (auto s = on(w.int8.weight, "weight"); !s.ok()) return s;
      return on(w.int8.scb, "SCB");
    case QuantFormat::kGptq:
      if (auto s = on(w.gptq.qweight, "qweight"); !s.ok()) return s;
      if (auto s = on(w.gptq.qzeros, "qzeros"); !s.ok()) return s;
      if (auto s = on(w.gptq.scales, "scales"); !s.ok()) return s;
      return on(w.gptq.g_idx, "g_idx");
    case QuantFormat::kAwq:
      if (auto s = on(w.awq.qweight, "qweight"); !s.ok()) return s;
      if (auto s = on(w.awq.qzeros, "qzeros"); !s.ok()) return s;
      return on(w.awq.scales, "scales");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckMatmul(const TensorView& x, const TensorView& w, const TensorView& bias,
                         const TensorView& out, DeviceKind kind) {
  if (auto s = CheckView("Matmul", "x", x, 2, kind, true); !s.ok()) return s;
  if (auto s = CheckView("Matmul", "w", w, 2, kind, false); !s.ok()) return s;
  if (auto s = CheckView("Matmul", "out", out, 2, kind, true); !s.ok()) return s;
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  if (w.dim(1) != k) return ShapeError("Matmul", "w", w, absl::StrCat("[", n, ", ", k, "]"));
  if (out.dim(0) != m || out.dim(1) != n) {
    return ShapeError("Matmul", "out", out, absl::StrCat("[", m, ", ", n, "]"));
  }
  if (!bias.empty()) {
    if (auto s = CheckView("Matmul", "bias", bias, 1, kind, false); !s.ok()) return s;
    if (bias.dim(0) != n) return ShapeError("Matmul", "bias", bias, absl::StrCat("[", n, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckQuantMatmul(const TensorView& x, const QuantizedMatrix& w, const TensorView& bias,
                              const TensorView& out, DeviceKind kind) {
  if (auto s = ValidateQuantizedMatrix(w, "QuantMatmul: w"); !s.ok()) return s;
  if (auto s = CheckQuantDevices(w, kind); !s.ok()) return s;
  if (auto s = CheckView("QuantMatmul", "x", x, 2, kind, true); !s.ok()) return s;
  if (auto s = CheckView("QuantMatmul", "out", out, 2, kind, true); !s.ok()) return s;
  const int64_t m = x.dim(0), k = w.cols, n = w.rows;
  if (x.dim(1) != k) return ShapeError("QuantMatmul", "x", x, absl::StrCat("[", m, ", ", k, "]"));
  if (out.dim(0) != m || out.dim(1) != n) {
    return ShapeError("QuantMatmul", "out", out, absl::StrCat("[", m, ", ", n, "]"));
  }
  if (!bias.empty()) {
    if (auto s = CheckView("QuantMatmul", "bias", bias, 1, kind, false); !s.ok()) return s;
    if (bias.dim(0) != n) return ShapeError("QuantMatmul", "bias", bias, absl::StrCat("[", n, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckWorkspaceBytes(const char* op, const TensorView& workspace, size_t need) {
  if (workspace.bytes() < need) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": workspace has ", workspace.bytes(), " bytes, needs ", need));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CheckLoraApply(const TensorView& x, std::span<const LoraPair> pairs,
                                       const LoraSegments& segments, const TensorView& out,
                                       DeviceKind kind) {
  if (auto s = CheckView("LoraApply", "x", x, 2, kind, true); !s.ok()) return s;
  if (auto s = CheckView("LoraApply", "out", out, 2, kind, true); !s.ok()) return s;
  const int64_t m = x.dim(0), in = x.dim(1), out_dim = out.dim(1);
  if (out.dim(0) != m) return ShapeError("LoraApply", "out", out, absl::StrCat("[", m, ", n]"));
  if (m > kMaxLoraDim || in > kMaxLoraDim || out_dim > kMaxLoraDim) {
    return absl::InvalidArgumentError(absl::StrCat("LoraApply: x is ", x.ShapeString(), " and out is ",
                                                   out.ShapeString(), ", dimensions are limited to ",
                                                   kMaxLoraDim));
  }
  int64_t max_rank = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (auto s = CheckLoraPair(pairs[i], i, in, out_dim, kind); !s.ok()) return s;
    max_rank = std::max(max_rank, pairs[i].a.dim(0));
  }
  if (auto s = CheckLoraSegments(segments, pairs.size(), m); !s.ok()) return s;
  return max_rank;
}

absl::Status CheckLoraWorkspace(const TensorView& workspace, size_t need, int64_t m,
                                int64_t max_rank, DeviceKind kind) {
  if (workspace.bytes() < need) {
    return absl::InvalidArgumentError(absl::StrCat("LoraApply: workspace has ", workspace.bytes(),
                                                   " bytes, needs ", need, " (rows ", m,
                                                   " x max rank ", max_rank, " x 4)"));
  }
  if (need > 0 && (workspace.empty() || workspace.device().kind != kind)) {
    return absl::InvalidArgumentError(absl::StrCat("LoraApply: workspace is null or not on the ",
                                                   kind == DeviceKind::kCpu ? "CPU" : "CUDA device"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::kernels::checks
