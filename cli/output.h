// kilnctl output: exit codes, error lines, JSON lines and human-readable tables.
//
// Exit codes: 0 when the RPC succeeds; otherwise the gRPC status code number (1 CANCELLED …
// 16 UNAUTHENTICATED; e.g. NOT_FOUND → 5); 64 (kExitUsage) for usage errors. `health`
// exits 14 (UNAVAILABLE) when the checked service is not SERVING.
// Errors print as `error: <CODE>: <server message>`.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include <grpcpp/support/status.h>

#include "kiln/v1/kiln.pb.h"

namespace google::protobuf {
class Message;
}

namespace kiln::cli {

inline constexpr int kExitUsage = 64;

// "OK", "NOT_FOUND", ... ("CODE_<n>" for a number outside the gRPC range).
std::string StatusCodeName(grpc::StatusCode code);
// 0 for OK, else the code number.
int ExitCodeFor(grpc::StatusCode code);
// "error: NOT_FOUND: <message>" (no trailing newline).
std::string FormatError(const grpc::Status& status);

// One JSON object on one line (proto3 JSON mapping, proto field names, zero-valued scalars
// included so consumers see every field), without a trailing newline.
std::string ToJsonLine(const google::protobuf::Message& message);

// 1536 → "1.5 KiB"; below 1024 → "512 B".
std::string FormatBytes(int64_t bytes);
// Enum value name without its type prefix, lower case: MODEL_STATE_READY → "ready".
std::string ShortEnumName(const std::string& full_name, const std::string& prefix);

std::string FormatModelTable(const kiln::v1::ListModelsResponse& models);
std::string FormatModelInfo(const kiln::v1::ModelInfo& model);
std::string FormatAdapterTable(const kiln::v1::ListAdaptersResponse& adapters);
std::string FormatAdapterInfo(const kiln::v1::AdapterInfo& adapter);
std::string FormatServerInfo(const kiln::v1::ServerInfo& info);
std::string FormatTokenize(const kiln::v1::TokenizeResponse& response);
// The stderr line after a generation: finish reason, usage and timing of the last response.
std::string FormatGenerateSummary(const kiln::v1::GenerateResponse& last);

}  // namespace kiln::cli
