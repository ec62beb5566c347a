// The MetadataStager implementation (contract in cuda_context.h): a ring of two pinned host
// buffers, each guarded by an event recorded after the copy that reads it, and one device arena.
// Stage packs every array into the next pinned buffer at 256-byte aligned offsets (first waiting
// on that buffer's event, so the host never overwrites bytes a pending copy still reads), then
// enqueues one cudaMemcpyAsync into the arena on the stream. Buffers grow (doubling) only when a
// call needs more than any before; growing the arena first synchronizes the stream, since
// kernels enqueued earlier may still read the old one.
//
// Thread-safety: none; the owning CudaBackend serializes calls (cuda_context.h).
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/cuda/cuda_context.h"

namespace kiln::kernels::cuda {

inline constexpr size_t kStageAlignment = 256;

// A stager for `device_index` whose copies run on `stream` (borrowed: it must outlive the
// stager). Creates its events now; allocates no memory until the first Stage. Errors: CudaCheck
// statuses from cudaSetDevice / cudaEventCreate. Stage returns RESOURCE_EXHAUSTED when pinned or
// device memory cannot grow, DeviceLostError on sticky errors, INVALID_ARGUMENT when the spans'
// sizes differ or an array has bytes but no data.
absl::StatusOr<std::unique_ptr<MetadataStager>> CreateMetadataStager(int device_index,
                                                                     cudaStream_t stream);

}  // namespace kiln::kernels::cuda
