// Fuzz target: sampling/stopping/logprob parameter resolution (ResolveSampling,
// ResolveStopping, ResolveLogprobs), test matrix B3. On success every resolved value is
// finite and within the documented limits, whatever the request and generation_config said.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "engine/runtime/engine_options.h"
#include "engine/sample/sampling_params.h"
#include "engine/sample/utf8.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using kiln::fuzz::FuzzInput;

template <typename T, typename F>
std::optional<T> Maybe(FuzzInput& in, F make) {
  if (!in.Bool()) return std::nullopt;
  return make();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace s = kiln::engine::sample;
  FuzzInput in(data, size);
  const int64_t vocab = in.Range(1, 1 << 18);

  kiln::engine::SamplingOptions req;
  req.temperature = Maybe<float>(in, [&] { return in.Float(); });
  req.top_k = Maybe<int32_t>(in, [&] { return in.Int<int32_t>(); });
  req.top_p = Maybe<float>(in, [&] { return in.Float(); });
  req.min_p = Maybe<float>(in, [&] { return in.Float(); });
  req.repetition_penalty = Maybe<float>(in, [&] { return in.Float(); });
  req.presence_penalty = Maybe<float>(in, [&] { return in.Float(); });
  req.frequency_penalty = Maybe<float>(in, [&] { return in.Float(); });
  req.seed = Maybe<uint64_t>(in, [&] { return in.Int<uint64_t>(); });
  req.do_sample = Maybe<bool>(in, [&] { return in.Bool(); });
  s::GenerationDefaults defaults;
  defaults.do_sample = Maybe<bool>(in, [&] { return in.Bool(); });
  defaults.temperature = Maybe<float>(in, [&] { return in.Float(); });
  defaults.top_k = Maybe<int32_t>(in, [&] { return in.Int<int32_t>(); });
  defaults.top_p = Maybe<float>(in, [&] { return in.Float(); });
  defaults.min_p = Maybe<float>(in, [&] { return in.Float(); });
  defaults.repetition_penalty = Maybe<float>(in, [&] { return in.Float(); });

  auto r = s::ResolveSampling(req, defaults, vocab);
  if (!r.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(r.status().message()));
  } else {
    KILN_FUZZ_CHECK(std::isfinite(r->temperature) && std::isfinite(r->top_p) &&
                    std::isfinite(r->min_p) && std::isfinite(r->repetition_penalty) &&
                    std::isfinite(r->presence_penalty) && std::isfinite(r->frequency_penalty));
    if (!r->greedy) {
      KILN_FUZZ_CHECK(r->temperature > 0 && r->temperature <= s::kMaxTemperature);
      // 0 only from generation_config.json (transformers accepts it: keeps one token).
      KILN_FUZZ_CHECK(r->top_p >= 0 && r->top_p <= 1);
      if (req.top_p.has_value()) KILN_FUZZ_CHECK(r->top_p > 0);
      KILN_FUZZ_CHECK(r->min_p >= 0 && r->min_p <= 1);
      KILN_FUZZ_CHECK(r->top_k >= 0 && r->top_k < vocab);
    }
    KILN_FUZZ_CHECK(r->repetition_penalty > 0 && r->repetition_penalty <= s::kMaxRepetitionPenalty);
  }

  kiln::engine::EngineLimits limits;
  limits.max_new_tokens = static_cast<int32_t>(in.Range(1, 1 << 20));
  limits.default_max_new_tokens = static_cast<int32_t>(in.Range(1, 1 << 20));
  limits.max_stop_sequences = static_cast<int32_t>(in.Range(0, 8));
  limits.max_stop_sequence_bytes = in.Range(0, 64);
  limits.max_logprobs = static_cast<int32_t>(in.Range(0, 64));
  kiln::engine::StoppingOptions stop;
  stop.max_new_tokens = in.Int<int32_t>();
  stop.min_new_tokens = in.Int<int32_t>();
  stop.ignore_eos = in.Bool();
  for (int n = in.Byte() % 12; n > 0; --n) stop.stop.push_back(in.String(80));
  for (int n = in.Byte() % 12; n > 0; --n) stop.stop_token_ids.push_back(in.Int<int32_t>());
  std::vector<int32_t> eos;
  for (int n = in.Byte() % 4; n > 0; --n) eos.push_back(in.Int<int32_t>());

  auto st = s::ResolveStopping(stop, limits, vocab, eos);
  if (!st.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(st.status().message()));
  } else {
    KILN_FUZZ_CHECK(st->max_new_tokens >= 1 && st->max_new_tokens <= limits.max_new_tokens);
    KILN_FUZZ_CHECK(st->min_new_tokens >= 0 && st->min_new_tokens <= st->max_new_tokens);
    KILN_FUZZ_CHECK(st->stop.size() <= static_cast<size_t>(limits.max_stop_sequences));
    for (const auto& x : st->stop) {
      KILN_FUZZ_CHECK(!x.empty() && static_cast<int64_t>(x.size()) <= limits.max_stop_sequence_bytes &&
                      s::IsValidUtf8(x));
    }
    for (const auto* ids : {&st->stop_token_ids, &st->eos_token_ids}) {
      KILN_FUZZ_CHECK(std::is_sorted(ids->begin(), ids->end()));
      KILN_FUZZ_CHECK(std::adjacent_find(ids->begin(), ids->end()) == ids->end());
      for (int32_t id : *ids) KILN_FUZZ_CHECK(id >= 0 && id < vocab, "id %d", id);
    }
    if (st->ignore_eos) KILN_FUZZ_CHECK(st->eos_token_ids.empty());
  }

  auto lp = s::ResolveLogprobs(in.Int<int32_t>(), in.Bool(), limits);
  if (!lp.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(lp.status().message()));
  } else {
    KILN_FUZZ_CHECK(lp->top_logprobs >= 0 && lp->top_logprobs <= limits.max_logprobs);
  }
  return 0;
}
