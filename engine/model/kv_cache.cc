#include "engine/model/kv_cache.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace kiln::engine {

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(kernels::Backend& backend,
                                                         int64_t num_layers, int64_t num_kv_heads,
                                                         int64_t head_dim,
                                                         const KvCacheOptions& options) {
  std::vector<kernels::Backend*> layer_backends(static_cast<size_t>(std::max<int64_t>(0, num_layers)), &backend);
  return Create(layer_backends, num_kv_heads, head_dim, options);
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(std::span<kernels::Backend* const> layer_backends,
                                                         int64_t num_kv_heads, int64_t head_dim,
                                                         const KvCacheOptions& options) {
  const int64_t num_layers = static_cast<int64_t>(layer_backends.size());
  for (size_t l = 0; l < layer_backends.size(); ++l) {
    if (layer_backends[l] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("kv cache: layer ", l, " has no backend"));
    }
  }
  if (options.num_blocks <= 0 || options.block_size <= 0 || num_layers <= 0 ||
      num_kv_heads <= 0 || head_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv cache: num_blocks ", options.num_blocks, ", block_size ",
                     options.block_size, ", layers ", num_layers, ", kv heads ", num_kv_heads,
                     ", head_dim ", head_dim, ": all must be positive"));
  }
  std::unique_ptr<KvCache> cache(new KvCache());
  cache->num_blocks_ = options.num_blocks;
  cache->block_size_ = options.block_size;
  cache->num_kv_heads_ = num_kv_heads;
  cache->head_dim_ = head_dim;
  const std::initializer_list<int64_t> shape = {options.num_blocks, options.block_size,
                                                num_kv_heads, head_dim};
  const size_t bytes = static_cast<size_t>(options.num_blocks) * static_cast<size_t>(options.block_size) *
                       static_cast<size_t>(num_kv_heads * head_dim) * sizeof(float);
  for (kernels::Backend* backend : layer_backends) {
    auto k = backend->Allocate(bytes);
    if (!k.ok()) return k.status();
    auto v = backend->Allocate(bytes);
    if (!v.ok()) return v.status();
    cache->layers_.push_back({k->View(kernels::DType::kF32, shape), v->View(kernels::DType::kF32, shape)});
    cache->buffers_.push_back(std::move(*k));
    cache->buffers_.push_back(std::move(*v));
  }
  return cache;
}

size_t KvCache::bytes() const {
  size_t total = 0;
  for (const kernels::DeviceBuffer& b : buffers_) total += b.bytes();
  return total;
}

std::vector<DeviceBytes> KvCache::bytes_by_device() const {
  std::vector<DeviceBytes> out;
  for (const kernels::DeviceBuffer& b : buffers_) {
    auto it = std::find_if(out.begin(), out.end(), [&](const DeviceBytes& d) { return d.device == b.device(); });
    if (it == out.end()) {
      out.push_back({b.device(), b.bytes()});
    } else {
      it->bytes += b.bytes();
    }
  }
  return out;
}

KvBlockPool::KvBlockPool(int32_t num_blocks) : in_use_(static_cast<size_t>(std::max(0, num_blocks)), false) {
  for (int32_t i = num_blocks - 1; i >= 0; --i) free_.push_back(i);
}

absl::StatusOr<std::vector<int32_t>> KvBlockPool::Allocate(int32_t n) {
  if (n < 0 || n > num_free()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kv block pool: ", n, " blocks requested, ", num_free(), " free"));
  }
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < n; ++i) {
    ids.push_back(free_.back());
    free_.pop_back();
    in_use_[static_cast<size_t>(ids.back())] = true;
  }
  return ids;
}

absl::Status KvBlockPool::Free(int32_t id) {
  if (id < 0 || id >= num_blocks() || !in_use_[static_cast<size_t>(id)]) {
    return absl::InvalidArgumentError(absl::StrCat("kv block pool: block ", id, " is not allocated"));
  }
  in_use_[static_cast<size_t>(id)] = false;
  free_.push_back(id);
  return absl::OkStatus();
}

absl::Status KvBlockPool::Free(const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    if (absl::Status s = Free(id); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace kiln::engine
