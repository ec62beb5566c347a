// kilnd: the kiln model-serving daemon.
//
// Process concerns live here: flags and the --config file, signals, the ready file, model
// preloading and the drain/shutdown sequence (reliability.md §2.6). Everything else is in
// KilnServer. Flags are defined in this file (named after the binary) so --help lists them.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "engine/runtime/engine_factory.h"
#include "server/config.h"
#include "server/logger.h"
#include "server/metrics.h"
#include "server/preload.h"
#include "server/server.h"

namespace {
const kiln::server::ServerConfig kDefaults;
const kiln::server::GrpcLimits kGrpc;
const kiln::engine::EngineLimits kLimits;
}  // namespace

ABSL_FLAG(std::string, config, "",
          "JSON file with settings; keys are these flag names. Flags given on the command "
          "line win over the file.");
ABSL_FLAG(std::string, listen, kDefaults.listen, "gRPC address host:port (port 0 = ephemeral).");
ABSL_FLAG(std::string, metrics_listen, kDefaults.metrics_listen,
          "Prometheus /metrics address host:port; empty disables it.");
ABSL_FLAG(std::vector<std::string>, model_roots, {},
          "Comma-separated directories under which model names resolve.");
ABSL_FLAG(std::vector<std::string>, adapter_roots, {},
          "Comma-separated directories under which adapter ids resolve.");
ABSL_FLAG(std::string, hub_cache, "",
          "Hugging Face hub cache directory (default $HF_HUB_CACHE, $HF_HOME/hub, "
          "~/.cache/huggingface/hub).");
ABSL_FLAG(std::string, preload, "",
          "Comma-separated models loaded (with defaults) at start, or a JSON array of names "
          "and LoadModel option objects (see the config file); readiness stays NOT_SERVING "
          "until all are loaded, a failed preload exits non-zero.");
ABSL_FLAG(int64_t, drain_timeout_s, kDefaults.drain_timeout_s,
          "On SIGTERM/SIGINT, seconds in-flight RPCs get to finish before they are ended "
          "with UNAVAILABLE.");
ABSL_FLAG(std::string, log_format, "text", "Log line format: text or json.");
ABSL_FLAG(bool, log_prompts, false,
          "DEBUG ONLY: rpc_end log lines include the prompt text. Off by default: logs carry "
          "no prompt or generated text and never a token.");
ABSL_FLAG(bool, enable_reflection, true,
          "Serve gRPC server reflection (describes the API schema; see --auth_reflection).");
ABSL_FLAG(bool, auth_health, kDefaults.auth_health,
          "With token files: grpc.health.v1.Health needs an inference or admin token. Off by "
          "default: kubelet's native gRPC probes cannot send one.");
ABSL_FLAG(bool, auth_reflection, kDefaults.auth_reflection,
          "With token files: server reflection needs an inference or admin token.");
ABSL_FLAG(bool, print_config, false,
          "Print the effective config (defaults < --config file < flags) as JSON and exit 0.");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, atomically write {\"grpc_port\":N,\"metrics_port\":M,\"pid\":P} "
          "here (metrics_port 0 when disabled).");
ABSL_FLAG(std::string, admin_token_file, "",
          "File with admin bearer tokens, one per line (LoadModel, UnloadModel, "
          "LoadAdapter, UnloadAdapter). No token files = auth off.");
ABSL_FLAG(std::string, inference_token_file, "",
          "File with inference bearer tokens, one per line (all other RPCs; admin tokens "
          "are accepted too).");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM server certificate chain (enables TLS).");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for tls_cert_file.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle; when set, clients must present a certificate it signed (mTLS).");
ABSL_FLAG(int64_t, tls_reload_interval_s, kDefaults.tls_reload_interval_s,
          "Re-read and validate the TLS files this often (0 = only on SIGHUP); new "
          "connections get a rotated certificate, a bad file is refused and the previous "
          "certificate stays.");
ABSL_FLAG(std::string, tls_state_dir, "",
          "Private directory (0700) for kilnd's validated copies of the TLS files; default a "
          "fresh directory under $TMPDIR or /tmp, removed at exit. Kubernetes: an emptyDir "
          "with medium Memory.");
ABSL_FLAG(int32_t, num_control_threads, kDefaults.num_control_threads,
          "Engine threads for loads and other slow I/O.");
ABSL_FLAG(int32_t, num_compute_threads, kDefaults.num_compute_threads,
          "CPU backend threads; 0 = all cores.");
ABSL_FLAG(int64_t, max_prompt_bytes, kLimits.max_prompt_bytes,
          "Largest prompt text in bytes (checked before tokenizing).");
