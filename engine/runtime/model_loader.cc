#include "engine/runtime/model_loader.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "engine/io/checkpoint.h"
#include "engine/io/json_util.h"
#include "engine/io/path_util.h"
#include "engine/model/causal_lm.h"
#include "engine/model/generation_config.h"
#include "engine/model/model_config.h"
#include "engine/quant/bnb_config.h"
#include "engine/runtime/placement_glue.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine {
namespace {

constexpr int64_t kDefaultKvCacheBytes = int64_t{512} << 20;

using Stage = LoadProgressEvent::Stage;

// INVALID_ARGUMENT / UNIMPLEMENTED for bad options; the validated bitsandbytes config, if any.
absl::StatusOr<std::optional<quant::BnbQuantConfig>> CheckOptions(const LoadModelOptions& o) {
  if (o.model.empty()) return absl::InvalidArgumentError("model: must not be empty");
  if (o.trust_remote_code) {
    return absl::InvalidArgumentError(
        "trust_remote_code: kiln never runs code from a checkpoint (auto_map is ignored); "
        "must be false");
  }
  if (o.other_quantization_requested) {
    return absl::UnimplementedError(
        "quantization: only bitsandbytes (load_in_4bit / load_in_8bit) can quantize on load; GPTQ and AWQ "
        "need a pre-quantized checkpoint (load it without a quantization option)");
  }
  std::optional<quant::BnbQuantConfig> bnb;
  if (o.bitsandbytes.has_value()) {
    KILN_ASSIGN_OR_RETURN(bnb, quant::ValidateBitsAndBytes(*o.bitsandbytes));
  }
  if (!o.adapter.empty()) {
    return absl::UnimplementedError("adapter: LoRA adapters are not supported by this build yet");
  }
  static constexpr std::string_view kAttn[] = {"", "eager", "sdpa", "flash_attention_2"};
  if (std::find(std::begin(kAttn), std::end(kAttn), o.attn_implementation) == std::end(kAttn)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attn_implementation: must be one of eager, sdpa, flash_attention_2; got \"",
        o.attn_implementation.substr(0, 64), "\""));
  }
  if (o.max_seq_len < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_seq_len: must be >= 0, got ", o.max_seq_len));
  }
  if (o.kv_cache_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_cache_bytes: must be >= 0, got ", o.kv_cache_bytes));
  }
  return bnb;
}

// Parameters of the model as the checkpoint stores them (float tensors), for ModelInfo when
// quantization makes weight bytes / dtype size meaningless.
int64_t CheckpointParameters(const Checkpoint& checkpoint) {
  int64_t total = 0;
  for (const std::string& name : checkpoint.TensorNames()) {
    auto ref = checkpoint.Find(name);
    if (!ref.has_value() || !kernels::IsFloatingPoint(ref->info->dtype)) continue;
    int64_t numel = 1;
    for (int64_t d : ref->info->shape) numel *= d;
    total += numel;
  }
  return total;
}

WeightDType ToWeightDType(kernels::DType t) {
  switch (t) {
    case kernels::DType::kF16: return WeightDType::kFloat16;
    case kernels::DType::kBF16: return WeightDType::kBFloat16;
    default: return WeightDType::kFloat32;
  }
}

std::string RequestedDTypeName(WeightDType t) {
  switch (t) {
    case WeightDType::kAuto: return "auto";
    case WeightDType::kFloat32: return "float32";
    case WeightDType::kFloat16: return "float16";
    case WeightDType::kBFloat16: return "bfloat16";
  }
  return "auto";
}

sample::GenerationDefaults DefaultsFrom(const std::optional<GenerationConfig>& g) {
  sample::GenerationDefaults d;
  if (!g.has_value()) return d;
  d.do_sample = g->do_sample;
  if (g->temperature) d.temperature = static_cast<float>(*g->temperature);
  if (g->top_k) d.top_k = static_cast<int32_t>(std::min<int64_t>(*g->top_k, INT32_MAX));
  if (g->top_p) d.top_p = static_cast<float>(*g->top_p);
  if (g->min_p) d.min_p = static_cast<float>(*g->min_p);
  if (g->repetition_penalty) d.repetition_penalty = static_cast<float>(*g->repetition_penalty);
  return d;
}

// KV cache (the pool engine/kv manages): fp32 K and V per layer. The budget is LoadModel's
// kv_cache_bytes when given (exactly what the caller asked for; a request that cannot fit it
// is refused at Submit), else enough for max_running full-length sequences capped at
// kDefaultKvCacheBytes — but never less than one full-length sequence, so every request the
// model admits can run (preemption shares the rest). Computed from the config alone so its
// bytes can be reserved before anything is allocated.
struct KvPlan {
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int64_t bytes = 0;
};

