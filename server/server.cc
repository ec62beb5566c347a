#include "server/server.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/tls_credentials.h"

namespace kiln::server {
namespace {

// Drops one plugin (by name) from a ServerBuilder.
class WithoutPlugin final : public grpc::ServerBuilderOption {
 public:
  explicit WithoutPlugin(std::string name) : name_(std::move(name)) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    std::erase_if(*plugins, [&](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) { return p->name() == name_; });
  }

 private:
  std::string name_;
};

bool IsLoopback(const std::string& listen) {
  return absl::StartsWith(listen, "127.") || absl::StartsWith(listen, "localhost:") ||
         absl::StartsWith(listen, "[::1]:");
}

void ApplyGrpcLimits(const GrpcLimits& g, grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(static_cast<int>(g.max_receive_message_bytes));
  builder->SetMaxSendMessageSize(static_cast<int>(g.max_send_message_bytes));
  builder->AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, static_cast<int>(g.max_metadata_bytes));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, g.max_concurrent_streams);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                              static_cast<int>(g.keepalive_time_s * 1000));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                              static_cast<int>(g.keepalive_timeout_s * 1000));
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              static_cast<int>(g.min_ping_interval_s * 1000));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                              g.permit_keepalive_without_calls ? 1 : 0);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  if (g.max_connection_age_s > 0) {
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                                static_cast<int>(g.max_connection_age_s * 1000));
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                                static_cast<int>(g.max_connection_age_grace_s * 1000));
  }
}

}  // namespace

BuildInfo CurrentBuildInfo() {
  return BuildInfo{KILN_VERSION, KILN_GIT_COMMIT, KILN_BUILD_TYPE};
}

absl::StatusOr<std::unique_ptr<KilnServer>> KilnServer::Start(
    const ServerConfig& config, std::shared_ptr<engine::Engine> engine,
    std::shared_ptr<Metrics> metrics, std::shared_ptr<Logger> logger, BuildInfo build,
    bool start_serving) {
  absl::Status valid = ValidateConfig(config);
  if (!valid.ok()) return valid;
  std::unique_ptr<KilnServer> s(new KilnServer());
  s->engine_ = std::move(engine);
  s->metrics_ = std::move(metrics);
  s->logger_ = std::move(logger);
  absl::StatusOr<std::unique_ptr<Authenticator>> auth =
      Authenticator::FromFiles(config.admin_token_file, config.inference_token_file);
  if (!auth.ok()) return auth.status();
  s->auth_ = *std::move(auth);
  if (!config.tls_cert_file.empty()) {
    absl::StatusOr<std::unique_ptr<TlsReloader>> tls = TlsReloader::Create(
        {{config.tls_cert_file, config.tls_key_file, config.tls_client_ca_file},
         config.tls_state_dir,
         absl::Seconds(config.tls_reload_interval_s)},
        s->metrics_.get(), s->logger_.get());
    if (!tls.ok()) return tls.status();
    s->tls_ = *std::move(tls);
  }
  std::shared_ptr<AuthProcessor> processor;
  if (s->auth_->enabled()) {
    processor = std::make_shared<AuthProcessor>(
        s->auth_, AuthPolicy{config.auth_health, config.auth_reflection});
  }
  const std::shared_ptr<grpc::ServerCredentials> credentials =
      MakeServerCredentials(s->tls_.get(), std::move(processor));

  ServerLimits server_limits{config.grpc.max_receive_message_bytes,
                             config.grpc.max_concurrent_streams, config.grpc.max_metadata_bytes};
  s->context_ = std::make_unique<ServiceContext>(s->engine_, s->auth_.get(), s->metrics_.get(),
                                                 s->logger_.get(), config.limits, server_limits,
                                                 std::move(build));
  s->context_->set_log_prompts(config.log_prompts);
  s->service_ = std::make_unique<KilnService>(s->context_.get());

  // Both are process-wide settings read by the ServerBuilder constructor (toolchain.md §5).
  // Linking libgrpc++_reflection registers the plugin for every builder, so switching
  // reflection off removes it from this builder's plugin list instead.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!config.enable_reflection) builder.SetOption(std::make_unique<WithoutPlugin>("proto_server_reflection"));
  builder.AddListeningPort(config.listen, credentials, &s->grpc_port_);
  builder.RegisterService(s->service_.get());
  ApplyGrpcLimits(config.grpc, &builder);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->grpc_port_ == 0) {
    s->server_.reset();
    return absl::UnavailableError(absl::StrCat("listen: cannot serve on '", config.listen, "'"));
  }
  s->health_ = std::make_shared<HealthPublisher>(s->server_->GetHealthCheckService());
  s->health_->SetServing(start_serving);
  s->context_->SetHealth(s->health_);
  // Weak: the engine may outlive this server (and call late); updates then go nowhere.
  s->engine_->SetModelStateObserver(
      [weak = std::weak_ptr<HealthPublisher>(s->health_)](const std::string& name,
                                                          engine::ModelState state) {
        if (auto health = weak.lock()) health->ModelStateChanged(name, state);
      });

  if (!config.metrics_listen.empty()) {
    absl::StatusOr<int> port = s->metrics_->StartExposer(config.metrics_listen);
    if (!port.ok()) {
      s->Shutdown(absl::ZeroDuration());
      return port.status();
    }
    s->metrics_port_ = *port;
  }
  if (!s->auth_->enabled() && !IsLoopback(config.listen)) {
    s->logger_->Log(LogLevel::kWarning, "auth_disabled",
                    {{"listen", config.listen},
                     {"hint", "set admin_token_file/inference_token_file"}});
  }
  s->logger_->Log(LogLevel::kInfo, "listening",
                  {{"grpc_port", s->grpc_port_},
                   {"metrics_port", s->metrics_port_},
                   {"tls", config.tls_cert_file.empty()              ? "off"
                           : config.tls_client_ca_file.empty() ? "on"
                                                               : "mutual"},
                   {"log_prompts", config.log_prompts ? "on (debug)" : "off"},
                   {"auth", s->auth_->enabled() ? "on" : "off"},
                   {"auth_health", s->auth_->enabled() && config.auth_health ? "on" : "off"},
                   {"auth_reflection",
                    s->auth_->enabled() && config.auth_reflection ? "on" : "off"}});
  return s;
}

KilnServer::~KilnServer() {
  Shutdown(absl::ZeroDuration());
  health_.reset();  // joins its thread before the gRPC server (which owns health) goes
  server_.reset();
  tls_.reset();  // the watcher reads the staged files until the server is gone
}

absl::Status KilnServer::ReloadTls() {
  if (tls_ == nullptr) return absl::FailedPreconditionError("TLS is off: nothing to reload");
  return tls_->Reload("sighup");
}

void KilnServer::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (draining_ || shut_down_) return;
  health_->SetServing(serving);
}

void KilnServer::BeginDrain() {
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return;
    draining_ = true;
  }
  health_->ShutdownAll();
  health_->Flush();  // NOT_SERVING is published before anything else of the drain happens
  context_->SetDraining();
  metrics_->SetDraining(true);
  engine_->BeginDrain();
  logger_->Log(LogLevel::kInfo, "drain_begin", {{"in_flight", context_->in_flight()}});
}

void KilnServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    draining_ = true;
  }
  if (health_) health_->ShutdownAll();
  if (context_) context_->SetDraining();
  if (engine_) engine_->Shutdown();  // ends what is still running with UNAVAILABLE
  if (server_) {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  }
  if (health_) health_->Flush();
}

}  // namespace kiln::server
