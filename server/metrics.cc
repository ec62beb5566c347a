#include "server/metrics.h"

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace kiln::server {

// What a scrape collects: refreshes the uptime gauge, then collects the registry.
class Metrics::ScrapeCollectable : public prometheus::Collectable {
 public:
  explicit ScrapeCollectable(const Metrics* metrics) : metrics_(metrics) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    metrics_->RefreshUptime();
    return metrics_->registry_->Collect();
  }

 private:
  const Metrics* metrics_;
};

Metrics::Metrics(const std::string& version, const std::string& commit, bool cuda_built)
    : start_(absl::Now()), registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("kiln_build_info")
      .Help("Build of the running kilnd; always 1.")
      .Register(*registry_)
      .Add({{"version", version}, {"commit", commit}, {"cuda", cuda_built ? "true" : "false"}})
      .Set(1);
  requests_ = &prometheus::BuildCounter()
                   .Name("kiln_rpc_requests_total")
                   .Help("Finished kiln.v1 RPCs by method and gRPC status code.")
                   .Register(*registry_);
  duration_ = &prometheus::BuildHistogram()
                   .Name("kiln_rpc_duration_seconds")
                   .Help("kiln.v1 RPC duration from arrival to the final status.")
                   .Register(*registry_);
  in_flight_ = &prometheus::BuildGauge()
                    .Name("kiln_rpc_in_flight")
                    .Help("kiln.v1 RPCs started and not yet finished.")
                    .Register(*registry_);
  draining_ = &prometheus::BuildGauge()
                   .Name("kiln_draining")
                   .Help("1 once the server has started draining (SIGTERM/SIGINT).")
                   .Register(*registry_)
                   .Add({});
  uptime_ = &prometheus::BuildGauge()
                 .Name("kiln_uptime_seconds")
                 .Help("Seconds since kilnd started.")
                 .Register(*registry_)
                 .Add({});
  tls_reloads_ = &prometheus::BuildCounter()
                     .Name("kiln_tls_reloads_total")
                     .Help("TLS key material reloads after start (SIGHUP or the reload interval) "
                           "by outcome; an error keeps the previous certificate.")
                     .Register(*registry_);
  tls_expiry_ = &prometheus::BuildGauge()
                     .Name("kiln_tls_certificate_expiry_timestamp_seconds")
                     .Help("notAfter of the served TLS certificate, in Unix seconds.")
                     .Register(*registry_);
  scrape_ = std::make_shared<ScrapeCollectable>(this);
}

Metrics::~Metrics() {
  http_.reset();  // stop scrapes before the collectable and registry go away
}

absl::StatusOr<int> Metrics::StartExposer(const std::string& address) {
  if (http_) return absl::FailedPreconditionError("metrics endpoint already started");
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
      MetricsHttpServer::Start(address, [this] { return Text(); });
  if (!http.ok()) return http.status();
  http_ = *std::move(http);
  return http_->port();
}

void Metrics::RpcStarted(const std::string& method) {
  in_flight_->Add({{"method", method}}).Increment();
}

void Metrics::RpcFinished(const std::string& method, grpc::StatusCode code,
                          absl::Duration duration) {
  in_flight_->Add({{"method", method}}).Decrement();
  requests_->Add({{"method", method}, {"code", StatusCodeName(code)}}).Increment();
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
      1,     2.5,    5,     10,   25,    60,   120, 300, 600};
  duration_->Add({{"method", method}}, kBuckets).Observe(absl::ToDoubleSeconds(duration));
}

void Metrics::SetDraining(bool draining) { draining_->Set(draining ? 1 : 0); }

void Metrics::EnableTlsMetrics() {
  tls_reloads_->Add({{"status", "ok"}});
  tls_reloads_->Add({{"status", "error"}});
  tls_expiry_->Add({});
}

void Metrics::TlsReloaded(bool ok) {
  tls_reloads_->Add({{"status", ok ? "ok" : "error"}}).Increment();
}

void Metrics::SetTlsCertificateExpiry(absl::Time not_after) {
  tls_expiry_->Add({}).Set(static_cast<double>(absl::ToUnixSeconds(not_after)));
}

void Metrics::RefreshUptime() const {
  uptime_->Set(absl::ToDoubleSeconds(absl::Now() - start_));
}

std::string Metrics::Text() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(scrape_->Collect());
}

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::DO_NOT_USE: break;
  }
  return absl::StrCat("CODE_", static_cast<int>(code));
}

}  // namespace kiln::server
