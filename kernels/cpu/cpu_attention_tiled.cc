// The CPU backend's tiled prefill attention (flash-attention style on fp32): for one sequence,
// one KV head and a tile of query tokens, S = Q·Kᵀ and O += P·V are single-threaded sgemm calls
// over gathered K/V tiles, with an online softmax between them. A prompt of n tokens then
// reads its K and V n / (kAttnTileRows / group) times instead of n × heads times, and the
// arithmetic runs at GEMM speed. Key tiles start at multiples of kAttnTileKeys, so how a
// prompt is split into chunks changes the sums only by GEMM rounding.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/cpu_attention_internal.h"
#include "kernels/cpu/cpu_softmax.h"

namespace kiln::kernels::cpu {

void AttendTile(const AttendArgs& a, int64_t seq, int64_t kh, int64_t t0, int64_t t1, float* ws) {
  const AttentionParams& params = *a.params;
  const int64_t hd = a.hd, group = a.group, bs = a.bs, kv_row = a.kv_row;
  const int64_t rows = (t1 - t0) * group;
  const size_t s = static_cast<size_t>(seq);
  const int32_t* table = params.block_table.data() + s * static_cast<size_t>(params.max_blocks_per_seq);
  const int64_t qs = params.query_start[s], qe = params.query_start[s + 1];
  const int64_t first_pos = params.kv_len[s] - (qe - qs);  // position of token qs

  float* qt = ws;                                    // [rows, hd]
  float* acc = qt + kAttnTileRows * hd;              // [rows, hd]
  float* kt = acc + kAttnTileRows * hd;              // [keys, hd]
  float* vt = kt + kAttnTileKeys * hd;               // [keys, hd]
  float* sc = vt + kAttnTileKeys * hd;               // [rows, kAttnTileKeys]
  float* run_max = sc + kAttnTileRows * kAttnTileKeys;  // [rows]
  float* run_sum = run_max + kAttnTileRows;             // [rows]

  // Row r = (token t0 + r / group, query head kh * group + r % group).
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = t0 + r / group, h = kh * group + r % group;
    std::memcpy(qt + r * hd, a.q + (t * a.heads + h) * hd, static_cast<size_t>(hd) * 4);
  }
  std::fill(acc, acc + rows * hd, 0.0f);
  std::fill(run_max, run_max + rows, -std::numeric_limits<float>::infinity());
  std::fill(run_sum, run_sum + rows, 0.0f);

  const int64_t last_pos = first_pos + (t1 - 1 - qs);
  const int64_t first_lo = a.window > 0 ? std::max<int64_t>(0, first_pos + (t0 - qs) - a.window + 1) : 0;
  for (int64_t k0 = first_lo / kAttnTileKeys * kAttnTileKeys; k0 <= last_pos; k0 += kAttnTileKeys) {
    const int64_t nk = std::min(kAttnTileKeys, last_pos + 1 - k0);
    for (int64_t j = 0; j < nk; ++j) {
      const int64_t key = k0 + j;
      const int64_t row = static_cast<int64_t>(table[key / bs]) * bs + key % bs;
      std::memcpy(kt + j * hd, a.k_cache + row * kv_row + kh * hd, static_cast<size_t>(hd) * 4);
      std::memcpy(vt + j * hd, a.v_cache + row * kv_row + kh * hd, static_cast<size_t>(hd) * 4);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(nk),
                static_cast<int>(hd), params.scale, qt, static_cast<int>(hd), kt, static_cast<int>(hd),
                0.0f, sc, static_cast<int>(kAttnTileKeys));
    bool any = false;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t pos = first_pos + (t0 + r / group - qs);
      const int64_t lo = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
      // Keys [j_lo, j_hi) of this tile are visible to the row (causal, sliding window).
      const int64_t j_lo = std::clamp<int64_t>(lo - k0, 0, nk), j_hi = std::clamp<int64_t>(pos + 1 - k0, 0, nk);
      float* srow = sc + r * kAttnTileKeys;
      std::fill(srow, srow + j_lo, 0.0f);
      std::fill(srow + std::max(j_lo, j_hi), srow + nk, 0.0f);
      if (j_lo >= j_hi) continue;
      any = true;
      float mx = run_max[r];
      for (int64_t j = j_lo; j < j_hi; ++j) mx = std::max(mx, srow[j]);
      const float rescale = std::exp(run_max[r] - mx);  // 0 while nothing was seen (-inf)
      const float sum = ExpShiftedSum(srow + j_lo, j_hi - j_lo, mx);
      run_sum[r] = run_sum[r] * rescale + sum;
      run_max[r] = mx;
      float* arow = acc + r * hd;
      for (int64_t d = 0; d < hd; ++d) arow[d] *= rescale;
    }
    if (!any) continue;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(hd),
                static_cast<int>(nk), 1.0f, sc, static_cast<int>(kAttnTileKeys), vt, static_cast<int>(hd),
                1.0f, acc, static_cast<int>(hd));
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = t0 + r / group, h = kh * group + r % group;
    float* o = a.out + (t * a.heads + h) * hd;
    const float inv = 1.0f / run_sum[r];
    for (int64_t d = 0; d < hd; ++d) o[d] = acc[r * hd + d] * inv;
  }
}

}  // namespace kiln::kernels::cpu
