#include "server/proto_convert.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace kiln::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

v1::DType ToProto(engine::WeightDType dtype) {
  switch (dtype) {
    case engine::WeightDType::kAuto: return v1::DTYPE_AUTO;
    case engine::WeightDType::kFloat32: return v1::DTYPE_FLOAT32;
    case engine::WeightDType::kFloat16: return v1::DTYPE_FLOAT16;
    case engine::WeightDType::kBFloat16: return v1::DTYPE_BFLOAT16;
  }
  return v1::DTYPE_UNSPECIFIED;
}

v1::ModelState ToProto(engine::ModelState state) {
  switch (state) {
    case engine::ModelState::kLoading: return v1::MODEL_STATE_LOADING;
    case engine::ModelState::kReady: return v1::MODEL_STATE_READY;
    case engine::ModelState::kUnloading: return v1::MODEL_STATE_UNLOADING;
    case engine::ModelState::kEvicted: return v1::MODEL_STATE_EVICTED;
    case engine::ModelState::kFailed: return v1::MODEL_STATE_FAILED;
  }
  return v1::MODEL_STATE_UNSPECIFIED;
}

v1::AdapterState ToProto(engine::AdapterState state) {
  switch (state) {
    case engine::AdapterState::kLoading: return v1::ADAPTER_STATE_LOADING;
    case engine::AdapterState::kDevice: return v1::ADAPTER_STATE_DEVICE;
    case engine::AdapterState::kHost: return v1::ADAPTER_STATE_HOST;
    case engine::AdapterState::kFailed: return v1::ADAPTER_STATE_FAILED;
  }
  return v1::ADAPTER_STATE_UNSPECIFIED;
}

v1::LoadProgress::Stage ToProto(engine::LoadProgressEvent::Stage stage) {
  using Stage = engine::LoadProgressEvent::Stage;
  switch (stage) {
    case Stage::kResolving: return v1::LoadProgress::STAGE_RESOLVING;
    case Stage::kReadingConfig: return v1::LoadProgress::STAGE_READING_CONFIG;
    case Stage::kPlanning: return v1::LoadProgress::STAGE_PLANNING;
    case Stage::kLoadingWeights: return v1::LoadProgress::STAGE_LOADING_WEIGHTS;
    case Stage::kWarmingUp: return v1::LoadProgress::STAGE_WARMING_UP;
  }
  return v1::LoadProgress::STAGE_UNSPECIFIED;
}

