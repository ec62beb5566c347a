// What every kiln.v1 handler shares (ServiceContext) and the per-RPC bookkeeping (RpcScope):
// admission (drain, auth), metrics, the "rpc_end" log line and in-flight counting for drain.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/engine_options.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"
#include "server/auth.h"
#include "server/health.h"
#include "server/logger.h"
#include "server/metrics.h"
#include "server/proto_convert.h"

namespace kiln::server {

struct BuildInfo {
  std::string version;
  std::string git_commit;
  std::string build_type;
};

// Thread-safety: the pointers and settings are fixed before the service starts; the
// draining flag and the in-flight count are synchronized.
class ServiceContext {
 public:
  ServiceContext(std::shared_ptr<engine::Engine> engine, const Authenticator* auth,
                 Metrics* metrics, Logger* logger, engine::EngineLimits limits,
                 ServerLimits server_limits, BuildInfo build);

  engine::Engine& engine() const { return *engine_; }
  const Authenticator& auth() const { return *auth_; }
  Metrics& metrics() const { return *metrics_; }
  Logger& logger() const { return *logger_; }
  const engine::EngineLimits& limits() const { return limits_; }
  const ServerLimits& server_limits() const { return server_limits_; }
  const BuildInfo& build() const { return build_; }
  absl::Time start_time() const { return start_time_; }

  void SetDraining();
  bool draining() const;

  // Debug: rpc_end lines carry the prompt text (--log_prompts). Set before serving.
  void set_log_prompts(bool on) { log_prompts_ = on; }
  bool log_prompts() const { return log_prompts_; }

  // The health publisher, once the server has one. FlushHealth() blocks until every health
  // update queued so far is applied: a LoadModel stream calls it before it sends `ready`, so a
  // client that saw `ready` also sees model/<name> SERVING.
  void SetHealth(std::weak_ptr<HealthPublisher> health);
  void FlushHealth() const;

  // Counts RPCs of this service that have started and not finished.
  void RpcBegin();
  void RpcEnd();
  int in_flight() const;
  // True once no RPC is in flight; false if `deadline` passed first.
  bool WaitForIdle(absl::Time deadline) const;

 private:
  const std::shared_ptr<engine::Engine> engine_;
  const Authenticator* const auth_;
  Metrics* const metrics_;
  Logger* const logger_;
  const engine::EngineLimits limits_;
  const ServerLimits server_limits_;
  const BuildInfo build_;
  const absl::Time start_time_;
  bool log_prompts_ = false;
  mutable absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  std::weak_ptr<HealthPublisher> health_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// One RPC from arrival to its final status: counts it in flight, and on End() records the
// metrics and logs "rpc_end". End() must be called exactly once (later calls are ignored).
// Thread-safety: End() may be called from any thread, once.
class RpcScope {
 public:
  RpcScope(ServiceContext* service, std::string method, grpc::CallbackServerContext* ctx);
  ~RpcScope();  // calls End(INTERNAL) if nobody did: a bug, but the books stay balanced

  // The admission check every RPC starts with: UNAVAILABLE while draining (unless
  // `allowed_while_draining`), then the credential for `rpc_class`.
  grpc::Status Admit(RpcClass rpc_class, bool allowed_while_draining = false);

  void set_request_id(std::string request_id) { request_id_ = std::move(request_id); }
  // Extra fields for the rpc_end line (model, adapter, token counts, timings). Never pass
  // prompt or generated text unless ServiceContext::log_prompts(), nor any credential.
  void AddLogField(LogField field);
  const std::string& method() const { return method_; }
  void End(const grpc::Status& status);

 private:
  ServiceContext* const service_;
  const std::string method_;
  std::string authorization_;
  std::string peer_;
  int64_t metadata_bytes_ = 0;  // the request's headers, as HTTP/2 counts them (name + value + 32)
  std::string request_id_;
  absl::Mutex fields_mu_;
  std::vector<LogField> fields_ ABSL_GUARDED_BY(fields_mu_);
  const absl::Time start_;
  std::atomic<bool> ended_{false};
};

}  // namespace kiln::server