ABSL_FLAG(int64_t, max_prompt_tokens, kLimits.max_prompt_tokens, "Longest prompt in tokens.");
ABSL_FLAG(int32_t, default_max_new_tokens, kLimits.default_max_new_tokens,
          "max_new_tokens when a request leaves it 0.");
ABSL_FLAG(int32_t, max_new_tokens, kLimits.max_new_tokens, "Largest max_new_tokens accepted.");
ABSL_FLAG(int64_t, max_total_tokens, kLimits.max_total_tokens,
          "Largest prompt tokens + max_new_tokens.");
ABSL_FLAG(int32_t, max_stop_sequences, kLimits.max_stop_sequences,
          "Most stop strings per request.");
ABSL_FLAG(int64_t, max_stop_sequence_bytes, kLimits.max_stop_sequence_bytes,
          "Longest stop string in bytes.");
ABSL_FLAG(int32_t, max_logprobs, kLimits.max_logprobs, "Most top logprobs per token.");
ABSL_FLAG(int32_t, max_waiting_requests, kLimits.max_waiting_requests,
          "Queued requests per model before RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_stream_buffer_events, kLimits.max_stream_buffer_events,
          "Events buffered per stream before the client counts as stalled.");
ABSL_FLAG(int64_t, max_json_bytes, kLimits.max_json_bytes, "Largest JSON file kiln parses.");
ABSL_FLAG(int32_t, max_json_depth, kLimits.max_json_depth, "Deepest JSON nesting accepted.");
ABSL_FLAG(int64_t, max_tensors_per_file, kLimits.max_tensors_per_file,
          "Most tensors in one safetensors file.");
ABSL_FLAG(int64_t, max_vocab_size, kLimits.max_vocab_size, "Largest vocabulary accepted.");
ABSL_FLAG(int32_t, max_adapter_rank, kLimits.max_adapter_rank, "Largest LoRA rank accepted.");
ABSL_FLAG(int32_t, max_loaded_models, kLimits.max_loaded_models,
          "Most resident models; beyond it the least recently used idle unpinned one is evicted.");
ABSL_FLAG(int64_t, default_keep_alive_ms, kLimits.default_keep_alive_ms,
          "Evict a model idle this long (0 = never); LoadModel keep_alive_ms overrides it.");
ABSL_FLAG(int64_t, max_adapter_device_bytes, kLimits.max_adapter_device_bytes,
          "Per model: bytes of LoRA adapters kept on the device (idle ones are evicted LRU first).");
ABSL_FLAG(int32_t, max_resident_adapters, kLimits.max_resident_adapters,
          "Per model: LoRA adapters kept on the device.");
ABSL_FLAG(int64_t, max_adapter_host_bytes, kLimits.max_adapter_host_bytes,
          "Per model: bytes of evicted adapters kept parsed in host memory (0: none).");
ABSL_FLAG(std::vector<std::string>, logical_cpu_devices, {},
          "Comma-separated byte budgets of logical CPU devices: each is a separate CPU backend the "
          "device-map planner sees as device 0, 1, ... (multi-device placement without a GPU).");
ABSL_FLAG(int64_t, cpu_memory_bytes, kLimits.cpu_memory_bytes,
          "Bytes the CPU device offers to models (weights, KV); 0 = physical memory.");
ABSL_FLAG(bool, use_cuda, kLimits.use_cuda,
          "Serve from the visible CUDA devices (when built with CUDA and no --logical_cpu_devices); "
          "false: the CPU alone.");
ABSL_FLAG(int32_t, cuda_memory_percent, kLimits.cuda_memory_percent,
          "Percent of each CUDA device's total memory kiln may use (capped by the free memory at "
          "startup); the rest stays for the CUDA context and cuBLASLt.");
ABSL_FLAG(int32_t, max_running_requests, kLimits.max_running_requests,
          "Sequences batched together in one engine step, per model.");
ABSL_FLAG(int32_t, max_batched_tokens, kLimits.max_batched_tokens,
          "New tokens (prefill chunks + decodes) in one engine step, per model.");
ABSL_FLAG(bool, enable_chunked_prefill, kLimits.enable_chunked_prefill,
          "Split long prompts over several steps, mixed with decodes.");
ABSL_FLAG(int32_t, kv_block_size_tokens, kLimits.kv_block_size_tokens,
          "Tokens per paged KV block.");
ABSL_FLAG(int64_t, stream_stall_timeout_ms, kLimits.stream_stall_timeout_ms,
          "A client that stops reading for this long has its request cancelled.");
ABSL_FLAG(int64_t, max_receive_message_bytes, kGrpc.max_receive_message_bytes,
          "Largest gRPC request message.");
ABSL_FLAG(int64_t, max_send_message_bytes, kGrpc.max_send_message_bytes,
          "Largest gRPC response message.");