v1::FinishReason ToProto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case engine::FinishReason::kStop: return v1::FINISH_REASON_STOP;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const engine::TokenLogprob& in, v1::TokenLogprob* out) {
  out->set_token_id(in.token_id);
  out->set_logprob(in.logprob);
  out->set_text(in.text);
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status ValidateRequestId(const std::string& request_id) {
  if (request_id.size() > 128) {
    return Invalid("request_id", absl::StrCat("length ", request_id.size(), " exceeds 128"));
  }
  for (char c : request_id) {
    if (c < 0x20 || c > 0x7e) return Invalid("request_id", "must be printable ASCII");
  }
  return absl::OkStatus();
}

absl::StatusOr<engine::GenerateRequest> ToEngineGenerateRequest(
    const v1::GenerateRequest& request) {
  if (request.model().empty()) return Invalid("model", "must not be empty");
  absl::Status id_status = ValidateRequestId(request.request_id());
  if (!id_status.ok()) return id_status;
  engine::GenerateRequest out;
  out.request_id = request.request_id();
  out.model = request.model();
  out.adapter = request.adapter();
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText:
      if (request.text().empty()) return Invalid("text", "prompt must not be empty");
      out.prompt_text = request.text();
      break;
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      if (ids.empty()) return Invalid("token_ids", "prompt must not be empty");
      for (int i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0) {
          return Invalid(absl::StrCat("token_ids.ids[", i, "]"),
                         absl::StrCat(ids[i], " is negative"));
        }
      }
      out.prompt_token_ids = std::vector<int32_t>(ids.begin(), ids.end());
      break;
    }
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return Invalid("prompt", "set either text or token_ids");
  }
  const v1::SamplingParams& s = request.sampling();
  if (s.has_temperature()) out.sampling.temperature = s.temperature();
  if (s.has_top_k()) out.sampling.top_k = s.top_k();
  if (s.has_top_p()) out.sampling.top_p = s.top_p();
  if (s.has_min_p()) out.sampling.min_p = s.min_p();
  if (s.has_repetition_penalty()) out.sampling.repetition_penalty = s.repetition_penalty();
  if (s.has_presence_penalty()) out.sampling.presence_penalty = s.presence_penalty();
  if (s.has_frequency_penalty()) out.sampling.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) out.sampling.seed = s.seed();
  if (s.has_do_sample()) out.sampling.do_sample = s.do_sample();
  const v1::StoppingCriteria& st = request.stopping();
  if (st.max_new_tokens() < 0) {
    return Invalid("stopping.max_new_tokens", absl::StrCat(st.max_new_tokens(), " is negative"));
  }
  if (st.min_new_tokens() < 0) {
    return Invalid("stopping.min_new_tokens", absl::StrCat(st.min_new_tokens(), " is negative"));
  }
  out.stopping.max_new_tokens = st.max_new_tokens();
  out.stopping.min_new_tokens = st.min_new_tokens();
  for (int i = 0; i < st.stop_size(); ++i) {
    if (st.stop(i).empty()) {
      return Invalid(absl::StrCat("stopping.stop[", i, "]"), "must not be empty");
    }
  }
  out.stopping.stop.assign(st.stop().begin(), st.stop().end());
  for (int i = 0; i < st.stop_token_ids_size(); ++i) {
    if (st.stop_token_ids(i) < 0) {
      return Invalid(absl::StrCat("stopping.stop_token_ids[", i, "]"),
                     absl::StrCat(st.stop_token_ids(i), " is negative"));
    }
  }
  out.stopping.stop_token_ids.assign(st.stop_token_ids().begin(), st.stop_token_ids().end());
  out.stopping.ignore_eos = st.ignore_eos();
  if (request.logprobs() < 0) {
    return Invalid("logprobs", absl::StrCat(request.logprobs(), " is negative"));
  }
  out.top_logprobs = request.logprobs();
  out.return_token_logprob = request.return_token_logprob();
  out.skip_special_tokens = request.skip_special_tokens();
  out.cache_salt = request.cache_salt();
  return out;
}

absl::StatusOr<engine::LoadModelOptions> ToEngineLoadOptions(const v1::LoadModelRequest& r) {
  if (r.model().empty()) return Invalid("model", "must not be empty");
  engine::LoadModelOptions out;
  out.model = r.model();
  out.revision = r.revision();
  out.served_name = r.served_name();
  switch (r.dtype()) {
    case v1::DTYPE_UNSPECIFIED:
    case v1::DTYPE_AUTO: out.dtype = engine::WeightDType::kAuto; break;
    case v1::DTYPE_FLOAT32: out.dtype = engine::WeightDType::kFloat32; break;
    case v1::DTYPE_FLOAT16: out.dtype = engine::WeightDType::kFloat16; break;
    case v1::DTYPE_BFLOAT16: out.dtype = engine::WeightDType::kBFloat16; break;
    default:  // an int outside the enum, sent by a newer or broken client
      return Invalid("dtype", absl::StrCat(static_cast<int>(r.dtype()), " is not a known DType"));
  }
  if (r.device_map().has_explicit_map()) {
    const auto& entries = r.device_map().explicit_map().entries();
    if (entries.empty()) return Invalid("device_map.explicit_map", "must not be empty");
    out.device_map_explicit.insert(entries.begin(), entries.end());
  } else {
    out.device_map_strategy = r.device_map().strategy();
  }
  out.max_memory.insert(r.max_memory().begin(), r.max_memory().end());
  switch (r.quantization().method_case()) {
    case v1::QuantizationConfig::kBitsandbytes: {
      const v1::BitsAndBytesConfig& b = r.quantization().bitsandbytes();
      engine::BitsAndBytesOptions bnb;
      bnb.load_in_8bit = b.load_in_8bit();
      bnb.load_in_4bit = b.load_in_4bit();
      if (b.has_llm_int8_threshold()) bnb.llm_int8_threshold = b.llm_int8_threshold();
      bnb.llm_int8_skip_modules.assign(b.llm_int8_skip_modules().begin(),
                                       b.llm_int8_skip_modules().end());
      bnb.llm_int8_enable_fp32_cpu_offload = b.llm_int8_enable_fp32_cpu_offload();
      bnb.bnb_4bit_compute_dtype = b.bnb_4bit_compute_dtype();
      bnb.bnb_4bit_quant_type = b.bnb_4bit_quant_type();
      bnb.bnb_4bit_use_double_quant = b.bnb_4bit_use_double_quant();
      bnb.bnb_4bit_quant_storage = b.bnb_4bit_quant_storage();
      out.bitsandbytes = std::move(bnb);
      break;
    }
    case v1::QuantizationConfig::kGptq:
    case v1::QuantizationConfig::kAwq:
    case v1::QuantizationConfig::kFp8:
      out.other_quantization_requested = true;
      break;
    case v1::QuantizationConfig::METHOD_NOT_SET:
      break;
  }
  out.attn_implementation = r.attn_implementation();
  out.trust_remote_code = r.trust_remote_code();
  out.adapter = r.adapter();
  out.pin = r.pin();
  out.keep_alive_ms = r.keep_alive_ms();
  if (r.max_seq_len() < 0) return Invalid("max_seq_len", absl::StrCat(r.max_seq_len(), " is negative"));
  if (r.kv_cache_bytes() < 0) {
    return Invalid("kv_cache_bytes", absl::StrCat(r.kv_cache_bytes(), " is negative"));
  }
  out.max_seq_len = r.max_seq_len();
  out.kv_cache_bytes = r.kv_cache_bytes();
  out.disable_prefix_caching = r.disable_prefix_caching();
  out.merge_adapter = r.merge_adapter();
  return out;
}

