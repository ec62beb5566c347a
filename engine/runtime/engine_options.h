// EngineOptions: how the daemon configures the engine (model roots, limits, threads).
// Every limit here is enforced by the engine and reported by GetServerInfo.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace prometheus {
class Registry;
}

namespace kiln::engine {

struct EngineLimits {
  int64_t max_prompt_bytes = 1 << 20;      // checked before tokenizing
  int64_t max_prompt_tokens = 32768;
  int32_t default_max_new_tokens = 256;    // when a request leaves max_new_tokens at 0
  int32_t max_new_tokens = 8192;
  int64_t max_total_tokens = 65536;        // prompt + max_new_tokens
  int32_t max_stop_sequences = 16;
  int64_t max_stop_sequence_bytes = 256;   // each
  int32_t max_logprobs = 20;
  int32_t max_waiting_requests = 256;      // per model
  int32_t max_stream_buffer_events = 4096; // per stream, before the client counts as stalled
  int64_t max_json_bytes = 64ll << 20;     // any JSON file kiln parses (tokenizer.json is big)
  int32_t max_json_depth = 64;
  int64_t max_tensors_per_file = 1 << 20;
  int64_t max_vocab_size = 1 << 20;
  int32_t max_adapter_rank = 256;
  // LoRA adapter cache, per model (runtime/adapter_cache.h): device-resident adapters (bytes
  // and count) and parsed adapters kept in host memory after eviction from the device.
  int64_t max_adapter_device_bytes = int64_t{1} << 30;
  int32_t max_resident_adapters = 64;
  int64_t max_adapter_host_bytes = int64_t{4} << 30;
  int32_t max_loaded_models = 8;          // resident (ready or loading) models; LRU eviction beyond
  // Idle models (no request in flight) are evicted after this long without a request; 0 = never.
  // LoadModel's keep_alive_ms overrides it per model (negative = never).
  int64_t default_keep_alive_ms = 0;
  // Serving at load (engine/sched, engine/kv), per model.
  int32_t max_running_requests = 64;       // sequences in one step's batch (vLLM: 256 on GPUs)
  int32_t max_batched_tokens = 2048;       // new tokens in one step's batch (prefill chunks + decodes)
  bool enable_chunked_prefill = true;      // split long prompts over steps, mixed with decodes
  int32_t kv_block_size_tokens = 16;
  // A stream whose buffer stays full (the client stopped reading) this long is ended with
  // RESOURCE_EXHAUSTED; meanwhile its request pauses and nobody else waits for it.
  int64_t stream_stall_timeout_ms = 30000;
  // Bytes of host memory the CPU device offers to models (weights, KV, workspace): the "cpu"
  // entry of the device inventory the planner and the memory ledger start from. 0 = the
  // machine's physical memory (placement_glue.h CpuMemoryBudget).
  int64_t cpu_memory_bytes = 0;
  // Logical CPU devices (issue #7): entry i is the byte budget of accelerator i, a CPU backend
  // created with kernels::BackendOptions::logical_device = i + 1 that the planner sees as GPU
  // i (device_map/max_memory key "i"), so multi-device placement and execution run without a
  // GPU. Empty (the default): the inventory is the CPU alone. placement_glue.h DeviceInventory.
  std::vector<int64_t> logical_cpu_device_bytes;
  // CUDA devices (issue #7/#8): when kiln is built with CUDA and no logical CPU devices are
  // configured, every visible CUDA device i becomes accelerator i with a ledger budget of
  // min(free memory at startup, cuda_memory_percent % of total memory); the rest is left to the
  // CUDA context, cuBLASLt and fragmentation (vLLM's gpu_memory_utilization, in percent).
  // use_cuda = false serves from the CPU alone on a GPU machine.
  bool use_cuda = true;
  int32_t cuda_memory_percent = 90;
};

struct EngineOptions {
  // Directories under which `model` names resolve (tried in order).
  std::vector<std::string> model_roots;
  // The Hugging Face hub cache ("" = $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub).
  std::string hub_cache;
  std::vector<std::string> adapter_roots;
  EngineLimits limits;
  // How long UnloadModel(drain=true) lets in-flight requests finish before aborting them.
  double drain_timeout_s = 30;
  int num_control_threads = 2;  // loads and other slow I/O
  int num_compute_threads = 0;  // CPU backend threads; 0 = all cores
  // Where the engine registers its metrics (optional; the daemon passes its registry).
  std::shared_ptr<prometheus::Registry> metrics_registry;
};

}  // namespace kiln::engine