ABSL_FLAG(int64_t, max_metadata_bytes, kGrpc.max_metadata_bytes,
          "Largest request metadata (headers) size.");
ABSL_FLAG(int32_t, max_concurrent_streams, kGrpc.max_concurrent_streams,
          "HTTP/2 streams per client connection.");
ABSL_FLAG(int64_t, keepalive_time_s, kGrpc.keepalive_time_s,
          "Server keepalive ping interval on idle connections.");
ABSL_FLAG(int64_t, keepalive_timeout_s, kGrpc.keepalive_timeout_s,
          "Seconds to wait for a keepalive ack before closing.");
ABSL_FLAG(int64_t, min_ping_interval_s, kGrpc.min_ping_interval_s,
          "Client pings more frequent than this are strikes (2 strikes: GOAWAY).");
ABSL_FLAG(bool, permit_keepalive_without_calls, kGrpc.permit_keepalive_without_calls,
          "Allow client keepalive pings on connections without calls.");
ABSL_FLAG(int64_t, max_connection_age_s, kGrpc.max_connection_age_s,
          "Close connections after this age (load spreading); 0 = never.");
ABSL_FLAG(int64_t, max_connection_age_grace_s, kGrpc.max_connection_age_grace_s,
          "Grace for RPCs on an aged-out connection.");

namespace kiln::server {
namespace {

absl::StatusOr<ServerConfig> BuildConfig() {
  ServerConfig config;
  const std::string file = absl::GetFlag(FLAGS_config);
  if (!file.empty()) {
    absl::Status s = ApplyConfigFile(file, &config);
    if (!s.ok()) return s;
  }
  for (const std::string& key : ConfigKeys()) {
    if (!absl::flags_internal::WasPresentOnCommandLine(key)) continue;
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(key);
    if (flag == nullptr) return absl::InternalError(absl::StrCat("no flag for setting ", key));
    absl::Status s = ApplyConfigFlag(key, flag->CurrentValue(), &config);
    if (!s.ok()) return s;
  }
  absl::Status s = ValidateConfig(config);
  if (!s.ok()) return s;
  return config;
}

// Written to a temporary name then renamed, so readers never see a partial file.
absl::Status WriteReadyFile(const std::string& path, int grpc_port, int metrics_port) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"grpc_port\":" << grpc_port << ",\"metrics_port\":" << metrics_port
        << ",\"pid\":" << getpid() << "}\n";
    if (!out.good()) return absl::UnavailableError(absl::StrCat("ready_file: cannot write '", tmp, "'"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("ready_file: cannot rename to '", path, "'"));
  }
  return absl::OkStatus();
}

// A ready file left by a run that was SIGKILLed (or lost its node) names ports and a pid that
// are gone: remove it before anything slow, so nothing reads it as this run's readiness.
absl::Status RemoveStaleReadyFile(const std::string& path, Logger& logger) {
  if (std::remove(path.c_str()) == 0) {
    logger.Log(LogLevel::kWarning, "stale_ready_file_removed", {{"path", path}});
    return absl::OkStatus();
  }
  if (errno == ENOENT) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat("ready_file: cannot remove the stale '", path, "': ", std::strerror(errno)));
}

// Loads the preload models one by one; true when all became ready.
bool Preload(engine::Engine& engine, const std::vector<engine::LoadModelOptions>& models,
             Logger& logger) {
  for (const engine::LoadModelOptions& options : models) {
    const std::string model = PreloadServedName(options);
    std::shared_ptr<engine::LoadStream> stream = engine.LoadModel(options);
    absl::Mutex mu;
    bool ready_signal = false;
    stream->SetReadyCallback([&] {
      absl::MutexLock lock(&mu);
      ready_signal = true;
    });
    std::optional<absl::Status> final_status;
    while (!final_status.has_value()) {
      engine::LoadStream::Batch batch = stream->Drain();
      if (batch.final_status.has_value()) final_status = batch.final_status;
      if (batch.empty()) {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(&ready_signal));
        ready_signal = false;
      }
    }
    if (!final_status->ok()) {
      logger.Log(LogLevel::kError, "preload_failed",
                 {{"model", model}, {"error", std::string(final_status->message())}});
      return false;
    }
    logger.Log(LogLevel::kInfo, "preload_ready", {{"model", model}});
  }
  return true;
}