absl::StatusOr<KvPlan> PlanKvCache(const ModelConfig& config, const LoadModelOptions& options,
                                   const EngineLimits& limits, int64_t max_seq_len) {
  const int32_t kv_block_size = std::max(1, limits.kv_block_size_tokens);
  const int32_t max_running = std::max(1, limits.max_running_requests);
  const int64_t bytes_per_token =
      2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 4;
  const int64_t bytes_per_block = bytes_per_token * kv_block_size;
  const int64_t blocks_per_sequence = (max_seq_len + kv_block_size - 1) / kv_block_size;
  int64_t num_blocks = options.kv_cache_bytes / bytes_per_block;
  if (options.kv_cache_bytes == 0) {
    const int64_t wanted = blocks_per_sequence * max_running;
    num_blocks = std::max(std::min(kDefaultKvCacheBytes / bytes_per_block, wanted),
                          blocks_per_sequence);
  }
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv_cache_bytes: ", options.kv_cache_bytes,
                                                   " is less than one KV block (",
                                                   bytes_per_block, " bytes)"));
  }
  KvPlan plan;
  plan.num_blocks = static_cast<int32_t>(std::min<int64_t>(num_blocks, INT32_MAX));
  plan.block_size = kv_block_size;
  plan.bytes = int64_t{plan.num_blocks} * bytes_per_block;
  return plan;
}

// Reads the tokenizer files through the containment check (a tokenizer.json symlinked out of
// the model's folder is refused like any other file) and builds the tokenizer from them.
absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> LoadTokenizer(const std::string& dir,
                                                                     const std::string& root,
                                                                     const EngineLimits& limits) {
  const size_t max_bytes = static_cast<size_t>(limits.max_json_bytes);
  auto read = [&](std::string_view name, bool required) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::string> path = ResolveFileInside(dir, name, root, name);
    if (!path.ok()) {
      if (!required && path.status().code() == absl::StatusCode::kNotFound) return std::string();
      return path.status();
    }
    return ReadSmallFile(*path, name, max_bytes);
  };
  absl::StatusOr<std::string> tokenizer_json = read("tokenizer.json", /*required=*/true);
  if (!tokenizer_json.ok()) {
    if (tokenizer_json.status().code() == absl::StatusCode::kNotFound) {
      return absl::InvalidArgumentError(
          "tokenizer.json: missing; kiln needs a fast-tokenizer tokenizer.json next to the "
          "weights (save it with transformers' tokenizer.save_pretrained)");
    }
    return tokenizer_json.status();
  }
  KILN_ASSIGN_OR_RETURN(std::string tokenizer_config, read("tokenizer_config.json", false));
  KILN_ASSIGN_OR_RETURN(std::string model_config, read("config.json", false));
  tokenizer::TokenizerLimits tokenizer_limits;
  tokenizer_limits.max_json_bytes = max_bytes;
  tokenizer_limits.max_json_depth = limits.max_json_depth;
  tokenizer_limits.max_vocab_size = static_cast<size_t>(limits.max_vocab_size);
  return tokenizer::Tokenizer::FromJson(*tokenizer_json, tokenizer_config, model_config,
                                        tokenizer_limits);
}

