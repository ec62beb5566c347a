// Builds kiln.v1 request messages from parsed kilnctl arguments, and the client options
// (address, credentials, deadline) from the global flags. Pure: no I/O, no RPCs.
//
// Every function returns INVALID_ARGUMENT naming the flag for a bad value (exit code 64).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::cli {

struct ClientOptions {
  std::string addr = "127.0.0.1:50051";
  std::string token;  // "" = no authorization metadata
  bool tls = false;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;
  // Seconds; nullopt = the default (none for streams, kDefaultUnaryTimeoutS for unary);
  // 0 = no deadline at all.
  std::optional<double> timeout_s;
  bool json = false;
};

inline constexpr double kDefaultUnaryTimeoutS = 30.0;

// `env_token` is $KILN_TOKEN (nullopt when unset); --token wins over it.
absl::StatusOr<ClientOptions> BuildClientOptions(const ParsedArgs& args,
                                                 const std::optional<std::string>& env_token);

// "auto" | "float32" | "float16" | "bfloat16" (also "fp32", "fp16", "bf16").
absl::StatusOr<kiln::v1::DType> ParseDType(const std::string& text);

absl::StatusOr<kiln::v1::LoadModelRequest> BuildLoadModelRequest(const ParsedArgs& args);
absl::StatusOr<kiln::v1::GenerateRequest> BuildGenerateRequest(const ParsedArgs& args);
absl::StatusOr<kiln::v1::TokenizeRequest> BuildTokenizeRequest(const ParsedArgs& args);
absl::StatusOr<kiln::v1::UnloadModelRequest> BuildUnloadModelRequest(const ParsedArgs& args);
absl::StatusOr<kiln::v1::LoadAdapterRequest> BuildLoadAdapterRequest(const ParsedArgs& args);
absl::StatusOr<kiln::v1::UnloadAdapterRequest> BuildUnloadAdapterRequest(const ParsedArgs& args);

}  // namespace kiln::cli
