// Request: one Generate request's state inside a model's step loop, and BuildRequest, which
// validates and tokenizes a GenerateRequest into one on the submitting thread.
//
// Thread-safety: BuildRequest is thread-safe (it only reads the tokenizer and the limits).
// A Request is owned by the step loop once submitted.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/runtime/adapter_cache.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/engine_options.h"
#include "engine/sample/sampler.h"
#include "engine/sample/stop_checker.h"
#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine {

class LoraWeights;

struct Request {
  std::string id;
  std::shared_ptr<GenerateStream> stream;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> generated_ids;
  int32_t max_new_tokens = 0;
  std::optional<sample::Sampler> sampler;
  std::optional<sample::StopChecker> stop_checker;
  std::optional<tokenizer::StreamingDetokenizer> detokenizer;
  bool want_logprobs = false;
  std::optional<absl::Time> deadline;

  std::string adapter;     // "" = base model (metrics label, prefix-cache root)
  // The adapter's device weights while the request lives (empty Handle: base model).
  AdapterCache::Handle adapter_handle;
  const LoraWeights* lora = nullptr;  // what the forward applies (from adapter_handle)
  // Set when the adapter load failed: the step loop ends the request with it.
  std::optional<absl::Status> adapter_error;
  std::string cache_salt;  // per-tenant prefix-cache isolation

  // Step-loop bookkeeping.
  std::vector<int32_t> tokens;  // prompt + generated: what the KV cache must come to hold
  std::vector<int32_t> blocks;  // KV block table (position p lives in blocks[p / block_size])
  std::vector<uint64_t> block_hashes;  // prefix-cache hash of each leading full, computed block
  uint64_t root_hash = 0;
  int32_t num_computed = 0;     // tokens of `tokens` whose KV is in the cache
  int32_t cached_prompt_tokens = 0;  // prompt tokens the prefix cache served at first admission
  bool admitted_once = false;
  int32_t num_preemptions = 0;
  // A chunk the stream refused (buffer full): the request pauses until it is delivered or the
  // stall timeout ends it.
  std::optional<GenerateChunk> pending;
  std::optional<absl::Time> stalled_since;
  absl::Time submitted_at;
  std::optional<absl::Time> admitted_at;
  std::optional<absl::Time> first_token_at;
  std::optional<absl::Time> last_token_at;

  // Tokens the cache will hold when this request ends (what its blocks must cover).
  int64_t MaxTokens() const { return static_cast<int64_t>(prompt_ids.size()) + max_new_tokens; }
};

// What BuildRequest needs to know about the model.
struct RequestContext {
  const tokenizer::Tokenizer* tokenizer = nullptr;
  const EngineLimits* limits = nullptr;
  const sample::GenerationDefaults* generation_defaults = nullptr;
  std::span<const int32_t> eos_token_ids;
  int64_t vocab_size = 0;      // the model's output vocabulary
  int64_t max_seq_len = 0;     // prompt + generated
};

// Validates `request` and prepares its state. INVALID_ARGUMENT naming the field and the limit
// for: no prompt or both prompts, a prompt over max_prompt_bytes (checked before tokenizing),
// an empty prompt, token ids outside [0, vocab), more than max_prompt_tokens tokens, prompt +
// max_new_tokens beyond max_total_tokens or the model's max_seq_len, and any bad sampling,
// stopping or logprob value (engine/sample).
absl::StatusOr<std::unique_ptr<Request>> BuildRequest(GenerateRequest request,
                                                      const RequestContext& context);

}  // namespace kiln::engine