absl::StatusOr<engine::LoadAdapterOptions> ToEngineAdapterOptions(
    const v1::LoadAdapterRequest& r) {
  if (r.model().empty()) return Invalid("model", "must not be empty");
  if (r.adapter().empty()) return Invalid("adapter", "must not be empty");
  engine::LoadAdapterOptions out;
  out.model = r.model();
  out.adapter = r.adapter();
  out.revision = r.revision();
  out.served_name = r.served_name();
  out.ignore_base_model_mismatch = r.ignore_base_model_mismatch();
  out.pin = r.pin();
  return out;
}

void ToProto(const engine::ModelInfo& in, v1::ModelInfo* out) {
  out->set_served_name(in.served_name);
  out->set_model(in.model);
  out->set_revision(in.revision);
  out->set_architecture(in.architecture);
  out->set_state(ToProto(in.state));
  out->set_dtype(ToProto(in.dtype));
  out->set_quantization(in.quantization);
  out->mutable_device_map()->insert(in.device_map.begin(), in.device_map.end());
  out->set_num_parameters(in.num_parameters);
  out->set_weight_bytes(in.weight_bytes);
  out->set_max_seq_len(in.max_seq_len);
  out->set_vocab_size(in.vocab_size);
  out->set_kv_cache_bytes(in.kv_cache_bytes);
  out->set_kv_block_size_tokens(in.kv_block_size_tokens);
  out->set_kv_num_blocks(in.kv_num_blocks);
  out->set_pinned(in.pinned);
  out->set_default_adapter(in.default_adapter);
  out->set_load_duration_ms(in.load_duration_ms);
  out->set_error(in.error);
  out->mutable_eos_token_ids()->Add(in.eos_token_ids.begin(), in.eos_token_ids.end());
  out->set_prefix_caching(in.prefix_caching);
}

void ToProto(const engine::AdapterInfo& in, v1::AdapterInfo* out) {
  out->set_served_name(in.served_name);
  out->set_model(in.model);
  out->set_adapter(in.adapter);
  out->set_state(ToProto(in.state));
  out->set_rank(in.rank);
  out->set_alpha(in.alpha);
  for (const std::string& m : in.target_modules) out->add_target_modules(m);
  out->set_bytes(in.bytes);
  out->set_pinned(in.pinned);
  out->set_active_requests(in.active_requests);
  out->set_error(in.error);
}

void ToProto(const engine::LoadEvent& in, v1::LoadModelEvent* out) {
  if (const auto* p = std::get_if<engine::LoadProgressEvent>(&in)) {
    v1::LoadProgress* progress = out->mutable_progress();
    progress->set_stage(ToProto(p->stage));
    progress->set_message(p->message);
    progress->set_bytes_done(p->bytes_done);
    progress->set_bytes_total(p->bytes_total);
    progress->set_tensors_done(p->tensors_done);
    progress->set_tensors_total(p->tensors_total);
  } else {
    ToProto(std::get<engine::ModelInfo>(in), out->mutable_ready());
  }
}

