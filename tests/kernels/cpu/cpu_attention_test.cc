// KvWrite + PagedAttention against a naive contiguous causal attention written here: mixed
// prefill/decode/chunked batches on the per-item and the tiled path, GQA ratios 1, 3 and 8,
// sliding windows, shuffled block tables, and invariance (other sequences in the batch, block
// placement, thread count).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace kiln::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct SeqSpec {
  int32_t start;  // tokens already in the cache
  int32_t new_tokens;
};

struct Problem {
  int64_t heads, kv_heads, hd, block_size = 4, num_blocks = 64;
  int32_t window = 0;
  std::vector<SeqSpec> seqs;
};

// Full K/V/Q of every sequence (all kv_len positions), from fixed seeds per sequence.
struct SeqData {
  std::vector<float> k, v, q;  // [kv_len, kv_heads, hd] x2, [kv_len, heads, hd]
};

SeqData MakeSeq(const Problem& p, size_t s) {
  const int64_t len = p.seqs[s].start + p.seqs[s].new_tokens;
  const uint32_t seed = 100 + static_cast<uint32_t>(s) * 3;
  return {Random(static_cast<size_t>(len * p.kv_heads * p.hd), seed),
          Random(static_cast<size_t>(len * p.kv_heads * p.hd), seed + 1),
          Random(static_cast<size_t>(len * p.heads * p.hd), seed + 2)};
}

