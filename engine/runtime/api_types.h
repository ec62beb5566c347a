// The engine's request and result types: what server/ converts kiln.v1 messages to and
// from (server/proto_convert.*). Plain structs, no gRPC or protobuf. Field meanings follow
// proto/kiln/v1/kiln.proto; defaults that the engine resolves are left unset here.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace kiln::engine {

enum class WeightDType { kAuto, kFloat32, kFloat16, kBFloat16 };

struct BitsAndBytesOptions {
  bool load_in_8bit = false;
  bool load_in_4bit = false;
  std::optional<float> llm_int8_threshold;  // default 6.0
  std::vector<std::string> llm_int8_skip_modules;
  bool llm_int8_enable_fp32_cpu_offload = false;
  std::string bnb_4bit_compute_dtype;  // "" = float32
  std::string bnb_4bit_quant_type;     // "" = fp4
  bool bnb_4bit_use_double_quant = false;
  std::string bnb_4bit_quant_storage;  // "" = uint8
};

struct LoadModelOptions {
  std::string model;
  std::string revision;     // "" = main
  std::string served_name;  // "" = model
  WeightDType dtype = WeightDType::kAuto;
  // Either a strategy/device string ("" = server default) or an explicit module → device map.
  std::string device_map_strategy;
  std::map<std::string, std::string> device_map_explicit;
  std::map<std::string, std::string> max_memory;
  std::optional<BitsAndBytesOptions> bitsandbytes;
  bool other_quantization_requested = false;  // gptq/awq/fp8 on load: UNIMPLEMENTED for now
  std::string attn_implementation;
  bool trust_remote_code = false;
  std::string adapter;
  bool pin = false;
  int64_t keep_alive_ms = 0;
  int64_t max_seq_len = 0;
  int64_t kv_cache_bytes = 0;
  bool disable_prefix_caching = false;
  bool merge_adapter = false;  // fold `adapter` into the dense weights at load
};

struct LoadProgressEvent {
  enum class Stage { kResolving, kReadingConfig, kPlanning, kLoadingWeights, kWarmingUp };
  Stage stage = Stage::kResolving;
  std::string message;
  int64_t bytes_done = 0;
  int64_t bytes_total = 0;
  int32_t tensors_done = 0;
  int32_t tensors_total = 0;
};

enum class ModelState { kLoading, kReady, kUnloading, kEvicted, kFailed };

struct ModelInfo {
  std::string served_name;
  std::string model;
  std::string revision;
  std::string architecture;
  ModelState state = ModelState::kLoading;
  WeightDType dtype = WeightDType::kFloat32;  // resolved, never kAuto once loaded
  std::string quantization;
  std::map<std::string, std::string> device_map;
  int64_t num_parameters = 0;
  int64_t weight_bytes = 0;
  int64_t max_seq_len = 0;
  int64_t vocab_size = 0;
  int64_t kv_cache_bytes = 0;
  int64_t kv_block_size_tokens = 0;
  int64_t kv_num_blocks = 0;
  bool pinned = false;
  std::string default_adapter;
  int64_t load_duration_ms = 0;
  std::string error;
  std::vector<int32_t> eos_token_ids;
  bool prefix_caching = false;
};

// One event of a LoadModel stream: progress, or (last) the ready model.
using LoadEvent = std::variant<LoadProgressEvent, ModelInfo>;

struct UnloadResult {
  int64_t freed_bytes = 0;
  int32_t aborted_requests = 0;
};

struct LoadAdapterOptions {
  std::string model;
  std::string adapter;
  std::string revision;
  std::string served_name;
  bool ignore_base_model_mismatch = false;
  bool pin = false;
};

enum class AdapterState { kLoading, kDevice, kHost, kFailed };

struct AdapterInfo {
  std::string served_name;
  std::string model;
  std::string adapter;
  AdapterState state = AdapterState::kLoading;
  int32_t rank = 0;
  float alpha = 0;
  std::vector<std::string> target_modules;
  int64_t bytes = 0;
  bool pinned = false;
  int32_t active_requests = 0;
  std::string error;
};

struct SamplingOptions {
  std::optional<float> temperature;
  std::optional<int32_t> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<float> presence_penalty;
  std::optional<float> frequency_penalty;
  std::optional<uint64_t> seed;
  std::optional<bool> do_sample;
};

struct StoppingOptions {
  int32_t max_new_tokens = 0;  // 0 = server default
  int32_t min_new_tokens = 0;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
};

struct GenerateRequest {
  std::string request_id;  // always set by the server
  std::string model;
  std::string adapter;
  // Exactly one of these is the prompt.
  std::optional<std::string> prompt_text;
  std::optional<std::vector<int32_t>> prompt_token_ids;
  SamplingOptions sampling;
  StoppingOptions stopping;
  int32_t top_logprobs = 0;
  bool return_token_logprob = false;
  bool skip_special_tokens = false;
  std::string cache_salt;
  // Absolute deadline from the client; the engine stops work past it (DEADLINE_EXCEEDED).
  std::optional<absl::Time> deadline;
};

enum class FinishReason { kLength, kEos, kStop };

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0;
  std::string text;
};

struct TokenLogprobs {
  TokenLogprob sampled;
  std::vector<TokenLogprob> top;
};

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;
};

struct Timing {
  int64_t queue_ms = 0;
  int64_t time_to_first_token_ms = 0;
  int64_t total_ms = 0;
};

// One chunk of a Generate stream. Several chunks that piled up while a write was in flight
// are coalesced by the reactor. The last chunk carries `finish`.
struct GenerateChunk {
  std::string text;  // whole UTF-8 characters only
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprobs> logprobs;
  struct Finish {
    FinishReason reason = FinishReason::kLength;
    Usage usage;
    Timing timing;
    std::string matched_stop;
  };
  std::optional<Finish> finish;
};

struct TokenizeResult {
  std::vector<int32_t> token_ids;
  std::vector<std::string> tokens;
};

struct DeviceReport {
  std::string name;
  std::string description;
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;
  int64_t weight_bytes = 0;
  int64_t kv_cache_bytes = 0;
  int64_t adapter_bytes = 0;
  int64_t workspace_bytes = 0;
  int64_t budget_bytes = 0;
};

// A resident model's scheduler and KV state (Engine::GetModelStats): what tests assert at idle
// (free == total, nothing running or waiting) and what the metrics export.
struct ModelStats {
  int32_t running = 0;    // in the step's batch (incl. paused slow readers)
  int32_t waiting = 0;    // queued, incl. preempted ones
  int32_t in_flight = 0;  // submitted, stream not yet finished
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_free = 0;    // incl. evictable prefix-cache blocks
  int64_t kv_blocks_cached = 0;  // blocks holding reusable prefix content
  int64_t preemptions = 0;
  int64_t prefix_cache_queries = 0;  // prompt tokens looked up
  int64_t prefix_cache_hits = 0;     // prompt tokens served from the cache
  int64_t steps = 0;                 // forward passes run
};

struct EngineInfo {
  bool cuda_built = false;
  std::vector<DeviceReport> devices;
  std::vector<std::string> architectures;
};

}  // namespace kiln::engine