void ToProto(const engine::TokenizeResult& in, v1::TokenizeResponse* out) {
  out->mutable_token_ids()->Add(in.token_ids.begin(), in.token_ids.end());
  for (const std::string& t : in.tokens) out->add_tokens(t);
}

void AppendChunk(engine::GenerateChunk chunk, v1::GenerateResponse* out) {
  out->mutable_text()->append(chunk.text);
  out->mutable_token_ids()->Add(chunk.token_ids.begin(), chunk.token_ids.end());
  for (const engine::TokenLogprobs& lp : chunk.logprobs) {
    v1::TokenLogprobs* p = out->add_logprobs();
    ToProto(lp.sampled, p->mutable_sampled());
    for (const engine::TokenLogprob& t : lp.top) ToProto(t, p->add_top());
  }
  if (chunk.finish.has_value()) {
    const engine::GenerateChunk::Finish& f = *chunk.finish;
    out->set_finish_reason(ToProto(f.reason));
    out->mutable_usage()->set_prompt_tokens(f.usage.prompt_tokens);
    out->mutable_usage()->set_completion_tokens(f.usage.completion_tokens);
    out->mutable_usage()->set_cached_prompt_tokens(f.usage.cached_prompt_tokens);
    out->mutable_timing()->set_queue_ms(f.timing.queue_ms);
    out->mutable_timing()->set_time_to_first_token_ms(f.timing.time_to_first_token_ms);
    out->mutable_timing()->set_total_ms(f.timing.total_ms);
    out->set_matched_stop(f.matched_stop);
  }
}

void FillServerInfo(const engine::EngineInfo& engine_info, const engine::EngineLimits& l,
                    const ServerLimits& server_limits, v1::ServerInfo* out) {
  out->set_cuda_built(engine_info.cuda_built);
  for (const engine::DeviceReport& d : engine_info.devices) {
    v1::DeviceInfo* p = out->add_devices();
    p->set_name(d.name);
    p->set_description(d.description);
    p->set_total_bytes(d.total_bytes);
    p->set_free_bytes(d.free_bytes);
    p->set_weight_bytes(d.weight_bytes);
    p->set_kv_cache_bytes(d.kv_cache_bytes);
    p->set_adapter_bytes(d.adapter_bytes);
    p->set_workspace_bytes(d.workspace_bytes);
    p->set_budget_bytes(d.budget_bytes);
  }
  for (const std::string& a : engine_info.architectures) out->add_architectures(a);
  v1::Limits* limits = out->mutable_limits();
  limits->set_max_request_bytes(server_limits.max_request_bytes);
  limits->set_max_prompt_bytes(l.max_prompt_bytes);
  limits->set_max_prompt_tokens(l.max_prompt_tokens);
  limits->set_max_new_tokens(l.max_new_tokens);
  limits->set_max_total_tokens(l.max_total_tokens);
  limits->set_max_stop_sequences(l.max_stop_sequences);
  limits->set_max_stop_sequence_bytes(l.max_stop_sequence_bytes);
  limits->set_max_logprobs(l.max_logprobs);
  limits->set_max_concurrent_streams(server_limits.max_concurrent_streams);
  limits->set_max_waiting_requests(l.max_waiting_requests);
  limits->set_max_stream_buffer_events(l.max_stream_buffer_events);
  limits->set_max_json_bytes(l.max_json_bytes);
  limits->set_max_json_depth(l.max_json_depth);
  limits->set_max_tensors_per_file(l.max_tensors_per_file);
  limits->set_max_vocab_size(l.max_vocab_size);
  limits->set_max_adapter_rank(l.max_adapter_rank);
  limits->set_max_loaded_models(l.max_loaded_models);
  limits->set_max_adapter_device_bytes(l.max_adapter_device_bytes);
  limits->set_max_resident_adapters(l.max_resident_adapters);
  limits->set_max_adapter_host_bytes(l.max_adapter_host_bytes);
  limits->set_cpu_memory_bytes(l.cpu_memory_bytes);
}

}  // namespace kiln::server