// Naive causal attention for the new tokens of one sequence.
std::vector<float> Reference(const Problem& p, const SeqSpec& spec, const SeqData& d) {
  const int64_t group = p.heads / p.kv_heads;
  std::vector<float> out(static_cast<size_t>(spec.new_tokens * p.heads * p.hd));
  const double scale = 1.0 / std::sqrt(static_cast<double>(p.hd));
  for (int64_t i = 0; i < spec.new_tokens; ++i) {
    const int64_t pos = spec.start + i;
    for (int64_t h = 0; h < p.heads; ++h) {
      const int64_t kh = h / group;
      std::vector<double> w;
      const int64_t lo = p.window > 0 ? std::max<int64_t>(0, pos - p.window + 1) : 0;
      for (int64_t j = lo; j <= pos; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < p.hd; ++e) {
          dot += double{d.q[static_cast<size_t>((pos * p.heads + h) * p.hd + e)]} *
                 d.k[static_cast<size_t>((j * p.kv_heads + kh) * p.hd + e)];
        }
        w.push_back(dot * scale);
      }
      const double mx = *std::max_element(w.begin(), w.end());
      double sum = 0;
      for (double& x : w) sum += (x = std::exp(x - mx));
      for (int64_t e = 0; e < p.hd; ++e) {
        double acc = 0;
        for (int64_t j = lo; j <= pos; ++j) {
          acc += w[static_cast<size_t>(j - lo)] / sum * d.v[static_cast<size_t>((j * p.kv_heads + kh) * p.hd + e)];
        }
        out[static_cast<size_t>((i * p.heads + h) * p.hd + e)] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

class AttentionRunner {
 public:
  explicit AttentionRunner(int threads) {
    auto b = cpu::CreateCpuBackend({.num_threads = threads});
    backend_ = std::move(*b);
  }

  // Writes every sequence's cached prefix and new tokens into the cache (prefix first, as a
  // previous step would have), then attends the new tokens. Block ids come from `perm`.
  std::vector<float> Run(const Problem& p, const std::vector<SeqData>& data, const std::vector<int32_t>& perm) {
    const int64_t row = p.kv_heads * p.hd;
    std::vector<float> kc(static_cast<size_t>(p.num_blocks * p.block_size * row), NAN);
    std::vector<float> vc(kc.size(), NAN);
    PagedKvLayer cache{TensorView(kc.data(), DType::kF32, {p.num_blocks, p.block_size, p.kv_heads, p.hd}),
                       TensorView(vc.data(), DType::kF32, {p.num_blocks, p.block_size, p.kv_heads, p.hd})};
    int32_t max_blocks = 32;
    for (const SeqSpec& seq : p.seqs) {
      max_blocks = std::max(max_blocks, static_cast<int32_t>((seq.start + seq.new_tokens + p.block_size - 1) / p.block_size));
    }
    std::vector<int32_t> table(p.seqs.size() * max_blocks, -1), query_start = {0}, kv_len;
    size_t next = 0;
    std::vector<float> q, new_k, new_v;
    std::vector<int32_t> slots;
    for (size_t s = 0; s < p.seqs.size(); ++s) {
      const int32_t len = p.seqs[s].start + p.seqs[s].new_tokens;
      for (int32_t b = 0; b < (len + p.block_size - 1) / p.block_size; ++b) table[s * max_blocks + static_cast<size_t>(b)] = perm[next++];
      std::vector<int32_t> prefix_slots;
      for (int32_t pos = 0; pos < len; ++pos) {
        const int32_t slot = table[s * max_blocks + static_cast<size_t>(pos / p.block_size)] * static_cast<int32_t>(p.block_size) +
                             pos % static_cast<int32_t>(p.block_size);
        (pos < p.seqs[s].start ? prefix_slots : slots).push_back(slot);
      }
      // The cached prefix, written as an earlier step would.
      const int64_t start = p.seqs[s].start;
      EXPECT_TRUE(backend_->KvWrite(TensorView(data[s].k.data(), DType::kF32, {start, p.kv_heads, p.hd}),
                                    TensorView(data[s].v.data(), DType::kF32, {start, p.kv_heads, p.hd}),
                                    prefix_slots, cache).ok());
      new_k.insert(new_k.end(), data[s].k.begin() + start * row, data[s].k.end());
      new_v.insert(new_v.end(), data[s].v.begin() + start * row, data[s].v.end());
      q.insert(q.end(), data[s].q.begin() + start * p.heads * p.hd, data[s].q.end());
      query_start.push_back(query_start.back() + p.seqs[s].new_tokens);
      kv_len.push_back(len);
    }
    const int64_t t = query_start.back();
    EXPECT_TRUE(backend_->KvWrite(TensorView(new_k.data(), DType::kF32, {t, p.kv_heads, p.hd}),
                                  TensorView(new_v.data(), DType::kF32, {t, p.kv_heads, p.hd}), slots, cache).ok());
    AttentionParams params{query_start, kv_len, table, max_blocks, p.window,
                           1.0f / std::sqrt(static_cast<float>(p.hd))};
    std::vector<uint8_t> ws(backend_->AttentionWorkspaceBytes(*std::max_element(kv_len.begin(), kv_len.end())));
    std::vector<float> out(q.size(), NAN);
    absl::Status st = backend_->PagedAttention(TensorView(q.data(), DType::kF32, {t, p.heads, p.hd}), cache, params,
                                               TensorView(out.data(), DType::kF32, {t, p.heads, p.hd}),
                                               TensorView(ws.data(), DType::kU8, {static_cast<int64_t>(ws.size())}));
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }

  Backend& backend() { return *backend_; }

 private:
  std::unique_ptr<Backend> backend_;
};

std::vector<int32_t> Permutation(int n, uint32_t seed) {
  std::vector<int32_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  return perm;
}

// Runs every sequence of `p` in one batch on two threads and compares each with Reference.
void ExpectMatchesNaive(const Problem& p, uint32_t perm_seed) {
  std::vector<SeqData> data;
  for (size_t s = 0; s < p.seqs.size(); ++s) data.push_back(MakeSeq(p, s));
  AttentionRunner runner(2);
  const std::vector<float> out = runner.Run(p, data, Permutation(static_cast<int>(p.num_blocks), perm_seed));
  size_t offset = 0;
  for (size_t s = 0; s < p.seqs.size(); ++s) {
    const std::vector<float> want = Reference(p, p.seqs[s], data[s]);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(out[offset + i], want[i], 1e-5) << "seq " << s;
    offset += want.size();
  }
}

TEST(CpuAttentionTest, MixedBatchMatchesNaiveAttention) {
  for (int64_t group : {1, 3}) {
    for (int32_t window : {0, 4, 7}) {
      for (int64_t hd : {1, 7, 33}) {
        SCOPED_TRACE(testing::Message() << "group=" << group << " window=" << window << " hd=" << hd);
        ExpectMatchesNaive({.heads = 2 * group, .kv_heads = 2, .hd = hd, .window = window,
                            .seqs = {{0, 7}, {32, 1}, {16, 5}, {0, 1}, {126, 1}}},
                           1);
      }
    }
  }
}

TEST(CpuAttentionTest, OutputIndependentOfBlockPlacementBatchAndThreads) {
  Problem p{.heads = 6, .kv_heads = 2, .hd = 16, .seqs = {{20, 3}, {0, 9}, {40, 1}}};
  std::vector<SeqData> data;
  for (size_t s = 0; s < p.seqs.size(); ++s) data.push_back(MakeSeq(p, s));
  AttentionRunner two(2), one(1);
  const std::vector<float> a = two.Run(p, data, Permutation(64, 1));
  const std::vector<float> b = two.Run(p, data, Permutation(64, 2));
  const std::vector<std::vector<int32_t>> contiguous = {Permutation(64, 3)};
  std::vector<int32_t> identity(64);
  std::iota(identity.begin(), identity.end(), 0);
  const std::vector<float> c = one.Run(p, data, identity);
  EXPECT_EQ(a, b);  // bitwise: different block tables
  EXPECT_EQ(a, c);  // bitwise: contiguous blocks, one thread
  // Alone in its batch, sequence 1 gives the same bits as inside the batch.
  Problem alone = p;
  alone.seqs = {p.seqs[1]};
  const std::vector<float> d = two.Run(alone, {data[1]}, Permutation(64, 4));
  const size_t off = static_cast<size_t>(3 * p.heads * p.hd);
  EXPECT_TRUE(std::equal(d.begin(), d.end(), a.begin() + static_cast<ptrdiff_t>(off)));
}

// Sequences with kAttnTiledMinQuery (16) or more new tokens take the tiled prefill path
// (GEMMs over query-row and key tiles with an online softmax); shorter ones and decode the
// per-item path, in the same batch. Covers tiles cut by the causal edge and by sliding windows
// (inside one key tile and across several), chunked prefill after a cached prefix, GQA
// groups of 1, 3 and 8 (8 query heads share a tile of 8 tokens), and head dims that are not a
// multiple of the vector width.
TEST(CpuAttentionTest, TiledPrefillMatchesNaiveAttention) {
  for (int64_t group : {1, 3, 8}) {
    for (int32_t window : {0, 5, 70}) {
      for (int64_t hd : {1, 33, 64}) {
        SCOPED_TRACE(testing::Message() << "group=" << group << " window=" << window << " hd=" << hd);
        ExpectMatchesNaive({.heads = 2 * group, .kv_heads = 2, .hd = hd, .num_blocks = 160, .window = window,
                            .seqs = {{0, 40}, {50, 20}, {3, 1}, {0, 16}, {100, 70}, {9, 15}}},
                           5);
      }
    }
  }
}

// A tiled sequence's tiles are cut relative to its own chunk, so its output is bitwise the same
// alone or in a batch, for any block placement and thread count.
TEST(CpuAttentionTest, TiledOutputIndependentOfBlockPlacementBatchAndThreads) {
  Problem p{.heads = 6, .kv_heads = 2, .hd = 32, .num_blocks = 96, .seqs = {{5, 2}, {10, 50}, {0, 1}}};
  std::vector<SeqData> data;
  for (size_t s = 0; s < p.seqs.size(); ++s) data.push_back(MakeSeq(p, s));
  AttentionRunner two(2), one(1);
  const std::vector<float> a = two.Run(p, data, Permutation(96, 1));
  std::vector<int32_t> identity(96);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(a, two.Run(p, data, Permutation(96, 2)));
  EXPECT_EQ(a, one.Run(p, data, identity));
  Problem alone = p;
  alone.seqs = {p.seqs[1]};
  const std::vector<float> d = two.Run(alone, {data[1]}, Permutation(96, 3));
  const size_t off = static_cast<size_t>(2 * p.heads * p.hd);
  ASSERT_LE(off + d.size(), a.size());
  EXPECT_TRUE(std::equal(d.begin(), d.end(), a.begin() + static_cast<ptrdiff_t>(off)));
}

TEST(CpuAttentionTest, RejectsBadMetadataBeforeTouchingMemory) {
  AttentionRunner runner(2);
  std::vector<float> kc(4 * 4 * 1 * 2), vc(kc.size()), q(2), out(2), k(2);
  PagedKvLayer cache{TensorView(kc.data(), DType::kF32, {4, 4, 1, 2}), TensorView(vc.data(), DType::kF32, {4, 4, 1, 2})};
  const std::vector<int32_t> bad_slot = {16};
  absl::Status s = runner.backend().KvWrite(TensorView(k.data(), DType::kF32, {1, 1, 2}),
                                            TensorView(k.data(), DType::kF32, {1, 1, 2}), bad_slot, cache);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("slot 16"), std::string::npos) << s;
  const std::vector<int32_t> qs = {0, 1}, kv = {5}, table = {0, 4};
  std::vector<uint8_t> ws(runner.backend().AttentionWorkspaceBytes(8));
  s = runner.backend().PagedAttention(TensorView(q.data(), DType::kF32, {1, 1, 2}), cache,
                                      AttentionParams{qs, kv, table, 2, 0, 1.0f},
                                      TensorView(out.data(), DType::kF32, {1, 1, 2}),
                                      TensorView(ws.data(), DType::kU8, {static_cast<int64_t>(ws.size())}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("block 4"), std::string::npos) << s;
  const std::vector<int32_t> too_long = {9};
  s = runner.backend().PagedAttention(TensorView(q.data(), DType::kF32, {1, 1, 2}), cache,
                                      AttentionParams{qs, too_long, table, 2, 0, 1.0f},
                                      TensorView(out.data(), DType::kF32, {1, 1, 2}),
                                      TensorView(ws.data(), DType::kU8, {static_cast<int64_t>(ws.size())}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("needs 3 blocks"), std::string::npos) << s;
}

}  // namespace
}  // namespace kiln::kernels
