// Client-side helpers for the kilnd integration tests: channels and contexts, the health
// service, server reflection (v1alpha, through GenericStub + DynamicMessage, since Debian
// ships no reflection headers; toolchain.md §5), and a /metrics scrape.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "absl/status/statusor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/integration/prometheus_text.h"

namespace kiln::testing {

// Paths baked in by CMake ($<TARGET_FILE:...>).
std::string KilndPath();
std::string KilnctlPath();

std::shared_ptr<grpc::Channel> Connect(const std::string& address);

// A context with a deadline and, when `token` is not empty, `authorization: Bearer token`.
std::unique_ptr<grpc::ClientContext> MakeContext(
    const std::string& token = "", std::chrono::milliseconds deadline = std::chrono::seconds(10));

// grpc.health.v1.Health/Check; the RPC status, with the serving status in `*status`.
grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         grpc::health::v1::HealthCheckResponse::ServingStatus* status);

// Service names from ServerReflectionInfo list_services.
absl::StatusOr<std::vector<std::string>> ReflectionListServices(
    const std::shared_ptr<grpc::Channel>& channel);
// The file descriptors the server returns for file_containing_symbol.
absl::StatusOr<std::vector<google::protobuf::FileDescriptorProto>> ReflectionFileContainingSymbol(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& symbol);

// Loads `model` with a KV cache of exactly `kv_blocks` blocks: loads it once with the default
// cache to learn the bytes per block, unloads it, and loads it again with that many blocks.
// Small pools are how fault tests force preemption and admission refusals.
absl::Status LoadModelWithKvBlocks(kiln::v1::Kiln::Stub& stub, const std::string& model,
                                   int32_t kv_blocks);

// GET /metrics: checks HTTP 200 and a text/plain content type, then parses the body.
absl::StatusOr<PromExposition> ScrapeMetrics(int port);

}  // namespace kiln::testing
