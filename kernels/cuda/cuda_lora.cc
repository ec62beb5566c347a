// CUDA LoraApply: heterogeneous LoRA over SGMV-style segments. Everything is validated on the
// host with the CPU reference's checks (kernels/checks/gemm_checks.h) before anything is staged
// or written; then the segment bounds, slots and the pair table (device pointers, ranks,
// scales) go to the device in one transfer through ctx.stager, and two launches cover the
// whole batch: shrink t = x_seg · Aᵀ into the workspace ([m, max_rank], each row at its own
// offset, so segments never share scratch), then expand out_seg += scale · t · Bᵀ.
#include <algorithm>
#include <array>
#include <climits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/checks/gemm_checks.h"
#include "kernels/cuda/cuda_lora_launch.h"
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {

size_t LoraWorkspaceBytes(int64_t m, int64_t max_rank) {
  if (m <= 0 || max_rank <= 0) return 0;
  return static_cast<size_t>(m) * static_cast<size_t>(max_rank) * sizeof(float);
}

absl::Status LoraApply(CudaContext& ctx, TensorView x, std::span<const LoraPair> pairs, const LoraSegments& segments,
                       TensorView out, TensorView workspace) {
  auto max_rank = checks::CheckLoraApply(x, pairs, segments, out, DeviceKind::kCuda);
  if (!max_rank.ok()) return max_rank.status();
  const int64_t m = x.dim(0), in = x.dim(1), out_dim = out.dim(1);
  const size_t need = LoraWorkspaceBytes(m, *max_rank);
  if (auto s = checks::CheckLoraWorkspace(workspace, need, m, *max_rank, DeviceKind::kCuda); !s.ok()) return s;

  // Rows that actually meet an adapter; nothing to do (and nothing staged) without any.
  int64_t max_seg_rows = 0;
  for (size_t s = 0; s < segments.slot.size(); ++s) {
    if (segments.slot[s] < 0) continue;
    max_seg_rows = std::max<int64_t>(max_seg_rows, segments.seg_start[s + 1] - segments.seg_start[s]);
  }
  if (max_seg_rows == 0 || in == 0 || out_dim == 0) return absl::OkStatus();
  if (segments.slot.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoraApply: ", segments.slot.size(), " segments, at most ", INT_MAX));
  }
  if (ctx.stager == nullptr) return absl::InternalError("LoraApply: the CUDA context has no metadata stager");

  std::vector<LoraPairDevice> table(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    table[i].a = pairs[i].a.as<const float>();
    table[i].b = pairs[i].b.as<const float>();
    table[i].rank = static_cast<int32_t>(pairs[i].a.dim(0));  // <= INT_MAX (checked)
    table[i].scale = pairs[i].scale;
  }
  const std::array<HostArray, 3> arrays = {
      HostArray{segments.seg_start.data(), segments.seg_start.size_bytes()},
      HostArray{segments.slot.data(), segments.slot.size_bytes()},
      HostArray{table.data(), table.size() * sizeof(LoraPairDevice)}};
  std::array<const void*, 3> device_ptrs{};
  if (auto s = ctx.stager->Stage(arrays, device_ptrs); !s.ok()) return s;

  LoraBatchDevice batch;
  batch.seg_start = static_cast<const int32_t*>(device_ptrs[0]);
  batch.slot = static_cast<const int32_t*>(device_ptrs[1]);
  batch.pairs = static_cast<const LoraPairDevice*>(device_ptrs[2]);
  batch.num_segments = static_cast<int32_t>(segments.slot.size());
  batch.max_rank = static_cast<int32_t>(*max_rank);
  batch.max_seg_rows = static_cast<int32_t>(max_seg_rows);
  float* t = workspace.as<float>();  // [m, max_rank]
  if (auto s = CudaCheck(LaunchLoraShrink(batch, x.as<float>(), in, t, ctx.stream), "launch LoraShrink"); !s.ok()) {
    return s;
  }
  return CudaCheck(LaunchLoraExpand(batch, t, out.as<float>(), out_dim, ctx.stream), "launch LoraExpand");
}

}  // namespace kiln::kernels::cuda
