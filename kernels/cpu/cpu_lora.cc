// CpuBackend::LoraApply: heterogeneous LoRA over SGMV-style segments. Per segment with an
// adapter: shrink t = x_seg · Aᵀ into the workspace ([rows, r]), then expand
// out_seg += scale · t · Bᵀ with beta = 1, both with OpenBLAS. Segments run one after the other
// (OpenBLAS threads each GEMM); the workspace is reused by every segment.
//
// Everything (segments, slots, every pair, the workspace) is validated before the first write,
// so a bad call leaves `out` untouched.
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/cpu/cpu_internal.h"

namespace kiln::kernels::cpu {
namespace {

constexpr int64_t kMaxDim = INT_MAX;  // cblas takes int dimensions

absl::Status CheckPair(const LoraPair& p, size_t i, int64_t in, int64_t out_dim) {
  const std::string a_name = absl::StrCat("pairs[", i, "].a");
  const std::string b_name = absl::StrCat("pairs[", i, "].b");
  if (auto s = CheckF32("LoraApply", a_name.c_str(), p.a, 2); !s.ok()) return s;
  if (auto s = CheckF32("LoraApply", b_name.c_str(), p.b, 2); !s.ok()) return s;
  const int64_t r = p.a.dim(0);
  if (r < 1 || r > kMaxDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoraApply: pairs[", i, "].a has rank r = ", r, ", expected 1 <= r <= ", kMaxDim));
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

absl::Status CheckSegments(const LoraSegments& seg, size_t num_pairs, int64_t m) {
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

}  // namespace

size_t CpuBackend::LoraWorkspaceBytes(int64_t m, int64_t max_rank) const {
  if (m <= 0 || max_rank <= 0) return 0;
  return static_cast<size_t>(m) * static_cast<size_t>(max_rank) * sizeof(float);
}

absl::Status CpuBackend::LoraApply(TensorView x, std::span<const LoraPair> pairs,
                                   const LoraSegments& segments, TensorView out,
                                   TensorView workspace) {
  if (auto s = CheckF32("LoraApply", "x", x, 2); !s.ok()) return s;
  if (auto s = CheckF32("LoraApply", "out", out, 2); !s.ok()) return s;
  const int64_t m = x.dim(0), in = x.dim(1), out_dim = out.dim(1);
  if (out.dim(0) != m) return ShapeError("LoraApply", "out", out, absl::StrCat("[", m, ", n]"));
  if (m > kMaxDim || in > kMaxDim || out_dim > kMaxDim) {
    return absl::InvalidArgumentError(absl::StrCat("LoraApply: x is ", x.ShapeString(), " and out is ",
                                                   out.ShapeString(), ", dimensions are limited to ",
                                                   kMaxDim));
  }
  int64_t max_rank = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (auto s = CheckPair(pairs[i], i, in, out_dim); !s.ok()) return s;
    max_rank = std::max(max_rank, pairs[i].a.dim(0));
  }
  if (auto s = CheckSegments(segments, pairs.size(), m); !s.ok()) return s;
  const size_t need = LoraWorkspaceBytes(m, max_rank);
  if (workspace.bytes() < need) {
    return absl::InvalidArgumentError(absl::StrCat("LoraApply: workspace has ", workspace.bytes(),
                                                   " bytes, needs ", need, " (rows ", m,
                                                   " x max rank ", max_rank, " x 4)"));
  }
  if (need > 0 && (workspace.empty() || workspace.device().kind != DeviceKind::kCpu)) {
    return absl::InvalidArgumentError("LoraApply: workspace is null or not on the CPU");
  }

  const float* px = x.as<float>();
  float* po = out.as<float>();
  float* t = workspace.as<float>();  // [rows, r] of the current segment
  for (size_t s = 0; s < segments.slot.size(); ++s) {
    const int32_t slot = segments.slot[s];
    const int64_t begin = segments.seg_start[s], rows = segments.seg_start[s + 1] - begin;
    if (slot < 0 || rows == 0 || in == 0 || out_dim == 0) continue;
    const LoraPair& p = pairs[static_cast<size_t>(slot)];
    const int ir = static_cast<int>(p.a.dim(0)), iin = static_cast<int>(in),
              iout = static_cast<int>(out_dim), irows = static_cast<int>(rows);
    const float* xs = px + begin * in;  // [rows, in]
    float* os = po + begin * out_dim;   // [rows, out]
    if (rows == 1) {
      // t = A · x_row; out_row += scale · B · t
      cblas_sgemv(CblasRowMajor, CblasNoTrans, ir, iin, 1.0f, p.a.as<float>(), iin, xs, 1, 0.0f, t, 1);
      cblas_sgemv(CblasRowMajor, CblasNoTrans, iout, ir, p.scale, p.b.as<float>(), ir, t, 1, 1.0f, os, 1);
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, irows, ir, iin, 1.0f, xs, iin,
                p.a.as<float>(), iin, 0.0f, t, ir);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, irows, iout, ir, p.scale, t, ir,
                p.b.as<float>(), ir, 1.0f, os, iout);
  }
  return absl::OkStatus();
}

}  // namespace kiln::kernels::cpu