int Run(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "serves causal language models over gRPC (kiln.v1.Kiln).\n"
      "  kilnd --listen=0.0.0.0:50051 --model_roots=/models [--config=kilnd.json]\n"
      "Signals: SIGTERM/SIGINT drain (health NOT_SERVING, in-flight RPCs finish up to "
      "--drain_timeout_s) and exit 0; SIGHUP re-reads and validates the TLS files (a bad "
      "file is refused and the previous certificate keeps serving).");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "kilnd.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [] {
    const BuildInfo b = CurrentBuildInfo();
    return absl::StrCat("kilnd ", b.version, " (", b.git_commit, ", ", b.build_type, ")\n");
  };
  absl::SetFlagsUsageConfig(usage);

  // Signals are blocked before any thread exists, so only sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<ServerConfig> config = BuildConfig();
  if (!config.ok()) {
    std::fprintf(stderr, "kilnd: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_print_config)) {
    std::printf("%s\n", ConfigToJson(*config).c_str());
    return 0;
  }
  auto logger = std::make_shared<Logger>(config->log_format);
  const BuildInfo build = CurrentBuildInfo();
  logger->Log(LogLevel::kInfo, "start",
              {{"version", build.version}, {"commit", build.git_commit},
               {"build_type", build.build_type}, {"pid", static_cast<int64_t>(getpid())}});

  if (!config->ready_file.empty()) {
    absl::Status s = RemoveStaleReadyFile(config->ready_file, *logger);
    if (!s.ok()) {
      logger->Log(LogLevel::kError, "exit", {{"error", std::string(s.message())}, {"code", 1}});
      return 1;
    }
  }
  auto metrics = std::make_shared<Metrics>(build.version, build.git_commit, KILN_CUDA_BUILT);
  engine::EngineOptions engine_options = ToEngineOptions(*config);
  engine_options.metrics_registry = metrics->registry();
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::CreateEngine(std::move(engine_options));
  if (!engine.ok()) {
    logger->Log(LogLevel::kError, "exit",
                {{"error", std::string(engine.status().message())}, {"code", 1}});
    return 1;
  }
  std::shared_ptr<engine::Engine> shared_engine = *std::move(engine);
  absl::StatusOr<std::unique_ptr<KilnServer>> server = KilnServer::Start(
      *config, shared_engine, metrics, logger, build, /*start_serving=*/config->preload.empty());
  if (!server.ok()) {
    shared_engine->Shutdown();
    logger->Log(LogLevel::kError, "exit",
                {{"error", std::string(server.status().message())}, {"code", 1}});
    return 1;
  }
  if (!config->ready_file.empty()) {
    absl::Status s = WriteReadyFile(config->ready_file, (*server)->grpc_port(),
                                    (*server)->metrics_port());
    if (!s.ok()) {
      (*server)->Shutdown(absl::ZeroDuration());
      logger->Log(LogLevel::kError, "exit", {{"error", std::string(s.message())}, {"code", 1}});
      return 1;
    }
  }

  int exit_code = 0;
  std::atomic<bool> preload_failed{false};
  std::thread preloader;
  if (!config->preload.empty()) {
    preloader = std::thread([&] {
      if (Preload(*shared_engine, config->preload, *logger)) {
        (*server)->SetServing(true);
      } else if (!(*server)->draining()) {
        preload_failed = true;
        kill(getpid(), SIGTERM);  // leave through the normal drain path
      }
    });
  }

  int sig = 0;
  while (true) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    // SIGHUP: reload the TLS files now (validated; the reloader logs and counts the outcome)
    // and keep serving instead of dying (SIGHUP's default).
    const bool tls = !config->tls_cert_file.empty();
    logger->Log(LogLevel::kInfo, "sighup", {{"tls", tls ? "reload" : "off"}});
    if (tls) (*server)->ReloadTls().IgnoreError();
  }
  if (preload_failed) exit_code = 1;
  logger->Log(LogLevel::kInfo, "signal", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->BeginDrain();
  const bool idle =
      (*server)->WaitForIdle(absl::Now() + absl::Seconds(config->drain_timeout_s));
  logger->Log(LogLevel::kInfo, "drain_end", {{"idle", idle ? "true" : "false"}});
  // Once idle, what remains open are streams that never end by themselves (health Watch):
  // only a short grace, so the NOT_SERVING update BeginDrain published reaches their clients
  // before the streams are cut (gRPC writes it asynchronously). Otherwise give the
  // UNAVAILABLE statuses time to reach their clients.
  (*server)->Shutdown(idle ? absl::Milliseconds(500) : absl::Seconds(5));
  if (preloader.joinable()) preloader.join();
  server->reset();
  // A restart must not find the old ports (E5: no stale files after a clean exit).
  if (!config->ready_file.empty()) std::remove(config->ready_file.c_str());
  logger->Log(LogLevel::kInfo, "exit", {{"code", exit_code}});
  return exit_code;
}

}  // namespace
}  // namespace kiln::server

int main(int argc, char** argv) { return kiln::server::Run(argc, argv); }
