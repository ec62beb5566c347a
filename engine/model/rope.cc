// Float32 emulation of transformers' modeling_rope_utils. Each step mirrors one torch op on a
// float32 tensor: python scalars enter as float, `scalar / tensor` is reciprocal(tensor) *
// scalar (Tensor.__rtruediv__), `tensor / scalar` a true float division, and `base ** e` is a
// correctly rounded pow (double pow rounded to float matches torch's to within one ulp).
#include "engine/model/rope.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace kiln::engine {
namespace {

constexpr double kPi = 3.14159265358979323846;

float PowF(double base, float e) {
  return static_cast<float>(std::pow(static_cast<double>(static_cast<float>(base)), static_cast<double>(e)));
}

// base ** (arange(0, dim, 2).float() / dim), as float32.
std::vector<float> PosFreqs(double base, int64_t dim) {
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) out.push_back(PowF(base, static_cast<float>(i) / static_cast<float>(dim)));
  return out;
}

std::vector<float> DefaultInvFreq(double base, int64_t dim) {
  std::vector<float> inv = PosFreqs(base, dim);
  for (float& v : inv) v = 1.0f / v;
  return inv;
}

float Reciprocal(float x) { return 1.0f / x; }

void Llama3(const RopeConfig& rope, int64_t max_pos, std::vector<float>& inv) {
  const double factor = rope.factor;
  const double old_ctx = static_cast<double>(rope.original_max_position_embeddings.value_or(max_pos));
  const float low_wl = static_cast<float>(old_ctx / rope.low_freq_factor);
  const float high_wl = static_cast<float>(old_ctx / rope.high_freq_factor);
  for (float& f : inv) {
    const float wavelen = Reciprocal(f) * static_cast<float>(2 * kPi);
    const float llama = wavelen > low_wl ? f / static_cast<float>(factor) : f;
    const float smooth = (Reciprocal(wavelen) * static_cast<float>(old_ctx) - static_cast<float>(rope.low_freq_factor)) /
                         static_cast<float>(rope.high_freq_factor - rope.low_freq_factor);
    const float smoothed = (1.0f - smooth) * llama / static_cast<float>(factor) + smooth * llama;
    const bool medium = !(wavelen < high_wl) && !(wavelen > low_wl);
    f = medium ? smoothed : llama;
  }
}

void Yarn(const RopeConfig& rope, int64_t max_pos, int64_t dim, std::vector<float>& inv, float* scaling) {
  const double base = rope.theta;
  const double orig = static_cast<double>(rope.original_max_position_embeddings.value_or(max_pos));
  const double factor = rope.factor;
  if (rope.attention_factor.has_value()) {
    *scaling = static_cast<float>(*rope.attention_factor);
  } else if (rope.mscale.value_or(0) != 0 && rope.mscale_all_dim.value_or(0) != 0) {
    // transformers divides the two python floats.
    const auto ms = [&](double m) { return factor <= 1 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; };
    *scaling = static_cast<float>(ms(*rope.mscale) / ms(*rope.mscale_all_dim));
  } else {
    *scaling = factor <= 1 ? 1.0f : static_cast<float>(0.1 * std::log(factor) + 1.0);
  }
  const double beta_fast = rope.beta_fast != 0 ? rope.beta_fast : 32;
  const double beta_slow = rope.beta_slow != 0 ? rope.beta_slow : 1;
  const auto correction_dim = [&](double rot) {
    return (static_cast<double>(dim) * std::log(orig / (rot * 2 * kPi))) / (2 * std::log(base));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (rope.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  const std::vector<float> pos = PosFreqs(base, dim);
  for (size_t j = 0; j < pos.size(); ++j) {
    const float extrap = Reciprocal(pos[j]);
    const float interp = Reciprocal(static_cast<float>(factor) * pos[j]);
    float ramp = (static_cast<float>(j) - static_cast<float>(low)) / static_cast<float>(high - low);
    ramp = std::clamp(ramp, 0.0f, 1.0f);
    const float ef = 1.0f - ramp;
    inv[j] = interp * (1.0f - ef) + extrap * ef;
  }
}

}  // namespace

absl::StatusOr<RopeTables> ComputeRopeTables(const ModelConfig& config, std::optional<int64_t> seq_len) {
  const RopeConfig& rope = config.rope;
  const int64_t dim = static_cast<int64_t>(static_cast<double>(config.head_dim) * rope.partial_rotary_factor);
  if (dim <= 0 || dim % 2 != 0 || dim > config.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("rope: rotary dim ", dim, " (head_dim ", config.head_dim,
                                                   " x partial_rotary_factor ", rope.partial_rotary_factor,
                                                   ") must be positive, even and <= head_dim"));
  }
  RopeTables t;
  switch (rope.type) {
    case RopeType::kDefault:
      t.inv_freq = DefaultInvFreq(rope.theta, dim);
      break;
    case RopeType::kLinear:
      t.inv_freq = DefaultInvFreq(rope.theta, dim);
      for (float& f : t.inv_freq) f /= static_cast<float>(rope.factor);
      break;
    case RopeType::kDynamic: {
      const double max_pos = static_cast<double>(config.max_position_embeddings);
      const double len = std::max(static_cast<double>(seq_len.value_or(config.max_position_embeddings)), max_pos);
      const double base = rope.theta * std::pow((rope.factor * len / max_pos) - (rope.factor - 1),
                                                static_cast<double>(dim) / static_cast<double>(dim - 2));
      t.inv_freq = DefaultInvFreq(base, dim);
      break;
    }
    case RopeType::kLlama3:
      t.inv_freq = DefaultInvFreq(rope.theta, dim);
      Llama3(rope, config.max_position_embeddings, t.inv_freq);
      break;
    case RopeType::kYarn:
      t.inv_freq.resize(static_cast<size_t>(dim / 2));
      Yarn(rope, config.max_position_embeddings, dim, t.inv_freq, &t.attention_scaling);
      break;
  }
  return t;
}

absl::StatusOr<RotaryEmbedding> RotaryEmbedding::Create(const ModelConfig& config) {
  RotaryEmbedding r;
  r.config_ = config;
  auto tables = ComputeRopeTables(config);
  if (!tables.ok()) return tables.status();
  r.tables_ = std::move(*tables);
  return r;
}

absl::Status RotaryEmbedding::Apply(kernels::Backend& backend, const BatchPlan& plan,
                                    kernels::TensorView x) const {
  const bool dynamic = config_.rope.type == RopeType::kDynamic;
  if (!dynamic || plan.max_kv_len <= config_.max_position_embeddings) {
    return backend.Rope(x, plan.positions, tables_.inv_freq, tables_.attention_scaling);
  }
  for (size_t s = 0; s < plan.num_seqs(); ++s) {
    const int32_t b = plan.query_start[s], e = plan.query_start[s + 1];
    auto tables = ComputeRopeTables(config_, plan.kv_len[s]);
    if (!tables.ok()) return tables.status();
    absl::Status st = backend.Rope(x.Rows(b, e - b),
                                   std::span<const int32_t>(plan.positions).subspan(static_cast<size_t>(b), static_cast<size_t>(e - b)),
                                   tables->inv_freq, tables->attention_scaling);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace kiln::engine