// Makes the ledger's `kind` reservations on every device of `backends` equal what was really
// allocated there (`actual`, by kernels device; devices absent from it hold 0).
absl::Status TrueUp(placement::MemoryLedger& ledger, std::vector<placement::Reservation>* held,
                    const DeviceBackends& backends, placement::MemoryKind kind, const std::string& owner,
                    const std::vector<DeviceBytes>& actual) {
  for (const DeviceBytes& d : actual) {
    if (d.bytes > 0 && !PlannerDeviceOf(backends, d.device).has_value()) {
      return absl::InternalError(absl::StrCat("memory on ", kernels::DeviceName(d.device), " index ", d.device.index,
                                              " belongs to no planner device"));
    }
  }
  for (const auto& [device, backend] : backends) {
    int64_t bytes = 0;
    for (const DeviceBytes& d : actual) {
      if (d.device == backend->device()) bytes += static_cast<int64_t>(d.bytes);
    }
    KILN_RETURN_IF_ERROR(ReserveExactly(ledger, held, device, kind, owner, bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadedModel> LoadResidentModel(
    const LoadModelOptions& options, const ModelStore& store, const EngineLimits& limits,
    kernels::Backend& backend, const std::function<void(const LoadProgressEvent&)>& progress,
    placement::MemoryLedger* ledger) {
  return LoadResidentModel(options, store, limits, DeviceBackends{{placement::Device::Cpu(), &backend}}, progress,
                           ledger);
}

absl::StatusOr<LoadedModel> LoadResidentModel(
    const LoadModelOptions& options, const ModelStore& store, const EngineLimits& limits,
    const DeviceBackends& backends, const std::function<void(const LoadProgressEvent&)>& progress,
    placement::MemoryLedger* ledger) {
  KILN_RETURN_IF_ERROR(ValidateDeviceBackends(backends));
  // The default backend (LoadCausalLm's; everything when one device): the host CPU's if
  // listed, else the only or first entry.
  kernels::Backend& backend =
      *(backends.count(placement::Device::Cpu()) ? backends.at(placement::Device::Cpu()) : backends.begin()->second);
  std::vector<placement::Device> executable;
  for (const auto& [device, unused] : backends) executable.push_back(device);
  KILN_ASSIGN_OR_RETURN(std::optional<quant::BnbQuantConfig> bnb, CheckOptions(options));
  KILN_ASSIGN_OR_RETURN(PlacementOptions placement_options, ParsePlacementOptions(options));
  // Without the engine's ledger, this load is accounted in its own (declared before the
  // reservations so they are returned before it goes away).
  std::unique_ptr<placement::MemoryLedger> own_ledger;
  if (ledger == nullptr) {
    KILN_ASSIGN_OR_RETURN(own_ledger, placement::MemoryLedger::Create(DeviceInventory(limits)));
    ledger = own_ledger.get();
  }
  std::vector<placement::Reservation> reservations;  // released on every error return
  const std::string served_name = options.served_name.empty() ? options.model : options.served_name;
  auto report = [&](Stage stage, std::string message) {
    if (progress) progress(LoadProgressEvent{.stage = stage, .message = std::move(message)});
  };

  report(Stage::kResolving, absl::StrCat("resolving ", options.model));
  KILN_ASSIGN_OR_RETURN(ResolvedModel resolved, store.Resolve(options.model, options.revision));
  if (resolved.has_adapter_config) {
    return absl::UnimplementedError(absl::StrCat(
        "model: \"", options.model,
        "\" is a PEFT adapter (adapter_config.json); adapters are not supported by this build yet"));
  }
  const std::string& dir = resolved.dir;
  const std::string& root = resolved.containment_root;

  report(Stage::kReadingConfig, "reading config.json, tokenizer and safetensors headers");
  ModelConfigLimits config_limits;
  config_limits.json.max_bytes = static_cast<size_t>(std::min<int64_t>(limits.max_json_bytes, 4 << 20));
  config_limits.json.max_depth = limits.max_json_depth;
  config_limits.max_vocab_size = limits.max_vocab_size;
  KILN_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir, config_limits, root));
  KILN_ASSIGN_OR_RETURN(std::optional<GenerationConfig> generation, LoadGenerationConfig(dir, root));
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<const tokenizer::Tokenizer> tok,
                        LoadTokenizer(dir, root, limits));
  // No token id the tokenizer can produce may reach past the embedding rows (A12).
  if (static_cast<int64_t>(tok->id_bound()) > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer.json: produces ids up to ", tok->id_bound() - 1,
        " but config.json vocab_size is ", config.vocab_size));
  }
  CheckpointLimits checkpoint_limits;
  checkpoint_limits.safetensors.max_tensors = static_cast<size_t>(limits.max_tensors_per_file);
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint,
                        Checkpoint::Open(dir, checkpoint_limits, root));
  KILN_ASSIGN_OR_RETURN(kernels::DType dtype,
                        ResolveDType(RequestedDTypeName(options.dtype), config, checkpoint.get()));

  report(Stage::kPlanning, "planning the device map");
  KILN_ASSIGN_OR_RETURN(ModelPlacement placed,
                        PlanModelPlacement(config, dtype, bnb, placement_options, FreeInventory(*ledger),
                                           checkpoint.get(), executable));
  int64_t max_seq_len = config.max_position_embeddings;
  if (options.max_seq_len > 0) {
    if (options.max_seq_len > config.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_seq_len: ", options.max_seq_len, " exceeds the model's max_position_embeddings ",
          config.max_position_embeddings));
    }
    max_seq_len = options.max_seq_len;
  }
  max_seq_len = std::min(max_seq_len, limits.max_total_tokens);
  KILN_ASSIGN_OR_RETURN(KvPlan kv_plan, PlanKvCache(config, options, limits, max_seq_len));

  // Reserve before allocating: a model that cannot fit is refused here, with the ledger's
  // bytes requested/available, before a weight is read.
  KILN_ASSIGN_OR_RETURN(reservations, ReservePlanned(*ledger, placed.plan, served_name));
  // Each layer's K/V lives on its layer's device (one device: all of it there).
  const bool split = backends.size() > 1;
  const placement::Device single_device = backends.begin()->first;
  std::map<placement::Device, int64_t> kv_planned;
  if (split) {
    const std::vector<placement::Device> layer_devices = LayerDevices(placed.layout, placed.plan);
    const int64_t per_layer = config.num_hidden_layers > 0 ? kv_plan.bytes / config.num_hidden_layers : 0;
    for (const placement::Device& d : layer_devices) kv_planned[d] += per_layer;
  } else {
    kv_planned[single_device] = kv_plan.bytes;
  }
  for (const auto& [device, bytes] : kv_planned) {
    KILN_RETURN_IF_ERROR(ReserveExactly(*ledger, &reservations, device, placement::MemoryKind::kKv, served_name, bytes));
  }

  LoadProgressEvent weights{.stage = Stage::kLoadingWeights, .message = "loading weights"};
  weights.bytes_total = static_cast<int64_t>(checkpoint->total_tensor_bytes());
  weights.tensors_total = static_cast<int32_t>(checkpoint->num_tensors());
  if (progress) progress(weights);
  LoadOptions load_options{.dtype = dtype};
  load_options.bitsandbytes = bnb;
  if (split) load_options.tensor_backend = TensorBackends(placed.plan, backends);
  load_options.progress = [&](const LoadProgress& p) {
    weights.message = p.tensor;
    weights.tensors_done = static_cast<int32_t>(p.tensors_done);
    weights.tensors_total = static_cast<int32_t>(p.tensors_total);
    weights.bytes_done = static_cast<int64_t>(p.bytes_done);
    weights.bytes_total = static_cast<int64_t>(p.bytes_total);
    if (progress) progress(weights);
  };
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<CausalLm> model,
                        LoadCausalLm(config, *checkpoint, load_options, backend));
  const int64_t checkpoint_parameters = CheckpointParameters(*checkpoint);
  checkpoint.reset();  // weights were copied into backend memory; drop the maps
  // The plan counts what transformers counts (4-bit = half a byte per weight); the model also
  // holds quantization state (absmax, SCB), so the ledger gets the real figure now.
  KILN_RETURN_IF_ERROR(TrueUp(*ledger, &reservations, backends, placement::MemoryKind::kWeights, served_name,
                              model->weight_bytes_by_device()));

  KILN_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> kv,
                        model->CreateKvCache({.num_blocks = kv_plan.num_blocks, .block_size = kv_plan.block_size}));
  KILN_RETURN_IF_ERROR(TrueUp(*ledger, &reservations, backends, placement::MemoryKind::kKv, served_name,
                              kv->bytes_by_device()));

  report(Stage::kWarmingUp, "warm-up forward pass");
  {
    const int32_t token = 0;
    const int32_t block = 0;
    ForwardBatch batch;
    batch.sequences.push_back({.token_ids = std::span<const int32_t>(&token, 1),
                               .start_pos = 0,
                               .block_table = std::span<const int32_t>(&block, 1)});
    ForwardOutput out;
    KILN_RETURN_IF_ERROR(model->Forward(batch, *kv, &out));
  }

  std::vector<int32_t> eos;
  const std::vector<int64_t>& eos64 = generation.has_value() && !generation->eos_token_ids.empty()
                                          ? generation->eos_token_ids
                                          : config.eos_token_ids;
  for (int64_t id : eos64) eos.push_back(static_cast<int32_t>(id));

  LoadedModel loaded;
  ModelInfo& info = loaded.info;
  info.served_name = served_name;
  info.model = options.model;
  info.revision = resolved.revision;
  info.architecture = std::string(ArchitectureName(config.architecture));
  info.state = ModelState::kReady;
  info.dtype = ToWeightDType(dtype);
  info.device_map = HfDeviceMap(placed.plan);
  info.weight_bytes = static_cast<int64_t>(model->weight_bytes());
  info.num_parameters = info.weight_bytes / static_cast<int64_t>(kernels::DTypeSize(dtype));
  if (bnb.has_value()) {
    info.quantization = bnb->MethodName();  // "nf4", "fp4" or "llm_int8", as transformers names it
    info.num_parameters = checkpoint_parameters;
  }
  info.max_seq_len = max_seq_len;
  info.vocab_size = config.vocab_size;
  info.kv_cache_bytes = static_cast<int64_t>(kv->bytes());
  info.kv_block_size_tokens = kv->block_size();
  info.kv_num_blocks = kv->num_blocks();
  info.prefix_caching = !options.disable_prefix_caching;
  info.pinned = options.pin;
  info.eos_token_ids = eos;

  RuntimeParts& parts = loaded.parts;
  parts.served_name = info.served_name;
  parts.model = std::move(model);
  parts.kv_cache = std::move(kv);
  parts.tokenizer = std::move(tok);
  parts.generation_defaults = DefaultsFrom(generation);
  parts.eos_token_ids = std::move(eos);
  parts.max_seq_len = max_seq_len;
  parts.max_running = std::max(1, limits.max_running_requests);
  parts.enable_prefix_caching = !options.disable_prefix_caching;
  if (own_ledger == nullptr) loaded.reservations = std::move(reservations);
  return loaded;
}

}  // namespace kiln::engine
