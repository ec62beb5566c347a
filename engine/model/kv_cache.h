// Paged KV storage for one loaded model, and a trivial block-id allocator.
//
// KvCache owns, per layer, K and V as [num_blocks, block_size, num_kv_heads, head_dim] fp32
// tensors allocated through the Backend of the device that layer runs on (one backend for a
// single-device model; a model split across devices keeps each layer's K/V with its layer). Blocks are just indices into those tensors:
// which sequence uses which block is the caller's business (a sequence's block table lists its
// blocks in position order; position p lives in table[p / block_size] at p % block_size).
// The real block manager (prefix sharing, eviction) is engine/kv's; KvBlockPool is the minimal
// free list tests and the first runtime use.
//
// Thread-safety: KvCache is owned by one step loop; KvBlockPool is not thread-safe either.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace kiln::engine {

struct KvCacheOptions {
  int32_t num_blocks = 0;
  int32_t block_size = 16;  // tokens per block
};

// Bytes held on one device.
struct DeviceBytes {
  kernels::Device device;
  size_t bytes = 0;
};

class KvCache {
 public:
  // INVALID_ARGUMENT for non-positive sizes; RESOURCE_EXHAUSTED when the backend cannot
  // allocate. The backend must outlive the cache.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(kernels::Backend& backend,
                                                         int64_t num_layers, int64_t num_kv_heads,
                                                         int64_t head_dim,
                                                         const KvCacheOptions& options);
  // One layer per entry of `layer_backends` (not owned, non-null, each outliving the cache),
  // layer i allocated through layer_backends[i]. Same errors.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(std::span<kernels::Backend* const> layer_backends,
                                                         int64_t num_kv_heads, int64_t head_dim,
                                                         const KvCacheOptions& options);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  size_t bytes() const;  // device bytes held
  // bytes() per device, in order of first appearance (layer order).
  std::vector<DeviceBytes> bytes_by_device() const;
  kernels::PagedKvLayer layer(int64_t i) const { return layers_[static_cast<size_t>(i)]; }

 private:
  KvCache() = default;
  int32_t num_blocks_ = 0, block_size_ = 0;
  int64_t num_kv_heads_ = 0, head_dim_ = 0;
  std::vector<kernels::DeviceBuffer> buffers_;
  std::vector<kernels::PagedKvLayer> layers_;
};

// A LIFO free list of block ids [0, num_blocks).
class KvBlockPool {
 public:
  explicit KvBlockPool(int32_t num_blocks);
  // RESOURCE_EXHAUSTED when fewer than `n` blocks are free (then nothing is taken).
  absl::StatusOr<std::vector<int32_t>> Allocate(int32_t n);
  // INVALID_ARGUMENT for an id out of range or already free.
  absl::Status Free(int32_t id);
  absl::Status Free(const std::vector<int32_t>& ids);
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_blocks() const { return static_cast<int32_t>(in_use_.size()); }

 private:
  std::vector<int32_t> free_;
  std::vector<bool> in_use_;
};

}  // namespace kiln::engine
