// CpuBackend::KvWrite and PagedAttention: the reference paged attention.
//  - Decode and short chunks: one work item per (token, head); each item reads its sequence's
//    blocks through the block table and does an fp32 softmax, so an item's arithmetic never
//    depends on the rest of the batch (nor on the thread that runs it).
//  - A sequence with kAttnTiledMinQuery or more new tokens (prefill): tiles of its query rows
//    per KV head through two GEMMs and an online softmax (cpu_attention_tiled.cc); per sequence
//    too, so it never depends on the rest of the batch either.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/checks/attention_checks.h"
#include "kernels/cpu/cpu_attention_internal.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_softmax.h"

namespace kiln::kernels::cpu {

namespace {

// Sum of a[i]·b[i] in a fixed order for a given n: sixteen interleaved partial sums (two
// independent vector accumulators), then a scalar tail. The compiler turns the lanes into
// vector multiply-adds, which a plain running sum (a strict sequential dependency) forbids;
// the order depends on n alone, so an item's result still never depends on the batch.
[[gnu::always_inline]] inline float Dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float lane[16] = {};
  int64_t d = 0;
  for (; d + 16 <= n; d += 16) {
    for (int l = 0; l < 16; ++l) lane[l] += a[d + l] * b[d + l];
  }
  for (int l = 0; l < 8; ++l) lane[l] += lane[l + 8];
  float sum = ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
  for (; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

// y[i] += alpha · x[i], in blocks of 16 so that it vectorizes at -O2 too (whose cost model
// will not add the scalar epilogue a loop of unknown length needs).
[[gnu::always_inline]] inline void Axpy(float alpha, const float* __restrict x, float* __restrict y, int64_t n) {
  int64_t d = 0;
  for (; d + 16 <= n; d += 16) {
    for (int l = 0; l < 16; ++l) y[d + l] += alpha * x[d + l];
  }
  for (; d < n; ++d) y[d] += alpha * x[d];
}

// Items [b, e) of (token, head): scores, softmax and the weighted sum of V for each, over the
// keys its sequence's block table names (walked block by block: no division per key). Items
// of sequences on the tiled path are skipped. Inlined twice below: as the baseline and into an
// AVX2 + FMA function, chosen at run time like every vector kernel of this backend.
[[gnu::always_inline]] inline void AttendItems(const AttendArgs& a, int64_t b, int64_t e, float* scores) {
  const AttentionParams& params = *a.params;
  const int64_t hd = a.hd, bs = a.bs, kv_row = a.kv_row;
  for (int64_t item = b; item < e; ++item) {
    const int64_t t = item / a.heads, h = item % a.heads, kh = h / a.group;
    const size_t s = static_cast<size_t>(a.token_seq[t]);
    if (a.tiled_seq != nullptr && a.tiled_seq[s] != 0) continue;
    const int32_t* table = params.block_table.data() + s * static_cast<size_t>(params.max_blocks_per_seq);
    const int64_t pos = params.kv_len[s] - (params.query_start[s + 1] - params.query_start[s]) +
                        (t - params.query_start[s]);
    const int64_t lo = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
    const float* qv = a.q + (t * a.heads + h) * hd;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = lo; j <= pos;) {
      const int64_t block = j / bs, end = std::min(pos + 1, (block + 1) * bs);
      const float* first = a.k_cache + static_cast<int64_t>(table[block]) * bs * kv_row + kh * hd;
      for (; j < end; ++j) {
        const float score = Dot(qv, first + (j - block * bs) * kv_row, hd) * params.scale;
        scores[j - lo] = score;
        mx = std::max(mx, score);
      }
    }
    const float sum = ExpShiftedSum(scores, pos - lo + 1, mx);
    float* o = a.out + (t * a.heads + h) * hd;
    std::fill(o, o + hd, 0.0f);
    const float inv = 1.0f / sum;
    for (int64_t j = lo; j <= pos;) {
      const int64_t block = j / bs, end = std::min(pos + 1, (block + 1) * bs);
      const float* first = a.v_cache + static_cast<int64_t>(table[block]) * bs * kv_row + kh * hd;
      for (; j < end; ++j) {
        Axpy(scores[j - lo] * inv, first + (j - block * bs) * kv_row, o, hd);
      }
    }
  }
}

void AttendRangeBaseline(const AttendArgs& a, int64_t b, int64_t e, float* scores) {
  AttendItems(a, b, e, scores);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void AttendRangeAvx2(const AttendArgs& a, int64_t b, int64_t e,
                                                         float* scores) {
  AttendItems(a, b, e, scores);
}
#endif

void AttendRange(const AttendArgs& a, int64_t b, int64_t e, float* scores) {
#if defined(__x86_64__)
  if (CpuHasAvx2FmaF16c()) return AttendRangeAvx2(a, b, e, scores);
#endif
  AttendRangeBaseline(a, b, e, scores);
}

}  // namespace

absl::Status CpuBackend::KvWrite(TensorView k, TensorView v, std::span<const int32_t> slots,
                                 const PagedKvLayer& cache) {
  if (auto s = checks::CheckKvWrite(k, v, slots, cache, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t t = k.dim(0), kvh = cache.k.dim(2), hd = cache.k.dim(3);
  const int64_t row = kvh * hd;
  for (int64_t i = 0; i < t; ++i) {
    const int64_t slot = slots[static_cast<size_t>(i)];
    std::memcpy(cache.k.as<float>() + slot * row, k.as<float>() + i * row, static_cast<size_t>(row) * 4);
    std::memcpy(cache.v.as<float>() + slot * row, v.as<float>() + i * row, static_cast<size_t>(row) * 4);
  }
  return absl::OkStatus();
}

namespace {

// Each thread's slice: the scores of one item (max_kv_len floats) or one tile's buffers.
int64_t WorkspaceFloatsPerThread(int64_t max_kv_len) {
  return std::max<int64_t>(max_kv_len, kAttnTileFloats);
}

}  // namespace

size_t CpuBackend::AttentionWorkspaceBytes(int64_t max_kv_len) const {
  return static_cast<size_t>(runner_.num_threads()) * static_cast<size_t>(WorkspaceFloatsPerThread(max_kv_len)) * 4;
}

absl::Status CpuBackend::PagedAttention(TensorView q, const PagedKvLayer& cache,
                                        const AttentionParams& params, TensorView out,
                                        TensorView workspace) {
  if (auto s = checks::CheckAttentionShapes(q, cache, out, DeviceKind::kCpu); !s.ok()) return s;
  const int64_t tokens = q.dim(0), heads = q.dim(1), hd = q.dim(2);
  const int64_t nb = cache.k.dim(0), bs = cache.k.dim(1), kvh = cache.k.dim(2);
  std::vector<int32_t> token_seq;
  int64_t max_kv = 0;
  if (auto s = checks::CheckAttentionParams(params, tokens, nb, bs, &token_seq, &max_kv); !s.ok()) return s;
  if (auto s = checks::CheckAttentionWorkspace(workspace, AttentionWorkspaceBytes(max_kv), DeviceKind::kCpu);
      !s.ok()) {
    return s;
  }
  // Sequences with enough new tokens go through tiles; the rest (all of them in decode steps,
  // which then allocate nothing here) through per-item work.
  struct Tile {
    int64_t seq, kh, t0, t1;
  };
  std::vector<Tile> tiles;
  std::vector<uint8_t> tiled_seq;
  int64_t tiled_tokens = 0;
  const int64_t group = heads / kvh;
  if (TiledAttentionFits(hd, group)) {
    const int64_t tile_tokens = std::max<int64_t>(1, kAttnTileRows / group);
    const size_t num_seqs = params.kv_len.size();
    for (size_t s = 0; s < num_seqs; ++s) {
      const int64_t qs = params.query_start[s], qe = params.query_start[s + 1];
      if (qe - qs < kAttnTiledMinQuery) continue;
      if (tiled_seq.empty()) tiled_seq.assign(num_seqs, 0);
      tiled_seq[s] = 1;
      tiled_tokens += qe - qs;
      for (int64_t kh = 0; kh < kvh; ++kh) {
        for (int64_t t0 = qs; t0 < qe; t0 += tile_tokens) {
          tiles.push_back({static_cast<int64_t>(s), kh, t0, std::min(qe, t0 + tile_tokens)});
        }
      }
    }
  }
  const AttendArgs args{.q = q.as<float>(),
                        .k_cache = cache.k.as<float>(),
                        .v_cache = cache.v.as<float>(),
                        .out = out.as<float>(),
                        .params = &params,
                        .token_seq = token_seq.data(),
                        .tiled_seq = tiled_seq.empty() ? nullptr : tiled_seq.data(),
                        .heads = heads,
                        .hd = hd,
                        .bs = bs,
                        .kv_row = kvh * hd,
                        .group = group,
                        .window = params.sliding_window};
  const int64_t stride = WorkspaceFloatsPerThread(max_kv);
  float* ws = workspace.as<float>();
  if (tiled_tokens < tokens) {
    runner_.For(tokens * heads, 4, [&](int64_t b, int64_t e, int worker) {
      AttendRange(args, b, e, ws + worker * stride);
    });
  }
  if (tiles.empty()) return absl::OkStatus();
  // Tiles go round-robin to the threads: later tiles of a causal prompt cost more, so
  // contiguous ranges would leave one thread with most of the work.
  const int64_t lanes = std::min<int64_t>(runner_.num_threads(), static_cast<int64_t>(tiles.size()));
  runner_.For(lanes, 1, [&](int64_t b, int64_t e, int worker) {
    for (int64_t lane = b; lane < e; ++lane) {
      for (size_t i = static_cast<size_t>(lane); i < tiles.size(); i += static_cast<size_t>(lanes)) {
        const Tile& t = tiles[i];
        AttendTile(args, t.seq, t.kh, t.t0, t.t1, ws + worker * stride);
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace kiln::kernels::cpu
