#include "server/rpc_context.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kiln::server {

ServiceContext::ServiceContext(std::shared_ptr<engine::Engine> engine, const Authenticator* auth,
                               Metrics* metrics, Logger* logger, engine::EngineLimits limits,
                               ServerLimits server_limits, BuildInfo build)
    : engine_(std::move(engine)),
      auth_(auth),
      metrics_(metrics),
      logger_(logger),
      limits_(limits),
      server_limits_(server_limits),
      build_(std::move(build)),
      start_time_(absl::Now()) {}

void ServiceContext::SetHealth(std::weak_ptr<HealthPublisher> health) {
  absl::MutexLock lock(&mu_);
  health_ = std::move(health);
}

void ServiceContext::FlushHealth() const {
  std::shared_ptr<HealthPublisher> health;
  {
    absl::MutexLock lock(&mu_);
    health = health_.lock();
  }
  if (health) health->Flush();
}

void ServiceContext::SetDraining() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool ServiceContext::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

void ServiceContext::RpcBegin() {
  absl::MutexLock lock(&mu_);
  ++in_flight_;
}

void ServiceContext::RpcEnd() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

int ServiceContext::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

bool ServiceContext::WaitForIdle(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

RpcScope::RpcScope(ServiceContext* service, std::string method, grpc::CallbackServerContext* ctx)
    : service_(service), method_(std::move(method)), start_(absl::Now()) {
  const auto& metadata = ctx->client_metadata();
  for (const auto& [key, value] : metadata) {
    metadata_bytes_ += static_cast<int64_t>(key.size() + value.size()) + 32;
  }
  auto it = metadata.find("authorization");
  if (it != metadata.end()) authorization_.assign(it->second.data(), it->second.size());
  peer_ = ctx->peer();
  service_->RpcBegin();
  service_->metrics().RpcStarted(method_);
}

RpcScope::~RpcScope() { End(grpc::Status(grpc::StatusCode::INTERNAL, "rpc scope leaked")); }

grpc::Status RpcScope::Admit(RpcClass rpc_class, bool allowed_while_draining) {
  const int64_t max_metadata = service_->server_limits().max_metadata_bytes;
  if (max_metadata > 0 && metadata_bytes_ > max_metadata) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("request metadata is ", metadata_bytes_,
                                     " bytes, over max_metadata_bytes ", max_metadata));
  }
  if (!allowed_while_draining && service_->draining()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is draining");
  }
  absl::Status auth = service_->auth().Check(authorization_, rpc_class);
  authorization_.clear();  // not kept longer than needed
  return ToGrpcStatus(auth);
}

void RpcScope::AddLogField(LogField field) {
  absl::MutexLock lock(&fields_mu_);
  fields_.push_back(std::move(field));
}

void RpcScope::End(const grpc::Status& status) {
  if (ended_.exchange(true)) return;
  const absl::Duration duration = absl::Now() - start_;
  service_->metrics().RpcFinished(method_, status.error_code(), duration);
  std::vector<LogField> fields = {
      {"method", method_},
      {"code", StatusCodeName(status.error_code())},
      {"duration_ms", absl::ToDoubleMilliseconds(duration)},
      {"peer", peer_},
  };
  if (!request_id_.empty()) fields.emplace_back("request_id", request_id_);
  {
    absl::MutexLock lock(&fields_mu_);
    for (LogField& f : fields_) fields.push_back(std::move(f));
    fields_.clear();
  }
  if (!status.ok()) fields.emplace_back("message", status.error_message());
  service_->logger().Log(status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "rpc_end", fields);
  service_->RpcEnd();
}

}  // namespace kiln::server
