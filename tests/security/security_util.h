// Shared helpers for tests/security: a kilnd under test with its gRPC stub, model-tree
// builders (copies of the golden fixtures, modified), RPC wrappers that return the terminal
// status, and the error-message hygiene check (reliability.md §7 G2/F2).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/integration/kilnd_process.h"

namespace kiln::security {

inline const std::string kFixtureModels =
    std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/";

// A secret that tests configure as the admin token; no message may ever contain it.
inline constexpr char kAdminToken[] = "kiln-test-S3CRET-admin-token-7f3a";

// Copies every regular file of fixture model `model` into `dest` (created). Returns `dest`.
std::string CopyFixture(const std::string& model, const std::string& dest);
void WriteText(const std::string& path, const std::string& text);
std::string ReadText(const std::string& path);
// realpath(3) of an existing path ("" when it fails).
std::string Canonical(const std::string& path);

// The checks of G2 on one status message. `roots` are the configured (canonical) roots under
// which absolute paths may appear. Returns the problems found (empty = clean).
std::vector<std::string> HygieneProblems(const std::string& message,
                                         const std::vector<std::string>& roots,
                                         const std::vector<std::string>& secrets = {kAdminToken});

// A client of one kilnd: every call sends the admin token when `token` is set.
class Client {
 public:
  Client(const std::string& address, std::string token);
  grpc::Status LoadModel(const v1::LoadModelRequest& request);
  grpc::Status LoadModel(const std::string& model);
  // Reads the whole stream; the concatenated text in `*text` when non-null.
  grpc::Status Generate(const v1::GenerateRequest& request, std::string* text = nullptr);
  grpc::Status Tokenize(const v1::TokenizeRequest& request, v1::TokenizeResponse* response);
  grpc::Status GetServerInfo(v1::ServerInfo* info);
  grpc::Status UnloadModel(const std::string& served_name);

 private:
  std::unique_ptr<grpc::ClientContext> Context(std::chrono::seconds deadline);
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Kiln::Stub> stub_;
  std::string token_;
};

// Starts kilnd (binary `binary`, default the built kilnd) with `flags` plus an admin token file
// holding kAdminToken, written into `token_dir`.
absl::StatusOr<std::unique_ptr<testing::KilndProcess>> StartKilnd(
    const std::vector<std::string>& flags, const std::string& token_dir,
    const std::string& binary = "");

}  // namespace kiln::security
