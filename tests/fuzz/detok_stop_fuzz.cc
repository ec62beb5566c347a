// Fuzz target: the streaming detokenizer + stop checker over random id sequences (reliability
// §4 targets 9 and 10), with the fixture tokenizers (llama_tiny: byte fallback; gpt2_tiny:
// byte-level). Input: [flags][stop strings...][ids as u16...]. Invariants:
//  - every delta is valid UTF-8; deltas + Flush == Decode(all ids) (short sequences);
//  - the stop checker's emitted text is valid UTF-8 and a prefix of the streamed text; without
//    a finish, emitted + Flush equals it; on a stop string, emitted + the stop is a prefix.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "engine/runtime/engine_options.h"
#include "engine/sample/sampling_params.h"
#include "engine/sample/stop_checker.h"
#include "engine/sample/utf8.h"
#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

std::unique_ptr<kiln::tokenizer::Tokenizer> Load(const char* model) {
  auto t = kiln::tokenizer::Tokenizer::FromDirectory(
      std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/" + model);
  if (!t.ok()) {
    std::fprintf(stderr, "cannot load fixture tokenizer %s\n", model);
    std::abort();
  }
  return std::move(*t);
}

bool StartsWith(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace s = kiln::engine::sample;
  static auto* llama = Load("llama_tiny").release();
  static auto* gpt2 = Load("gpt2_tiny").release();
  kiln::fuzz::FuzzInput in(data, size);
  const uint8_t flags = in.Byte();
  const kiln::tokenizer::Tokenizer& tok = (flags & 1) ? *gpt2 : *llama;
  const bool skip_special = (flags & 2) != 0;

  kiln::engine::StoppingOptions opts;
  for (int n = in.Byte() % 4; n > 0; --n) {
    std::string x = in.String(8);
    if (!x.empty() && s::IsValidUtf8(x)) opts.stop.push_back(x);
  }
  kiln::engine::EngineLimits limits;
  const int64_t vocab = static_cast<int64_t>(tok.id_bound());
  std::vector<int32_t> eos;
  if (flags & 4) eos.push_back(static_cast<int32_t>(in.Range(0, vocab - 1)));
  opts.min_new_tokens = (flags & 8) ? static_cast<int32_t>(in.Range(0, 8)) : 0;
  opts.max_new_tokens = 512;
  auto stopping = s::ResolveStopping(opts, limits, vocab, eos);
  KILN_FUZZ_CHECK(stopping.ok(), "%s", std::string(stopping.status().message()).c_str());

  std::vector<int32_t> ids;
  while (in.remaining() >= 2 && ids.size() < 400) {
    uint16_t v = in.Int<uint16_t>();
    // Mostly valid ids, some just out of range (must be dropped, never indexed).
    ids.push_back(static_cast<int32_t>(v % (vocab + 4)));
  }

  kiln::tokenizer::StreamingDetokenizer detok(&tok, skip_special);
  s::StopChecker stops(*stopping);
  std::string all_deltas;  // every delta of the detokenizer
  std::string streamed;    // the deltas the stop checker saw
  std::string emitted;     // what the stop checker released
  std::optional<kiln::engine::FinishReason> finish;
  std::string matched;
  for (int32_t id : ids) {
    auto delta = detok.Push(id);
    KILN_FUZZ_CHECK(delta.ok());
    KILN_FUZZ_CHECK(s::IsValidUtf8(*delta), "invalid UTF-8 delta");
    all_deltas += *delta;
    if (finish) continue;
    streamed += *delta;
    auto u = stops.Append(id, *delta);
    KILN_FUZZ_CHECK(s::IsValidUtf8(u.text));
    emitted += u.text;
    if (u.finish) {
      finish = u.finish;
      matched = u.matched_stop;
    }
  }
  auto tail = detok.Flush();
  KILN_FUZZ_CHECK(tail.ok() && s::IsValidUtf8(*tail));
  all_deltas += *tail;
  if (!finish) {
    emitted += stops.Flush();
    KILN_FUZZ_CHECK(emitted == streamed, "stop checker lost or changed text");
  } else {
    KILN_FUZZ_CHECK(StartsWith(streamed, emitted + matched),
                    "emitted text (+ stop) is not a prefix of the stream");
  }
  KILN_FUZZ_CHECK(s::IsValidUtf8(emitted));
  if (ids.size() < kiln::tokenizer::StreamingDetokenizer::kMaxHeldTokens) {
    auto whole = tok.Decode(ids, skip_special);
    KILN_FUZZ_CHECK(whole.ok());
    KILN_FUZZ_CHECK(*whole == all_deltas, "streamed text differs from Decode");
  }
  return 0;
}
