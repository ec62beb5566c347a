// KilnServer: the assembled daemon minus process concerns (flags, signals, ready file):
// the gRPC server (kiln.v1.Kiln callback service, grpc.health.v1, reflection), auth, TLS,
// metrics endpoint and the engine, with the drain/shutdown sequence of reliability.md §2.6.
//
// Lifecycle: Start() → serving (health SERVING unless `start_serving` is false, e.g. while
// preloading) → BeginDrain() (health NOT_SERVING everywhere, engine drains, new RPCs
// UNAVAILABLE) → WaitForIdle(deadline) → Shutdown() (engine ends what is left with
// UNAVAILABLE, then the gRPC server stops with a short grace).
//
// TLS: the key material is validated and staged by a TlsReloader (server/tls_reloader.h);
// ReloadTls() swaps in the operator's current files. Auth for gRPC's own services (health,
// reflection) is checked in the transport by an AuthProcessor (server/auth.h).
//
// Thread-safety: all methods are thread-safe; Shutdown() is idempotent.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/runtime/engine.h"
#include "grpcpp/server.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/health.h"
#include "server/logger.h"
#include "server/metrics.h"
#include "server/rpc_context.h"
#include "server/service.h"
#include "server/tls_reloader.h"

namespace kiln::server {

class KilnServer {
 public:
  // Binds `config.listen` (and `config.metrics_listen` unless empty) and starts serving.
  // The engine is shared so tests can keep a handle on a fake. `metrics` must be the object
  // whose registry the engine was given. UNAVAILABLE when a port cannot be bound;
  // INVALID_ARGUMENT / NOT_FOUND for bad settings, unreadable token/TLS files or TLS files
  // that fail validation (server/tls_material.h).
  static absl::StatusOr<std::unique_ptr<KilnServer>> Start(const ServerConfig& config,
                                                           std::shared_ptr<engine::Engine> engine,
                                                           std::shared_ptr<Metrics> metrics,
                                                           std::shared_ptr<Logger> logger,
                                                           BuildInfo build,
                                                           bool start_serving = true);
  ~KilnServer();  // Shutdown(0) if not done

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }  // 0 when disabled

  // Overall ("") and kiln.v1.Kiln health (ignored once draining).
  void SetServing(bool serving);
  void BeginDrain();
  bool draining() const { return context_->draining(); }
  // True once no kiln.v1 RPC is in flight; false when `deadline` passed first.
  bool WaitForIdle(absl::Time deadline) { return context_->WaitForIdle(deadline); }
  void Shutdown(absl::Duration grace = absl::Seconds(5));
  // Re-reads, validates and stages the TLS files (SIGHUP). FAILED_PRECONDITION when TLS is
  // off; otherwise TlsReloader::Reload's status (the previous certificate stays on error).
  absl::Status ReloadTls();
  // Blocks until queued health updates are applied (tests).
  void FlushHealth() { health_->Flush(); }

  engine::Engine& engine() { return *engine_; }
  Metrics& metrics() { return *metrics_; }

 private:
  KilnServer() = default;

  std::shared_ptr<engine::Engine> engine_;
  std::shared_ptr<Metrics> metrics_;
  std::shared_ptr<Logger> logger_;
  std::shared_ptr<Authenticator> auth_;  // shared with the transport's AuthProcessor
  std::unique_ptr<TlsReloader> tls_;      // null without TLS; outlives server_
  std::unique_ptr<ServiceContext> context_;
  std::unique_ptr<KilnService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<HealthPublisher> health_;  // weakly held by the engine's observer
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

// Version, git commit and build type baked in at configure time.
BuildInfo CurrentBuildInfo();

}  // namespace kiln::server
