// CUDA KvWrite + PagedAttention against the CPU reference (issue #8): mixed batches (decode,
// prefill, chunked prefill in one call), GQA ratios 1/4/8, kv_len 1..2000 (long decodes take
// the split-K path), block sizes 16 and 32 with shuffled block tables, sliding window on and
// off, head dims 64/80/96/128/256, odd ones (40, 72) and one above the tiled kernel's limit
// (the generic kernel). Outputs start poisoned (NaN); KvWrite must leave the cache
// bit-identical to the CPU's; bad metadata is INVALID_ARGUMENT with the CPU's message and
// nothing written. Without a CUDA device every test skips (gpu_test_util.h), except
// AttentionPlanTest, which checks the host-side work plan (cuda_attention_plan.h) anywhere.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_attention_launch.h"
#include "kernels/cuda/cuda_attention_plan.h"
#include "tests/gpu/gpu_test_util.h"

namespace kiln::kernels::gpu_test {
namespace {

struct Seq {
  int32_t start;       // tokens already in the cache before this step
  int32_t new_tokens;  // q_len
};

struct Case {
  int64_t heads = 8, kv_heads = 8, hd = 64, block_size = 16;
  int32_t window = 0;
  std::vector<Seq> seqs;
  uint32_t seed = 1;
};

std::string Describe(const Case& c) {
  std::string s = "heads " + std::to_string(c.heads) + " kv_heads " + std::to_string(c.kv_heads) + " hd " +
                  std::to_string(c.hd) + " block " + std::to_string(c.block_size) + " window " +
                  std::to_string(c.window) + " seqs";
  for (const Seq& q : c.seqs) s += " (" + std::to_string(q.start) + "+" + std::to_string(q.new_tokens) + ")";
  return s;
}

// Host-side batch: block tables over a shuffled pool, the slots of every cached token, and
// the CSR params of the attention step.
struct Batch {
  int64_t num_blocks = 0;
  int32_t max_blocks = 0;
  int64_t tokens = 0;       // new tokens (rows of q)
  int64_t all_tokens = 0;   // every cached token (rows of the KvWrite)
  int64_t max_kv = 0;
  std::vector<int32_t> query_start, kv_len, block_table, slots;
};

Batch MakeBatch(const Case& c) {
  Batch b;
  std::mt19937 rng(c.seed);
  int64_t needed = 0;
  for (const Seq& s : c.seqs) {
    const int64_t blocks = (s.start + s.new_tokens + c.block_size - 1) / c.block_size;
    needed += blocks;
    b.max_blocks = std::max<int32_t>(b.max_blocks, static_cast<int32_t>(blocks) + 1);  // a spare column
  }
  b.num_blocks = needed + 7;  // unused blocks stay in the pool
  std::vector<int32_t> pool(static_cast<size_t>(b.num_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  size_t next = 0;
  b.query_start.push_back(0);
  for (const Seq& s : c.seqs) {
    const int32_t len = s.start + s.new_tokens;
    const int64_t blocks = (len + c.block_size - 1) / c.block_size;
    std::vector<int32_t> row(static_cast<size_t>(b.max_blocks), -1);  // unused columns: never read
    for (int64_t i = 0; i < blocks; ++i) row[static_cast<size_t>(i)] = pool[next++];
    b.block_table.insert(b.block_table.end(), row.begin(), row.end());
    for (int32_t p = 0; p < len; ++p) {
      b.slots.push_back(row[static_cast<size_t>(p / c.block_size)] * static_cast<int32_t>(c.block_size) +
                        p % static_cast<int32_t>(c.block_size));
    }
    b.tokens += s.new_tokens;
    b.all_tokens += len;
    b.query_start.push_back(static_cast<int32_t>(b.tokens));
    b.kv_len.push_back(len);
    b.max_kv = std::max<int64_t>(b.max_kv, len);
  }
  return b;
}

AttentionParams ParamsOf(const Batch& b, const Case& c) {
  AttentionParams p;
  p.query_start = b.query_start;
  p.kv_len = b.kv_len;
  p.block_table = b.block_table;
  p.max_blocks_per_seq = b.max_blocks;
  p.sliding_window = c.window;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
  return p;
}

// One backend's tensors for a case.
struct Side {
  DeviceTensor k_cache, v_cache, q, out, workspace;
  PagedKvLayer Cache() const { return {k_cache.view, v_cache.view}; }
};

class AttentionParityTest : public GpuParityTest {
 protected:
  // Fills both caches with the same noise (so a wrong slot reads finite garbage, not the
  // right value), writes every cached token with KvWrite, checks the caches agree bit for bit,
  // then runs PagedAttention on both and compares.
  void RunCase(const Case& c) {
    SCOPED_TRACE(Describe(c));
    const Batch b = MakeBatch(c);
    const size_t cache_n = static_cast<size_t>(b.num_blocks * c.block_size * c.kv_heads * c.hd);
    const std::vector<float> noise = RandomValues(cache_n, c.seed + 11, -3.0f, 3.0f);
    const std::vector<float> k_new =
        RandomValues(static_cast<size_t>(b.all_tokens * c.kv_heads * c.hd), c.seed + 12);
    const std::vector<float> v_new =
        RandomValues(static_cast<size_t>(b.all_tokens * c.kv_heads * c.hd), c.seed + 13);
    const std::vector<float> q = RandomValues(static_cast<size_t>(b.tokens * c.heads * c.hd), c.seed + 14);
    const std::initializer_list<int64_t> cache_shape = {b.num_blocks, c.block_size, c.kv_heads, c.hd};
    const std::initializer_list<int64_t> kv_shape = {b.all_tokens, c.kv_heads, c.hd};
    const std::initializer_list<int64_t> q_shape = {b.tokens, c.heads, c.hd};

    Side sides[2];
    Backend* backends[2] = {&cpu(), &gpu()};
    for (int i = 0; i < 2; ++i) {
      Backend& be = *backends[i];
      Side& s = sides[i];
      s.k_cache = Upload(be, noise, DType::kF32, cache_shape);
      s.v_cache = Upload(be, noise, DType::kF32, cache_shape);
      const DeviceTensor k = Upload(be, k_new, DType::kF32, kv_shape);
      const DeviceTensor v = Upload(be, v_new, DType::kF32, kv_shape);
      const absl::Status w = be.KvWrite(k.view, v.view, b.slots, s.Cache());
      ASSERT_TRUE(w.ok()) << BackendKindName(be.kind()) << ": " << w;
      s.q = Upload(be, q, DType::kF32, q_shape);
      s.out = Poisoned(be, DType::kF32, q_shape);
      const size_t ws = be.AttentionWorkspaceBytes(b.max_kv);
      s.workspace = Poisoned(be, DType::kU8, {static_cast<int64_t>(std::max<size_t>(ws, 1))});
    }
    EXPECT_EQ(DownloadBytes(gpu(), sides[1].k_cache.view), DownloadBytes(cpu(), sides[0].k_cache.view))
        << "KvWrite: k cache differs";
    EXPECT_EQ(DownloadBytes(gpu(), sides[1].v_cache.view), DownloadBytes(cpu(), sides[0].v_cache.view))
        << "KvWrite: v cache differs";

    const AttentionParams params = ParamsOf(b, c);
    for (int i = 0; i < 2; ++i) {
      const absl::Status s = backends[i]->PagedAttention(sides[i].q.view, sides[i].Cache(), params,
                                                         sides[i].out.view, sides[i].workspace.view);
      ASSERT_TRUE(s.ok()) << BackendKindName(backends[i]->kind()) << ": " << s;
    }
    ExpectClose(Download(gpu(), sides[1].out.view), Download(cpu(), sides[0].out.view),
                RelTolerance(DType::kF32), 2e-5f, "PagedAttention out");
  }
};

TEST_F(AttentionParityTest, MixedBatchEveryHeadDim) {
  // Decode, prefill from scratch, chunked prefill and a 2000-token decode in one call.
  const std::vector<Seq> seqs = {{100, 1}, {0, 37}, {50, 20}, {1999, 1}, {0, 1}};
  uint32_t seed = 1;
  for (int64_t hd : {64, 80, 96, 128, 256, 40, 72, 300}) {
    for (int32_t window : {0, 48}) {
      Case c{.heads = 8, .kv_heads = 2, .hd = hd, .block_size = hd % 32 == 0 ? 16 : 32, .window = window,
             .seqs = seqs, .seed = seed++};
      RunCase(c);
    }
  }
}

TEST_F(AttentionParityTest, GqaRatiosBlockSizesAndWindows) {
  uint32_t seed = 100;
  for (auto [heads, kv_heads] : {std::pair<int64_t, int64_t>{8, 8}, {16, 4}, {32, 4}}) {
    for (int64_t block_size : {16, 32}) {
      for (int32_t window : {0, 1, 7, 300}) {
        Case c{.heads = heads, .kv_heads = kv_heads, .hd = 128, .block_size = block_size, .window = window,
               .seqs = {{0, 5}, {17, 1}, {31, 2}, {600, 1}, {64, 64}, {3, 130}}, .seed = seed++};
        RunCase(c);
      }
    }
  }
}

TEST_F(AttentionParityTest, KvLenFromOneToTwoThousand) {
  // Batch-1 and small-batch decodes: few CTAs, so long contexts are split (split-K).
  uint32_t seed = 200;
  for (int32_t kv : {1, 2, 15, 16, 17, 255, 256, 257, 511, 512, 513, 1000, 1999, 2000}) {
    for (auto [heads, kv_heads] : {std::pair<int64_t, int64_t>{32, 4}, {8, 8}, {64, 8}}) {
      Case c{.heads = heads, .kv_heads = kv_heads, .hd = 128, .block_size = 16, .window = 0,
             .seqs = {{kv - 1, 1}}, .seed = seed++};
      RunCase(c);
    }
  }
  Case batch{.heads = 32, .kv_heads = 8, .hd = 64, .block_size = 32, .window = 0,
             .seqs = {{0, 1}, {1999, 1}, {700, 1}, {1500, 2}, {1200, 3}}, .seed = seed++};
  RunCase(batch);
  batch.window = 1000;
  RunCase(batch);
}

TEST_F(AttentionParityTest, LongPrefillManyTiles) {
  uint32_t seed = 300;
  for (int64_t hd : {64, 128, 256}) {
    for (int32_t window : {0, 100}) {
      Case c{.heads = 4, .kv_heads = 1, .hd = hd, .block_size = 32, .window = window,
             .seqs = {{0, 333}, {1000, 70}}, .seed = seed++};
      RunCase(c);
    }
  }
}

// ---- invalid input: INVALID_ARGUMENT, the CPU's message, nothing written --------------------

class AttentionRejectTest : public GpuParityTest {
 protected:
  static constexpr int64_t kBlocks = 4, kBlockSize = 16, kKvHeads = 2, kHeads = 4, kHd = 64;

  void SetUp() override {
    GpuParityTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    const std::vector<float> noise = RandomValues(kBlocks * kBlockSize * kKvHeads * kHd, 5);
    for (int i = 0; i < 2; ++i) {
      Backend& be = i == 0 ? cpu() : gpu();
      k_[i] = Upload(be, noise, DType::kF32, {kBlocks, kBlockSize, kKvHeads, kHd});
      v_[i] = Upload(be, noise, DType::kF32, {kBlocks, kBlockSize, kKvHeads, kHd});
    }
  }
  Backend& Be(int i) { return i == 0 ? cpu() : gpu(); }
  PagedKvLayer Cache(int i) { return {k_[i].view, v_[i].view}; }

  // Runs PagedAttention with `p` for `tokens` tokens on both backends: both must refuse with
  // the same message and leave the output poisoned.
  void ExpectRejected(const AttentionParams& p, int64_t tokens, const std::string& needle) {
    std::string messages[2];
    for (int i = 0; i < 2; ++i) {
      Backend& be = Be(i);
      const DeviceTensor q = Upload(be, RandomValues(tokens * kHeads * kHd, 9), DType::kF32, {tokens, kHeads, kHd});
      const DeviceTensor out = Poisoned(be, DType::kF32, {tokens, kHeads, kHd});
      const DeviceTensor ws = Poisoned(be, DType::kU8, {1 << 20});
      const absl::Status s = be.PagedAttention(q.view, Cache(i), p, out.view, ws.view);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << BackendKindName(be.kind()) << ": " << s;
      EXPECT_NE(s.message().find(needle), std::string::npos) << s;
      messages[i] = std::string(s.message());
      for (float x : Download(be, out.view)) {
        ASSERT_TRUE(std::isnan(x)) << BackendKindName(be.kind()) << " wrote its output on a refused call";
      }
    }
    EXPECT_EQ(messages[1], messages[0]);
  }

  DeviceTensor k_[2], v_[2];
};

TEST_F(AttentionRejectTest, BadMetadataIsInvalidArgumentAndWritesNothing) {
  const std::vector<int32_t> table = {0, 1, 2, 3};
  {
    const std::vector<int32_t> qs = {0, 2}, kv = {20}, bad_table = {0, 4};
    ExpectRejected({.query_start = qs, .kv_len = kv, .block_table = bad_table, .max_blocks_per_seq = 2}, 2,
                   "block 4 outside [0, 4)");
  }
  {
    const std::vector<int32_t> qs = {0, 2}, kv = {20}, neg_table = {-1, 0};
    ExpectRejected({.query_start = qs, .kv_len = kv, .block_table = neg_table, .max_blocks_per_seq = 2}, 2,
                   "block -1");
  }
  {
    const std::vector<int32_t> qs = {0, 2}, kv = {40};  // needs 3 blocks, table row has 2
    const std::vector<int32_t> t2 = {0, 1};
    ExpectRejected({.query_start = qs, .kv_len = kv, .block_table = t2, .max_blocks_per_seq = 2}, 2,
                   "needs 3 blocks");
  }
  {
    const std::vector<int32_t> qs = {0, 3}, kv = {2};  // fewer cached tokens than new ones
    ExpectRejected({.query_start = qs, .kv_len = kv, .block_table = table, .max_blocks_per_seq = 4}, 3,
                   "kv_len 2 < its 3 new tokens");
  }
  {
    const std::vector<int32_t> qs = {0, 9, 3}, kv = {9, 5}, t2 = {0, 1, 2, 3};  // overshoots, comes back
    ExpectRejected({.query_start = qs, .kv_len = kv, .block_table = t2, .max_blocks_per_seq = 2}, 3,
                   "query_start decreases at 1");
  }
  {
    const std::vector<int32_t> qs = {0, 2}, kv = {5};  // q has 3 tokens
    ExpectRejected({.query_start = qs, .kv_len = kv, .block_table = table, .max_blocks_per_seq = 4}, 3,
                   "query_start ends at 2");
  }
  {
    const std::vector<int32_t> qs = {1, 3}, kv = {5};
    ExpectRejected({.query_start = qs, .kv_len = kv, .block_table = table, .max_blocks_per_seq = 4}, 3,
                   "query_start must start with 0");
  }
  {
    const std::vector<int32_t> qs = {0, 1, 2}, kv = {5};
    ExpectRejected({.query_start = qs, .kv_len = kv, .block_table = table, .max_blocks_per_seq = 2}, 2,
                   "kv_len has 1 entries for 2 sequences");
  }
}

TEST_F(AttentionRejectTest, SmallWorkspaceIsRefused) {
  // A 600-token context needs the split-K workspace on CUDA; one byte is not enough.
  const std::vector<int32_t> qs = {0, 1}, kv = {60}, table = {0, 1, 2, 3};
  const AttentionParams p{.query_start = qs, .kv_len = kv, .block_table = table, .max_blocks_per_seq = 4};
  for (int i = 0; i < 2; ++i) {
    Backend& be = Be(i);
    const size_t need = be.AttentionWorkspaceBytes(600);
    if (need == 0) continue;
    const DeviceTensor q = Upload(be, RandomValues(kHeads * kHd, 9), DType::kF32, {1, kHeads, kHd});
    const DeviceTensor out = Poisoned(be, DType::kF32, {1, kHeads, kHd});
    const DeviceTensor ws = Poisoned(be, DType::kU8, {1});
    // kv_len 60 needs less than 600: the check uses this call's longest kv_len.
    const int64_t short_bytes = static_cast<int64_t>(std::max<size_t>(be.AttentionWorkspaceBytes(60), 1));
    const DeviceTensor short_ws = Poisoned(be, DType::kU8, {short_bytes});
    const absl::Status ok = be.PagedAttention(q.view, Cache(i), p, out.view, short_ws.view);
    EXPECT_TRUE(ok.ok()) << ok;
    const std::vector<int32_t> long_kv = {600}, long_table(38, 0);
    const AttentionParams lp{.query_start = qs, .kv_len = long_kv, .block_table = long_table,
                             .max_blocks_per_seq = 38};
    const absl::Status s = be.PagedAttention(q.view, Cache(i), lp, out.view, ws.view);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("workspace has 1 bytes"), std::string::npos) << s;
  }
}

TEST_F(AttentionRejectTest, BadSlotIsInvalidArgumentAndCacheUntouched) {
  const std::vector<int32_t> slots = {0, 64};  // 4 blocks x 16 = 64 slots
  std::string messages[2];
  for (int i = 0; i < 2; ++i) {
    Backend& be = Be(i);
    const std::vector<uint8_t> before = DownloadBytes(be, k_[i].view);
    const DeviceTensor k = Upload(be, RandomValues(2 * kKvHeads * kHd, 3), DType::kF32, {2, kKvHeads, kHd});
    const absl::Status s = be.KvWrite(k.view, k.view, slots, Cache(i));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("slot 64 of token 1 outside [0, 64)"), std::string::npos) << s;
    messages[i] = std::string(s.message());
    EXPECT_EQ(DownloadBytes(be, k_[i].view), before) << BackendKindName(be.kind()) << " wrote the cache";
    EXPECT_EQ(DownloadBytes(be, v_[i].view), before) << BackendKindName(be.kind()) << " wrote the cache";
  }
  EXPECT_EQ(messages[1], messages[0]);
}

TEST_F(AttentionRejectTest, CpuViewsAreRefusedByCuda) {
  // The CUDA backend must never dereference a host pointer as device memory.
  const DeviceTensor host_k = Upload(cpu(), RandomValues(kKvHeads * kHd, 3), DType::kF32, {1, kKvHeads, kHd});
  const std::vector<int32_t> slots = {0};
  const absl::Status s = gpu().KvWrite(host_k.view, host_k.view, slots, Cache(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("is on cpu"), std::string::npos) << s;
}


// ---- the host-side plan (runs without a device) ------------------------------------------

// Every row of every sequence and kv head must be covered once: by one unsplit item whose
// keys include [lo(pos), pos], or by one combine whose splits tile the tile's key range
// contiguously; records must fit the workspace and never overlap.
void CheckPlanCovers(const Case& c, size_t workspace_bytes, int sm_count, const cuda::AttentionPlan& plan) {
  const Batch b = MakeBatch(c);
  const int64_t group = c.heads / c.kv_heads;
  std::vector<int> covered(static_cast<size_t>(b.tokens * c.heads), 0);
  std::vector<int> record_owner(static_cast<size_t>(plan.records), 0);
  auto visit = [&](const std::vector<cuda::AttentionItem>& items, int32_t tile_rows) {
    for (const cuda::AttentionItem& it : items) {
      ASSERT_LT(it.kv_begin, it.kv_end);
      const int32_t q0 = b.query_start[static_cast<size_t>(it.seq)];
      const int32_t q_len = b.query_start[static_cast<size_t>(it.seq) + 1] - q0;
      const int32_t kv = b.kv_len[static_cast<size_t>(it.seq)];
      for (int32_t r = 0; r < tile_rows && it.row_begin + r < q_len * group; ++r) {
        const int32_t rr = it.row_begin + r;
        const int64_t pos = kv - q_len + rr / group;
        const int64_t lo = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
        const int64_t h = it.kv_head * group + rr % group;
        if (it.partial < 0) {
          EXPECT_LE(it.kv_begin, lo);
          EXPECT_GE(it.kv_end, pos + 1);
          ++covered[static_cast<size_t>((q0 + rr / group) * c.heads + h)];
        } else {
          ASSERT_LT(it.partial + r, plan.records);
          ++record_owner[static_cast<size_t>(it.partial + r)];
        }
      }
    }
  };
  visit(plan.decode_items, cuda::kDecodeTileRows);
  visit(plan.prefill_items, cuda::kPrefillTileRows);
  for (const cuda::CombineItem& cb : plan.combines) {
    // The splits of this tile: contiguous, in order, from the tile's first key to its last.
    std::vector<const cuda::AttentionItem*> splits;
    const auto& items = cb.tile_rows == cuda::kDecodeTileRows ? plan.decode_items : plan.prefill_items;
    for (const cuda::AttentionItem& it : items) {
      if (it.partial >= cb.partial && it.partial < cb.partial + cb.num_splits * cb.tile_rows) splits.push_back(&it);
    }
    ASSERT_EQ(static_cast<int32_t>(splits.size()), cb.num_splits);
    for (size_t i = 0; i < splits.size(); ++i) {
      EXPECT_EQ(splits[i]->partial, cb.partial + static_cast<int32_t>(i) * cb.tile_rows);
      EXPECT_EQ(splits[i]->seq, cb.seq);
      EXPECT_EQ(splits[i]->kv_head, cb.kv_head);
      EXPECT_EQ(splits[i]->row_begin, cb.row_begin);
      if (i > 0) {
        EXPECT_EQ(splits[i]->kv_begin, splits[i - 1]->kv_end);
      }
    }
    const int32_t q0 = b.query_start[static_cast<size_t>(cb.seq)];
    const int32_t q_len = b.query_start[static_cast<size_t>(cb.seq) + 1] - q0;
    const int32_t kv = b.kv_len[static_cast<size_t>(cb.seq)];
    for (int32_t r = 0; r < cb.tile_rows && cb.row_begin + r < q_len * group; ++r) {
      const int32_t rr = cb.row_begin + r;
      const int64_t pos = kv - q_len + rr / group;
      const int64_t lo = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
      EXPECT_LE(splits.front()->kv_begin, lo);
      EXPECT_GE(splits.back()->kv_end, pos + 1);
      ++covered[static_cast<size_t>((q0 + rr / group) * c.heads + cb.kv_head * group + rr % group)];
    }
  }
  for (size_t i = 0; i < covered.size(); ++i) EXPECT_EQ(covered[i], 1) << "row " << i;
  for (size_t i = 0; i < record_owner.size(); ++i) EXPECT_LE(record_owner[i], 1) << "record " << i;
  EXPECT_LE(static_cast<size_t>(plan.records) * static_cast<size_t>(c.hd + 2) * sizeof(float), workspace_bytes);
  (void)sm_count;
}

TEST(AttentionPlanTest, EveryRowCoveredOnceAndRecordsFit) {
  const std::vector<Case> cases = {
      {.heads = 8, .kv_heads = 2, .hd = 40, .block_size = 16, .window = 0,
       .seqs = {{100, 1}, {0, 37}, {50, 20}, {1999, 1}, {0, 1}}},
      {.heads = 8, .kv_heads = 2, .hd = 72, .block_size = 32, .window = 48,
       .seqs = {{100, 1}, {0, 37}, {50, 20}, {1999, 1}, {0, 1}}},
      {.heads = 32, .kv_heads = 4, .hd = 128, .seqs = {{1999, 1}}},
      {.heads = 64, .kv_heads = 8, .hd = 128, .seqs = {{511, 1}}},
      {.heads = 8, .kv_heads = 8, .hd = 256, .seqs = {{1023, 2}}},
      {.heads = 32, .kv_heads = 8, .hd = 64, .block_size = 32, .window = 1000,
       .seqs = {{0, 1}, {1999, 1}, {700, 1}, {1500, 2}, {1200, 3}}},
      {.heads = 4, .kv_heads = 1, .hd = 64, .block_size = 32, .window = 100, .seqs = {{0, 333}, {1000, 70}}},
      {.heads = 16, .kv_heads = 4, .hd = 128, .window = 7,
       .seqs = {{0, 5}, {17, 1}, {31, 2}, {600, 1}, {64, 64}, {3, 130}, {5, 0}}},
  };
  for (const Case& c : cases) {
    for (size_t ws : {size_t{0}, size_t{40000}, cuda::kSplitWorkspaceBytes}) {
      for (int sms : {1, 132}) {
        SCOPED_TRACE(Describe(c) + " workspace " + std::to_string(ws) + " sms " + std::to_string(sms));
        const Batch b = MakeBatch(c);
        cuda::AttentionPlan plan;
        cuda::PlanAttention(ParamsOf(b, c), c.heads / c.kv_heads, c.kv_heads, c.hd, ws, sms, plan);
        CheckPlanCovers(c, ws, sms, plan);
        if (ws == 0 || sms == 1) {
          EXPECT_TRUE(plan.combines.empty());
        }
      }
    }
  }
}

TEST(AttentionPlanTest, LongBatchOneDecodeIsSplit) {
  const Case c{.heads = 32, .kv_heads = 8, .hd = 128, .seqs = {{1999, 1}}};
  const Batch b = MakeBatch(c);
  cuda::AttentionPlan plan;
  cuda::PlanAttention(ParamsOf(b, c), 4, 8, 128, cuda::kSplitWorkspaceBytes, 132, plan);
  EXPECT_EQ(plan.combines.size(), 8u);  // one per kv head
  EXPECT_TRUE(plan.prefill_items.empty());
  EXPECT_GT(plan.decode_items.size(), 8u);
  for (const cuda::AttentionItem& it : plan.decode_items) {
    EXPECT_GE(it.kv_end - it.kv_begin, 1);
    EXPECT_LE(it.kv_end - it.kv_begin, 1000);  // at least two splits
  }
}

}  // namespace
}  // namespace kiln::kernels::gpu_test
