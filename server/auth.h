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
// Thread-safety: immutable after construction; Check() may run on any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

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

}  // namespace kiln::server
