// Metrics: the daemon's Prometheus metrics and the optional /metrics HTTP endpoint.
//
// Not a global: one object owns the registry, which is also handed to the engine
// (EngineOptions::metrics_registry) so engine metrics appear on the same endpoint.
//
//   kiln_build_info{version,commit,cuda}       gauge      always 1
//   kiln_rpc_requests_total{method,code}       counter    finished RPCs by gRPC code name
//   kiln_rpc_duration_seconds{method}          histogram  RPC start to final status
//   kiln_rpc_in_flight{method}                 gauge      RPCs started, not yet finished
//   kiln_draining                              gauge      1 once draining started
//   kiln_uptime_seconds                        gauge      seconds since start (at scrape time)
//   kiln_tls_reloads_total{status}             counter    TLS reloads after start, ok|error
//   kiln_tls_certificate_expiry_timestamp_seconds  gauge  served certificate's notAfter (unix s)
// (the two TLS metrics appear once EnableTlsMetrics() ran, i.e. only when TLS is on)
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "server/metrics_http.h"

namespace prometheus {
class Collectable;
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace kiln::server {

class Metrics {
 public:
  Metrics(const std::string& version, const std::string& commit, bool cuda_built);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // Starts the /metrics HTTP endpoint (metrics_http.h) on host:port (port 0 = ephemeral);
  // returns the bound port.
  // UNAVAILABLE naming the address when it cannot bind; FAILED_PRECONDITION if started.
  absl::StatusOr<int> StartExposer(const std::string& address);

  void RpcStarted(const std::string& method);
  void RpcFinished(const std::string& method, grpc::StatusCode code, absl::Duration duration);
  void SetDraining(bool draining);

  // TLS (server/tls_reloader.h): creates both reload counters at 0 and the expiry gauge.
  void EnableTlsMetrics();
  void TlsReloaded(bool ok);
  void SetTlsCertificateExpiry(absl::Time not_after);

  // Everything in the registry in the Prometheus text format (uptime refreshed).
  std::string Text() const;

 private:
  class ScrapeCollectable;

  void RefreshUptime() const;

  const absl::Time start_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Gauge>* in_flight_;
  prometheus::Gauge* draining_;
  prometheus::Gauge* uptime_;
  prometheus::Family<prometheus::Counter>* tls_reloads_;
  prometheus::Family<prometheus::Gauge>* tls_expiry_;
  std::shared_ptr<ScrapeCollectable> scrape_;
  std::unique_ptr<MetricsHttpServer> http_;
};

// The gRPC code's canonical name ("OK", "INVALID_ARGUMENT", ...).
std::string StatusCodeName(grpc::StatusCode code);

}  // namespace kiln::server
