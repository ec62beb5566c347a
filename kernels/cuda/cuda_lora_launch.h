// Launchers of the LoRA SGMV kernels (cuda_lora_kernels.cu) behind a plain header. Metadata
// (segment bounds, slots, the pair table) is already on the device (staged by cuda_lora.cc
// through the MetadataStager) and validated on the host. Each launcher only enqueues on
// `stream` and returns cudaGetLastError().
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kiln::kernels::cuda {

// One adapter pair as the kernels see it (device pointers).
struct LoraPairDevice {
  const float* a = nullptr;  // [rank, in]
  const float* b = nullptr;  // [out, rank]
  int32_t rank = 0;
  float scale = 1.0f;
};

// Device copies of LoraSegments plus the pair table.
struct LoraBatchDevice {
  const int32_t* seg_start = nullptr;     // [num_segments + 1]
  const int32_t* slot = nullptr;          // [num_segments], < 0: no adapter
  const LoraPairDevice* pairs = nullptr;  // [num_pairs]
  int32_t num_segments = 0;
  int32_t max_rank = 0;      // row stride of t
  int32_t max_seg_rows = 0;  // rows of the longest segment with an adapter
};

// Shrink: t[row, i] = x[row, :] · A[i, :] for every row of a segment with an adapter, i < its rank.
cudaError_t LaunchLoraShrink(const LoraBatchDevice& batch,
                             const float* x,  // [m, in]
                             int64_t in,
                             float* t,        // [m, max_rank]
                             cudaStream_t stream);

// Expand: out[row, j] += scale * t[row, :rank] · B[j, :rank] for the same rows.
cudaError_t LaunchLoraExpand(const LoraBatchDevice& batch,
                             const float* t,  // [m, max_rank]
                             float* out,      // [m, out_dim]
                             int64_t out_dim, cudaStream_t stream);

}  // namespace kiln::kernels::cuda
