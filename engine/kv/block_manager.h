// BlockManager: the paged KV block manager (DESIGN.md §1, engine/kv). Blocks are metadata —
// ids into the KvCache tensors that the backend owns — with a reference count and, once full,
// a content hash for automatic prefix caching.
//
// Prefix caching. A full block is identified by a hash chain: the hash of block i covers the
// hash of block i-1 (or, for the first block, a root hash over the model, the adapter and the
// request's cache_salt) and the block's token ids. KV computed under one adapter or salt can
// therefore never serve another. Lookups compare the parent hash and the token ids exactly, so
// only a collision of the 64-bit root hash could alias two roots. A cached block whose
// reference count drops to zero stays cached and is "evictable": it counts as free and is
// reused (least recently released first) when no never-cached block is left.
//
// Usage (the step loop's view):
//   BlockManager bm({.num_blocks = 64, .block_size = 16});
//   uint64_t root = BlockManager::RootHash("llama", /*adapter=*/"", /*salt=*/"");
//   std::vector<int32_t> table = bm.AcquireCachedPrefix(root, prompt, max_blocks);
//   // ... Allocate() more blocks, run the forward, then Commit() each block that became full.
//   for (int32_t b : table) bm.Release(b);
//
// Thread-safety: none; one step loop owns a BlockManager.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace kiln::engine::kv {

struct BlockManagerOptions {
  int32_t num_blocks = 0;
  int32_t block_size = 16;  // tokens per block
  bool enable_prefix_caching = true;
};

struct BlockManagerStats {
  int32_t num_blocks = 0;
  int32_t num_free = 0;       // never-cached free + evictable cached
  int32_t num_cached = 0;     // blocks with a registered hash (in use or evictable)
  int32_t num_evictable = 0;  // cached and unreferenced
  int64_t num_evictions = 0;
};

class BlockManager {
 public:
  explicit BlockManager(const BlockManagerOptions& options);
  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  // The chain root for one (model, adapter, salt). Strings are length-prefixed, so
  // ("ab", "c") and ("a", "bc") differ.
  static uint64_t RootHash(std::string_view model, std::string_view adapter,
                           std::string_view salt);
  // The hash of a full block whose parent hash is `parent`.
  static uint64_t BlockHash(uint64_t parent, std::span<const int32_t> tokens);

  // Number of leading full blocks of `tokens` (at most `max_blocks`) that are cached, and how
  // many of those are evictable now (taking them lowers num_free). Changes nothing.
  struct PrefixMatch {
    int32_t num_blocks = 0;
    int32_t num_evictable = 0;
  };
  PrefixMatch MatchPrefix(uint64_t root, std::span<const int32_t> tokens,
                          int32_t max_blocks) const;

  // Takes a reference on each block of the cached prefix MatchPrefix reports and returns
  // their ids in position order (empty when prefix caching is off).
  std::vector<int32_t> AcquireCachedPrefix(uint64_t root, std::span<const int32_t> tokens,
                                           int32_t max_blocks);

  // A block with reference count 1: a never-cached free block if any, else the least recently
  // released cached block (its hash is forgotten). nullopt when every block is referenced.
  std::optional<int32_t> Allocate();

  // Registers `block` (referenced, full, its KV computed) under `hash` with parent `parent`
  // and `tokens` so later requests can reuse it. Does nothing when caching is off, when the
  // block is already registered, or when another block already holds that content.
  void Commit(int32_t block, uint64_t parent, uint64_t hash, std::span<const int32_t> tokens);

  // Drops one reference. At zero a cached block becomes evictable (most recently released
  // last), any other block free. KILN_CHECKs that the block is referenced.
  void Release(int32_t block);

  int32_t ref_count(int32_t block) const { return blocks_[static_cast<size_t>(block)].refs; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size() + evictable_.size()); }
  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  int32_t block_size() const { return block_size_; }
  bool prefix_caching() const { return caching_; }
  BlockManagerStats stats() const;

 private:
  struct Block {
    int32_t refs = 0;
    bool cached = false;
    uint64_t parent = 0;
    uint64_t hash = 0;
    std::vector<int32_t> tokens;          // the content, compared exactly on lookup
    std::list<int32_t>::iterator lru;     // valid when cached and refs == 0
  };
  // The cached block holding (parent, tokens) under `hash`, or -1.
  int32_t Find(uint64_t parent, uint64_t hash, std::span<const int32_t> tokens) const;

  const int32_t block_size_;
  const bool caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;            // never-cached, unreferenced (LIFO)
  std::list<int32_t> evictable_;         // cached, unreferenced; front = least recent
  absl::flat_hash_map<uint64_t, int32_t> by_hash_;
  int64_t num_evictions_ = 0;
};

}  // namespace kiln::engine::kv
