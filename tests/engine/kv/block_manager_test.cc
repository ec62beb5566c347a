// engine/kv BlockManager: refcounts, free/evictable accounting, prefix hashing and reuse,
// adapter/salt/model isolation, LRU eviction.
#include "engine/kv/block_manager.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace kiln::engine::kv {
namespace {

std::vector<int32_t> Iota(int n, int first = 100) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// Allocates blocks for `tokens` and commits every full block, as the step loop does after a
// forward pass. Returns the block table.
std::vector<int32_t> Fill(BlockManager& bm, uint64_t root, const std::vector<int32_t>& tokens) {
  const int bs = bm.block_size();
  std::vector<int32_t> table;
  uint64_t parent = root;
  for (size_t i = 0; i * bs < tokens.size(); ++i) {
    std::optional<int32_t> b = bm.Allocate();
    EXPECT_TRUE(b.has_value());
    table.push_back(*b);
    if ((i + 1) * bs <= tokens.size()) {
      std::span<const int32_t> chunk(tokens.data() + i * bs, static_cast<size_t>(bs));
      const uint64_t h = BlockManager::BlockHash(parent, chunk);
      bm.Commit(*b, parent, h, chunk);
      parent = h;
    }
  }
  return table;
}

TEST(BlockManagerTest, AllocateReleaseAndExhaustion) {
  BlockManager bm({.num_blocks = 3, .block_size = 4});
  EXPECT_EQ(bm.num_free(), 3);
  auto a = bm.Allocate(), b = bm.Allocate(), c = bm.Allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(bm.Allocate().has_value());
  EXPECT_EQ(bm.num_free(), 0);
  bm.Release(*b);
  EXPECT_EQ(bm.num_free(), 1);
  EXPECT_EQ(bm.Allocate(), b);
  for (int32_t id : {*a, *b, *c}) bm.Release(id);
  EXPECT_EQ(bm.num_free(), 3);
}

TEST(BlockManagerTest, ReusesFullBlocksOfTheSamePrefixWithRefcounts) {
  BlockManager bm({.num_blocks = 8, .block_size = 4});
  const uint64_t root = BlockManager::RootHash("m", "", "");
  const std::vector<int32_t> prompt = Iota(10);  // 2 full blocks + 2 tokens
  std::vector<int32_t> first = Fill(bm, root, prompt);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(bm.stats().num_cached, 2);

  // A second request with the same 8-token prefix and a different tail.
  std::vector<int32_t> other = Iota(8);
  other.push_back(7);
  other.push_back(7);
  const BlockManager::PrefixMatch match = bm.MatchPrefix(root, other, 8);
  EXPECT_EQ(match.num_blocks, 2);
  EXPECT_EQ(match.num_evictable, 0);  // still held by the first request
  std::vector<int32_t> shared = bm.AcquireCachedPrefix(root, other, 8);
  EXPECT_EQ(shared, std::vector<int32_t>(first.begin(), first.begin() + 2));
  EXPECT_EQ(bm.ref_count(first[0]), 2);

  // The first request ends: shared blocks stay referenced, its tail block is free again.
  for (int32_t b : first) bm.Release(b);
  EXPECT_EQ(bm.ref_count(first[0]), 1);
  EXPECT_EQ(bm.num_free(), 6);
  for (int32_t b : shared) bm.Release(b);
  // Cached blocks count as free (evictable) at idle.
  EXPECT_EQ(bm.num_free(), 8);
  EXPECT_EQ(bm.stats().num_evictable, 2);
  EXPECT_EQ(bm.MatchPrefix(root, other, 8).num_evictable, 2);
  // max_blocks caps the match (a prompt must keep one token to compute).
  EXPECT_EQ(bm.MatchPrefix(root, other, 1).num_blocks, 1);
}

TEST(BlockManagerTest, ModelAdapterAndSaltIsolateTheCache) {
  BlockManager bm({.num_blocks = 16, .block_size = 4});
  const std::vector<int32_t> prompt = Iota(9);
  const uint64_t base = BlockManager::RootHash("m", "", "");
  Fill(bm, base, prompt);
  EXPECT_EQ(bm.MatchPrefix(base, prompt, 2).num_blocks, 2);
  EXPECT_EQ(bm.MatchPrefix(BlockManager::RootHash("m", "lora-a", ""), prompt, 2).num_blocks, 0);
  EXPECT_EQ(bm.MatchPrefix(BlockManager::RootHash("m", "", "tenant-1"), prompt, 2).num_blocks, 0);
  EXPECT_EQ(bm.MatchPrefix(BlockManager::RootHash("m2", "", ""), prompt, 2).num_blocks, 0);
  // Length-prefixed fields: moving a character between fields changes the root.
  EXPECT_NE(BlockManager::RootHash("m", "ab", "c"), BlockManager::RootHash("m", "a", "bc"));
  // A different first block breaks the chain even when the second block matches.
  std::vector<int32_t> changed = prompt;
  changed[0] = 1;
  EXPECT_EQ(bm.MatchPrefix(base, changed, 2).num_blocks, 0);
}

TEST(BlockManagerTest, EvictsLeastRecentlyReleasedCachedBlocksLast) {
  BlockManager bm({.num_blocks = 4, .block_size = 2});
  const uint64_t root = BlockManager::RootHash("m", "", "");
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  std::vector<int32_t> ta = Fill(bm, root, a), tb = Fill(bm, root, b);
  for (int32_t x : ta) bm.Release(x);  // a released first: least recent
  for (int32_t x : tb) bm.Release(x);
  EXPECT_EQ(bm.num_free(), 4);
  // Two new blocks evict a's two blocks; b stays cached.
  auto n1 = bm.Allocate(), n2 = bm.Allocate();
  ASSERT_TRUE(n1 && n2);
  EXPECT_EQ(bm.stats().num_evictions, 2);
  EXPECT_EQ(bm.MatchPrefix(root, a, 2).num_blocks, 0);
  EXPECT_EQ(bm.MatchPrefix(root, b, 2).num_blocks, 2);
  bm.Release(*n1);
  bm.Release(*n2);
  EXPECT_EQ(bm.num_free(), 4);
}

TEST(BlockManagerTest, DisabledCachingNeverMatches) {
  BlockManager bm({.num_blocks = 4, .block_size = 2, .enable_prefix_caching = false});
  const uint64_t root = BlockManager::RootHash("m", "", "");
  std::vector<int32_t> t = Fill(bm, root, {1, 2, 3, 4});
  EXPECT_EQ(bm.stats().num_cached, 0);
  EXPECT_EQ(bm.MatchPrefix(root, std::vector<int32_t>{1, 2, 3, 4, 5}, 2).num_blocks, 0);
  EXPECT_TRUE(bm.AcquireCachedPrefix(root, std::vector<int32_t>{1, 2, 3}, 1).empty());
  for (int32_t x : t) bm.Release(x);
  EXPECT_EQ(bm.num_free(), 4);
}

TEST(BlockManagerTest, DuplicateContentStaysSingleCached) {
  BlockManager bm({.num_blocks = 4, .block_size = 2});
  const uint64_t root = BlockManager::RootHash("m", "", "");
  std::vector<int32_t> t1 = Fill(bm, root, {1, 2}), t2 = Fill(bm, root, {1, 2});
  EXPECT_EQ(bm.stats().num_cached, 1);
  bm.Release(t2[0]);  // the uncached duplicate goes straight back to the free list
  EXPECT_EQ(bm.stats().num_evictable, 0);
  bm.Release(t1[0]);
  EXPECT_EQ(bm.stats().num_evictable, 1);
  EXPECT_EQ(bm.num_free(), 4);
}

}  // namespace
}  // namespace kiln::engine::kv
