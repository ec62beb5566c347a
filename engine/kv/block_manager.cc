#include "engine/kv/block_manager.h"

#include <algorithm>

#include "engine/common/check.h"

namespace kiln::engine::kv {
namespace {

// splitmix64's finalizer: a cheap, well-mixed 64-bit step. Hashes only need to be stable
// within one process (the cache is never persisted).
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t MixString(uint64_t h, std::string_view s) {
  h = Mix(h ^ s.size());
  for (unsigned char c : s) h = Mix(h ^ c);
  return h;
}

}  // namespace

BlockManager::BlockManager(const BlockManagerOptions& options)
    : block_size_(options.block_size),
      caching_(options.enable_prefix_caching),
      blocks_(static_cast<size_t>(std::max(0, options.num_blocks))) {
  KILN_CHECK(options.block_size > 0);
  for (int32_t i = options.num_blocks - 1; i >= 0; --i) free_.push_back(i);
}

uint64_t BlockManager::RootHash(std::string_view model, std::string_view adapter,
                                std::string_view salt) {
  uint64_t h = Mix(0x6b696c6e);  // "kiln"
  h = MixString(h, model);
  h = MixString(h, adapter);
  return MixString(h, salt);
}

uint64_t BlockManager::BlockHash(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = Mix(parent ^ tokens.size());
  for (int32_t t : tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h;
}

int32_t BlockManager::Find(uint64_t parent, uint64_t hash, std::span<const int32_t> tokens) const {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  const Block& b = blocks_[static_cast<size_t>(it->second)];
  if (b.parent != parent || !std::equal(b.tokens.begin(), b.tokens.end(), tokens.begin(), tokens.end())) {
    return -1;  // a 64-bit collision: treat as a miss
  }
  return it->second;
}

BlockManager::PrefixMatch BlockManager::MatchPrefix(uint64_t root, std::span<const int32_t> tokens,
                                                    int32_t max_blocks) const {
  PrefixMatch match;
  if (!caching_) return match;
  uint64_t parent = root;
  const int32_t full = static_cast<int32_t>(tokens.size()) / block_size_;
  for (int32_t i = 0; i < std::min(full, max_blocks); ++i) {
    std::span<const int32_t> chunk = tokens.subspan(static_cast<size_t>(i) * block_size_,
                                                    static_cast<size_t>(block_size_));
    const uint64_t hash = BlockHash(parent, chunk);
    const int32_t id = Find(parent, hash, chunk);
    if (id < 0) break;
    ++match.num_blocks;
    if (blocks_[static_cast<size_t>(id)].refs == 0) ++match.num_evictable;
    parent = hash;
  }
  return match;
}

std::vector<int32_t> BlockManager::AcquireCachedPrefix(uint64_t root,
                                                       std::span<const int32_t> tokens,
                                                       int32_t max_blocks) {
  std::vector<int32_t> ids;
  if (!caching_) return ids;
  uint64_t parent = root;
  const int32_t full = static_cast<int32_t>(tokens.size()) / block_size_;
  for (int32_t i = 0; i < std::min(full, max_blocks); ++i) {
    std::span<const int32_t> chunk = tokens.subspan(static_cast<size_t>(i) * block_size_,
                                                    static_cast<size_t>(block_size_));
    const uint64_t hash = BlockHash(parent, chunk);
    const int32_t id = Find(parent, hash, chunk);
    if (id < 0) break;
    Block& b = blocks_[static_cast<size_t>(id)];
    if (b.refs == 0) evictable_.erase(b.lru);
    ++b.refs;
    ids.push_back(id);
    parent = hash;
  }
  return ids;
}

std::optional<int32_t> BlockManager::Allocate() {
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else if (!evictable_.empty()) {
    id = evictable_.front();
    evictable_.pop_front();
    Block& b = blocks_[static_cast<size_t>(id)];
    by_hash_.erase(b.hash);
    b.cached = false;
    b.tokens.clear();
    ++num_evictions_;
  } else {
    return std::nullopt;
  }
  Block& b = blocks_[static_cast<size_t>(id)];
  KILN_CHECK(b.refs == 0);
  b.refs = 1;
  return id;
}

void BlockManager::Commit(int32_t block, uint64_t parent, uint64_t hash,
                          std::span<const int32_t> tokens) {
  Block& b = blocks_[static_cast<size_t>(block)];
  KILN_CHECK(b.refs > 0);
  if (!caching_ || b.cached || by_hash_.contains(hash)) return;
  b.cached = true;
  b.parent = parent;
  b.hash = hash;
  b.tokens.assign(tokens.begin(), tokens.end());
  by_hash_.emplace(hash, block);
}

void BlockManager::Release(int32_t block) {
  KILN_CHECK(block >= 0 && block < num_blocks());
  Block& b = blocks_[static_cast<size_t>(block)];
  KILN_CHECK(b.refs > 0);
  if (--b.refs > 0) return;
  if (b.cached) {
    b.lru = evictable_.insert(evictable_.end(), block);
  } else {
    free_.push_back(block);
  }
}

BlockManagerStats BlockManager::stats() const {
  return BlockManagerStats{.num_blocks = num_blocks(),
                           .num_free = num_free(),
                           .num_cached = static_cast<int32_t>(by_hash_.size()),
                           .num_evictable = static_cast<int32_t>(evictable_.size()),
                           .num_evictions = num_evictions_};
}

}  // namespace kiln::engine::kv
