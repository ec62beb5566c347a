#include "tests/security/security_util.h"

#include <limits.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/integration/grpc_clients.h"

namespace kiln::security {

namespace fs = std::filesystem;

std::string CopyFixture(const std::string& model, const std::string& dest) {
  fs::create_directories(dest);
  for (const auto& e : fs::directory_iterator(kFixtureModels + model)) {
    if (e.is_regular_file()) {
      fs::copy_file(e.path(), fs::path(dest) / e.path().filename(),
                    fs::copy_options::overwrite_existing);
    }
  }
  return dest;
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Canonical(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : std::string();
}

std::vector<std::string> HygieneProblems(const std::string& message,
                                         const std::vector<std::string>& roots,
                                         const std::vector<std::string>& secrets) {
  std::vector<std::string> problems;
  if (message.empty()) problems.push_back("empty message");
  if (message.size() > 512) problems.push_back("longer than 512 bytes");
  if (message.find('\0') != std::string::npos) problems.push_back("contains NUL");
  static const std::regex kAddress("0x[0-9a-fA-F]{8,}");
  if (std::regex_search(message, kAddress)) problems.push_back("contains an address");
  for (const auto& s : secrets) {
    if (!s.empty() && message.find(s) != std::string::npos) problems.push_back("leaks a secret");
  }
  // Absolute paths: any "/x/..." run outside the roots. Relative file names are fine.
  static const std::regex kPath("(^|[\\s\"'(=:])(/[^\\s\"'),:;/][^\\s\"'),:;]*)");
  for (auto it = std::sregex_iterator(message.begin(), message.end(), kPath);
       it != std::sregex_iterator(); ++it) {
    const std::string p = (*it)[2].str();
    bool inside = false;
    for (const auto& r : roots) {
      if (!r.empty() && (p == r || p.rfind(r + "/", 0) == 0)) inside = true;
    }
    if (!inside) problems.push_back("absolute path outside the roots: " + p);
  }
  static const std::regex kTrace("(\\.cc:[0-9]+|\\bat 0x|#[0-9]+ 0x|std::|__cxa)");
  if (std::regex_search(message, kTrace)) problems.push_back("looks like a stack trace/source");
  return problems;
}

Client::Client(const std::string& address, std::string token)
    : channel_(testing::Connect(address)),
      stub_(v1::Kiln::NewStub(channel_)),
      token_(std::move(token)) {}

std::unique_ptr<grpc::ClientContext> Client::Context(std::chrono::seconds deadline) {
  return testing::MakeContext(token_, deadline);
}

grpc::Status Client::LoadModel(const v1::LoadModelRequest& request) {
  auto ctx = Context(std::chrono::seconds(60));
  auto reader = stub_->LoadModel(ctx.get(), request);
  v1::LoadModelEvent event;
  while (reader->Read(&event)) {
  }
  return reader->Finish();
}

grpc::Status Client::LoadModel(const std::string& model) {
  v1::LoadModelRequest r;
  r.set_model(model);
  return LoadModel(r);
}

grpc::Status Client::Generate(const v1::GenerateRequest& request, std::string* text) {
  auto ctx = Context(std::chrono::seconds(60));
  auto reader = stub_->Generate(ctx.get(), request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (text != nullptr) *text += response.text();
  }
  return reader->Finish();
}

grpc::Status Client::Tokenize(const v1::TokenizeRequest& request, v1::TokenizeResponse* response) {
  auto ctx = Context(std::chrono::seconds(30));
  return stub_->Tokenize(ctx.get(), request, response);
}

grpc::Status Client::GetServerInfo(v1::ServerInfo* info) {
  auto ctx = Context(std::chrono::seconds(10));
  return stub_->GetServerInfo(ctx.get(), v1::GetServerInfoRequest(), info);
}

grpc::Status Client::UnloadModel(const std::string& served_name) {
  auto ctx = Context(std::chrono::seconds(30));
  v1::UnloadModelRequest r;
  r.set_served_name(served_name);
  v1::UnloadModelResponse resp;
  return stub_->UnloadModel(ctx.get(), r, &resp);
}

absl::StatusOr<std::unique_ptr<testing::KilndProcess>> StartKilnd(
    const std::vector<std::string>& flags, const std::string& token_dir,
    const std::string& binary) {
  const std::string token_file = token_dir + "/admin.token";
  WriteText(token_file, std::string(kAdminToken) + "\n");
  std::vector<std::string> all = flags;
  all.push_back("--admin_token_file=" + token_file);
  return testing::KilndProcess::Start(
      {binary.empty() ? testing::KilndPath() : binary, all, std::chrono::milliseconds(60000)});
}

}  // namespace kiln::security
