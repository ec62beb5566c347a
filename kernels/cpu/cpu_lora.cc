// CpuBackend::LoraApply: heterogeneous LoRA over SGMV-style segments. Per segment with an
// adapter: shrink t = x_seg · Aᵀ into the workspace ([rows, r]), then expand
// out_seg += scale · t · Bᵀ with beta = 1, both with OpenBLAS. Segments run one after the other
// (OpenBLAS threads each GEMM); the workspace is reused by every segment.
//
// Everything (segments, slots, every pair, the workspace) is validated before the first write,
// so a bad call leaves `out` untouched.
#include <cblas.h>

#include <cstdint>

#include "kernels/checks/gemm_checks.h"
#include "kernels/cpu/cpu_internal.h"

namespace kiln::kernels::cpu {

size_t CpuBackend::LoraWorkspaceBytes(int64_t m, int64_t max_rank) const {
  if (m <= 0 || max_rank <= 0) return 0;
  return static_cast<size_t>(m) * static_cast<size_t>(max_rank) * sizeof(float);
}

absl::Status CpuBackend::LoraApply(TensorView x, std::span<const LoraPair> pairs,
                                   const LoraSegments& segments, TensorView out,
                                   TensorView workspace) {
  auto max_rank = checks::CheckLoraApply(x, pairs, segments, out, DeviceKind::kCpu);
  if (!max_rank.ok()) return max_rank.status();
  const int64_t in = x.dim(1), out_dim = out.dim(1);
  const size_t need = LoraWorkspaceBytes(x.dim(0), *max_rank);
  if (auto s = checks::CheckLoraWorkspace(workspace, need, x.dim(0), *max_rank, DeviceKind::kCpu); !s.ok()) {
    return s;
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
    ParallelSgemmNT(runner_, rows, out_dim, ir, p.scale, t, ir, p.b.as<float>(), ir, 1.0f, os, out_dim);
  }
  return absl::OkStatus();
}

}  // namespace kiln::kernels::cpu
