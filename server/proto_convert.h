// Conversion between kiln.v1 messages and engine types. The only file that knows both
// (DESIGN.md §1). Request conversions also do the structural validation the engine cannot
// see from its types (missing oneofs, negative counts, unknown enum values); range checks
// against the limits are the engine's. Errors are INVALID_ARGUMENT naming the field.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/runtime/api_types.h"
#include "engine/runtime/engine_options.h"
#include "grpcpp/support/status.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::server {

// absl code → gRPC code 1:1 (the numeric values agree); the message is kept.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Request ids are echoed into logs: at most 128 printable ASCII characters.
absl::Status ValidateRequestId(const std::string& request_id);

// `request_id` is left as given (the reactor assigns one when empty); no deadline is set.
absl::StatusOr<engine::GenerateRequest> ToEngineGenerateRequest(const v1::GenerateRequest& request);
absl::StatusOr<engine::LoadModelOptions> ToEngineLoadOptions(const v1::LoadModelRequest& request);
absl::StatusOr<engine::LoadAdapterOptions> ToEngineAdapterOptions(
    const v1::LoadAdapterRequest& request);

void ToProto(const engine::ModelInfo& in, v1::ModelInfo* out);
void ToProto(const engine::AdapterInfo& in, v1::AdapterInfo* out);
void ToProto(const engine::LoadEvent& in, v1::LoadModelEvent* out);
void ToProto(const engine::TokenizeResult& in, v1::TokenizeResponse* out);

// Coalesces one chunk into `out`: text, token ids and logprobs are appended; finish
// fields (reason, usage, timing, matched stop) are taken from a chunk that has them.
void AppendChunk(engine::GenerateChunk chunk, v1::GenerateResponse* out);

// Server-side limits reported next to the engine's in ServerInfo.limits.
struct ServerLimits {
  int64_t max_request_bytes = 0;
  int32_t max_concurrent_streams = 0;
  // Request metadata (headers) above this is refused with RESOURCE_EXHAUSTED before any other
  // work (reliability.md B1): gRPC 1.51 advertises the limit in SETTINGS but does not enforce
  // it. 0: no check.
  int64_t max_metadata_bytes = 0;
};

void FillServerInfo(const engine::EngineInfo& engine_info, const engine::EngineLimits& limits,
                    const ServerLimits& server_limits, v1::ServerInfo* out);

}  // namespace kiln::server
