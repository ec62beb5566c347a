#include "server/auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kiln::server {
namespace {

absl::StatusOr<std::vector<std::string>> ReadTokens(const std::string& setting,
                                                    const std::string& path) {
  std::vector<std::string> tokens;
  if (path.empty()) return tokens;
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(setting, ": cannot read '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  for (absl::string_view line : absl::StrSplit(text.str(), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    for (char c : line) {
      if (c < 0x21 || c > 0x7e) {
        return absl::InvalidArgumentError(absl::StrCat(
            setting, ": tokens must be printable ASCII without spaces, one per line"));
      }
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(setting, ": '", path, "' holds no token"));
  }
  return tokens;
}

}  // namespace

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  // Every byte of the longer string is visited; the length difference is folded in.
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

Authenticator::Authenticator(std::vector<std::string> admin_tokens,
                             std::vector<std::string> inference_tokens)
    : admin_tokens_(std::move(admin_tokens)), inference_tokens_(std::move(inference_tokens)) {}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFiles(
    const std::string& admin_token_file, const std::string& inference_token_file) {
  absl::StatusOr<std::vector<std::string>> admin =
      ReadTokens("admin_token_file", admin_token_file);
  if (!admin.ok()) return admin.status();
  absl::StatusOr<std::vector<std::string>> inference =
      ReadTokens("inference_token_file", inference_token_file);
  if (!inference.ok()) return inference.status();
  return std::make_unique<Authenticator>(*std::move(admin), *std::move(inference));
}

bool Authenticator::Matches(const std::vector<std::string>& tokens, const std::string& token) {
  bool match = false;
  for (const std::string& t : tokens) match |= ConstantTimeEquals(t, token);  // no early exit
  return match;
}

absl::Status Authenticator::Check(const std::string& authorization, RpcClass rpc_class) const {
  if (!enabled()) return absl::OkStatus();
  absl::string_view value = authorization;
  // The scheme is case-insensitive (RFC 7235); the token is not.
  if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
    return absl::UnauthenticatedError(
        "missing credentials: send 'authorization: Bearer <token>' metadata");
  }
  const std::string token(absl::StripAsciiWhitespace(value.substr(7)));
  const bool admin = Matches(admin_tokens_, token);
  const bool inference = Matches(inference_tokens_, token);
  switch (rpc_class) {
    case RpcClass::kAdmin:
      if (admin) return absl::OkStatus();
      if (inference) {
        return absl::PermissionDeniedError("this RPC needs the admin credential");
      }
      break;
    case RpcClass::kInference:
      if (admin || inference) return absl::OkStatus();
      break;
  }
  return absl::UnauthenticatedError("invalid credentials");
}

MethodAccess ClassifyMethod(const std::string& path, const AuthPolicy& policy) {
  if (absl::StartsWith(path, "/kiln.v1.Kiln/")) return MethodAccess::kServiceChecks;
  if (absl::StartsWith(path, "/grpc.health.v1.Health/")) {
    return policy.auth_health ? MethodAccess::kInference : MethodAccess::kOpen;
  }
  if (absl::StartsWith(path, "/grpc.reflection.v1alpha.ServerReflection/") ||
      absl::StartsWith(path, "/grpc.reflection.v1.ServerReflection/")) {
    return policy.auth_reflection ? MethodAccess::kInference : MethodAccess::kOpen;
  }
  return MethodAccess::kInference;
}

grpc::Status AuthProcessor::Process(const InputMetadata& auth_metadata, grpc::AuthContext*,
                                    OutputMetadata*, OutputMetadata*) {
  std::string path;
  std::string authorization;
  for (const auto& [key, value] : auth_metadata) {
    if (key == ":path") path.assign(value.data(), value.size());
    if (key == "authorization") authorization.assign(value.data(), value.size());
  }
  switch (ClassifyMethod(path, policy_)) {
    case MethodAccess::kOpen:
    case MethodAccess::kServiceChecks:
      return grpc::Status::OK;
    case MethodAccess::kInference:
      break;
  }
  const absl::Status s = auth_->Check(authorization, RpcClass::kInference);
  if (s.ok()) return grpc::Status::OK;
  const grpc::StatusCode code = s.code() == absl::StatusCode::kPermissionDenied
                                    ? grpc::StatusCode::PERMISSION_DENIED
                                    : grpc::StatusCode::UNAUTHENTICATED;
  return grpc::Status(code, std::string(s.message()));
}

}  // namespace kiln::server
