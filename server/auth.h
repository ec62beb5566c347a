// Authenticator: bearer-token checks for kiln.v1 RPCs (reliability.md §5).
//
// Two credential classes: admin (LoadModel, UnloadModel, LoadAdapter, UnloadAdapter) and
// inference (everything else; an admin token is accepted there too). Tokens come from files,
// one token per non-empty line (several lines allow rotation). With no token file configured
// authentication is off. Comparison is constant-time; tokens are never logged or echoed.
//
// Statuses: UNAUTHENTICATED for a missing, malformed or unknown token; PERMISSION_DENIED
// for an inference token on an admin RPC.
//
// gRPC's own services (health, reflection) are not kiln.v1 handlers: AuthProcessor checks
// them in the transport, before the call reaches the service, as AuthPolicy says
// (--auth_health, --auth_reflection). kiln.v1 methods are checked by their handlers
// (RpcScope::Admit), which also count and log the refusal.
//
// Thread-safety: immutable after construction; Check() may run on any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/security/auth_metadata_processor.h"

namespace kiln::server {

enum class RpcClass { kAdmin, kInference };

class Authenticator {
 public:
  // Empty vectors switch a class off; both empty = auth off.
  Authenticator(std::vector<std::string> admin_tokens, std::vector<std::string> inference_tokens);

  // Reads the files ("" = none). NOT_FOUND / INVALID_ARGUMENT naming the setting.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFiles(
      const std::string& admin_token_file, const std::string& inference_token_file);

  bool enabled() const { return !admin_tokens_.empty() || !inference_tokens_.empty(); }

  // `authorization` is the metadata value ("" when absent).
  absl::Status Check(const std::string& authorization, RpcClass rpc_class) const;

 private:
  static bool Matches(const std::vector<std::string>& tokens, const std::string& token);

  const std::vector<std::string> admin_tokens_;
  const std::vector<std::string> inference_tokens_;
};

// Compares without an early exit on the first differing byte.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

// Which of gRPC's own services need a credential when auth is on.
struct AuthPolicy {
  // grpc.health.v1.Health. Off by default: kubelet's native gRPC probes cannot send a token.
  bool auth_health = false;
  // grpc.reflection.v1alpha/v1 ServerReflection: an inference (or admin) token.
  bool auth_reflection = true;
};

// What a call to a method (its HTTP/2 :path, "/package.Service/Method") needs.
enum class MethodAccess {
  kOpen,           // no credential
  kInference,      // an inference or admin token, checked by AuthProcessor
  kServiceChecks,  // kiln.v1.Kiln: its handler checks the credential of its RpcClass
};
// Health and reflection as `policy` says; kiln.v1 → kServiceChecks; any other path (a
// service added later, a typo) → kInference, so nothing new is served without a credential.
MethodAccess ClassifyMethod(const std::string& path, const AuthPolicy& policy);

// Transport-level check for the methods ClassifyMethod() puts in kInference: UNAUTHENTICATED
// / PERMISSION_DENIED as Authenticator::Check says. Installed only when auth is enabled.
// Non-blocking (the check is a few constant-time compares), so gRPC runs it inline.
// Shares `auth`: gRPC's core may hold the processor a little past the server object.
class AuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  AuthProcessor(std::shared_ptr<const Authenticator> auth, AuthPolicy policy)
      : auth_(std::move(auth)), policy_(policy) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const std::shared_ptr<const Authenticator> auth_;
  const AuthPolicy policy_;
};

}  // namespace kiln::server
