#include "cli/commands.h"

#include <chrono>
#include <fstream>
#include <sstream>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "cli/output.h"
#include "cli/progress.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::cli {
namespace {

using kiln::v1::Kiln;

absl::StatusOr<std::string> ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError("--" + flag + ": cannot read '" + path + "'");
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

// Everything one command needs; built once per invocation.
struct Call {
  const ClientOptions& options;
  Kiln::Stub* stub;
  const Terminal& terminal;
  std::ostream& out;
  std::ostream& err;

  std::unique_ptr<grpc::ClientContext> Context(bool streaming) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    // Streams (loads, long generations) have no deadline unless asked; unary calls do, so a
    // wedged server never hangs a script forever.
    const double timeout_s =
        options.timeout_s.value_or(streaming ? 0.0 : kDefaultUnaryTimeoutS);
    if (timeout_s > 0) {
      ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)));
    }
    if (!options.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options.token);
    return ctx;
  }

  int Fail(const grpc::Status& status) const {
    err << FormatError(status) << "\n" << std::flush;
    return ExitCodeFor(status.error_code());
  }

  int UsageFail(const absl::Status& status) const {
    err << "error: " << status.message() << "\n" << std::flush;
    return kExitUsage;
  }

  // Prints a unary result as JSON or through `human`.
  template <typename Message, typename Human>
  int Print(const grpc::Status& status, const Message& response, Human human) const {
    if (!status.ok()) return Fail(status);
    if (options.json) {
      out << ToJsonLine(response) << "\n";
    } else {
      out << human(response);
    }
    out << std::flush;
    return 0;
  }
};

int Health(const Call& c, const std::shared_ptr<grpc::Channel>& channel,
           const std::string& service) {
  grpc::health::v1::Health::Stub health(channel);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto ctx = c.Context(false);
  const grpc::Status status = health.Check(ctx.get(), request, &response);
  if (!status.ok()) return c.Fail(status);
  if (c.options.json) {
    c.out << ToJsonLine(response) << "\n" << std::flush;
  } else {
    c.out << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())
          << "\n" << std::flush;
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? 0
             : ExitCodeFor(grpc::StatusCode::UNAVAILABLE);
}

int Load(const Call& c, const kiln::v1::LoadModelRequest& request) {
  auto ctx = c.Context(true);
  std::unique_ptr<grpc::ClientReader<kiln::v1::LoadModelEvent>> reader =
      c.stub->LoadModel(ctx.get(), request);
  ProgressRenderer progress(&c.err, c.terminal.stderr_is_tty, c.terminal.width);
  kiln::v1::LoadModelEvent event;
  while (reader->Read(&event)) {
    if (c.options.json) {
      c.out << ToJsonLine(event) << "\n" << std::flush;
    } else if (event.has_progress()) {
      progress.Update(event.progress());
    } else if (event.has_ready()) {
      progress.Finish();
      c.out << FormatModelInfo(event.ready()) << std::flush;
    }
  }
  progress.Finish();
  const grpc::Status status = reader->Finish();
  return status.ok() ? 0 : c.Fail(status);
}

int Generate(const Call& c, const kiln::v1::GenerateRequest& request) {
  auto ctx = c.Context(true);
  std::unique_ptr<grpc::ClientReader<kiln::v1::GenerateResponse>> reader =
      c.stub->Generate(ctx.get(), request);
  kiln::v1::GenerateResponse response;
  kiln::v1::GenerateResponse last;
  bool any = false;
  char last_char = '\n';
  while (reader->Read(&response)) {
    any = true;
    if (c.options.json) {
      c.out << ToJsonLine(response) << "\n";
    } else if (!response.text().empty()) {
      c.out << response.text();
      last_char = response.text().back();
    }
    c.out << std::flush;  // show each delta as it arrives
    last = response;
  }
  const grpc::Status status = reader->Finish();
  if (!c.options.json && c.terminal.stdout_is_tty && last_char != '\n') c.out << "\n";
  c.out << std::flush;
  if (!status.ok()) return c.Fail(status);
  if (any && !c.options.json) c.err << FormatGenerateSummary(last) << "\n" << std::flush;
  return 0;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientOptions& options) {
  grpc::ChannelArguments channel_args;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadFile("tls_ca_file", options.tls_ca_file);
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile("tls_cert_file", options.tls_cert_file);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile("tls_key_file", options.tls_key_file);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    if (!options.tls_server_name.empty()) {
      channel_args.SetSslTargetNameOverride(options.tls_server_name);
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateCustomChannel(options.addr, credentials, channel_args);
}

int RunCommand(const ParsedArgs& args, const ClientOptions& options,
               const std::shared_ptr<grpc::Channel>& channel, const Terminal& terminal,
               std::ostream& out, std::ostream& err) {
  std::unique_ptr<Kiln::Stub> stub = Kiln::NewStub(channel);
  const Call c{options, stub.get(), terminal, out, err};
  const std::string& cmd = args.command;
  const auto& pos = args.positional;

  if (cmd == "health") return Health(c, channel, pos.empty() ? "" : pos[0]);
  if (cmd == "info") {
    kiln::v1::ServerInfo response;
    auto ctx = c.Context(false);
    const grpc::Status s = stub->GetServerInfo(ctx.get(), {}, &response);
    return c.Print(s, response, FormatServerInfo);
  }
  if (cmd == "load") {
    absl::StatusOr<kiln::v1::LoadModelRequest> request = BuildLoadModelRequest(args);
    return request.ok() ? Load(c, *request) : c.UsageFail(request.status());
  }
  if (cmd == "unload") {
    absl::StatusOr<kiln::v1::UnloadModelRequest> request = BuildUnloadModelRequest(args);
    if (!request.ok()) return c.UsageFail(request.status());
    kiln::v1::UnloadModelResponse response;
    auto ctx = c.Context(false);
    const grpc::Status s = stub->UnloadModel(ctx.get(), *request, &response);
    return c.Print(s, response, [&](const kiln::v1::UnloadModelResponse& r) {
      return "unloaded " + request->served_name() + ": freed " + FormatBytes(r.freed_bytes()) +
             ", aborted " + std::to_string(r.aborted_requests()) + " request(s)\n";
    });
  }
  if (cmd == "models") {
    auto ctx = c.Context(false);
    if (!pos.empty()) {
      kiln::v1::GetModelRequest request;
      request.set_served_name(pos[0]);
      kiln::v1::ModelInfo response;
      const grpc::Status s = stub->GetModel(ctx.get(), request, &response);
      return c.Print(s, response, FormatModelInfo);
    }
    kiln::v1::ListModelsResponse response;
    const grpc::Status s = stub->ListModels(ctx.get(), {}, &response);
    return c.Print(s, response, FormatModelTable);
  }
  if (cmd == "adapters list") {
    kiln::v1::ListAdaptersRequest request;
    request.set_model(args.GetString("model"));
    kiln::v1::ListAdaptersResponse response;
    auto ctx = c.Context(false);
    const grpc::Status s = stub->ListAdapters(ctx.get(), request, &response);
    return c.Print(s, response, FormatAdapterTable);
  }
  if (cmd == "adapters load") {
    absl::StatusOr<kiln::v1::LoadAdapterRequest> request = BuildLoadAdapterRequest(args);
    if (!request.ok()) return c.UsageFail(request.status());
    kiln::v1::AdapterInfo response;
    auto ctx = c.Context(false);
    const grpc::Status s = stub->LoadAdapter(ctx.get(), *request, &response);
    return c.Print(s, response, FormatAdapterInfo);
  }
  if (cmd == "adapters unload") {
    absl::StatusOr<kiln::v1::UnloadAdapterRequest> request = BuildUnloadAdapterRequest(args);
    if (!request.ok()) return c.UsageFail(request.status());
    kiln::v1::UnloadAdapterResponse response;
    auto ctx = c.Context(false);
    const grpc::Status s = stub->UnloadAdapter(ctx.get(), *request, &response);
    return c.Print(s, response, [](const kiln::v1::UnloadAdapterResponse& r) {
      return "freed " + FormatBytes(r.freed_bytes()) + "\n";
    });
  }
  if (cmd == "generate") {
    absl::StatusOr<kiln::v1::GenerateRequest> request = BuildGenerateRequest(args);
    return request.ok() ? Generate(c, *request) : c.UsageFail(request.status());
  }
  if (cmd == "tokenize") {
    absl::StatusOr<kiln::v1::TokenizeRequest> request = BuildTokenizeRequest(args);
    if (!request.ok()) return c.UsageFail(request.status());
    kiln::v1::TokenizeResponse response;
    auto ctx = c.Context(false);
    const grpc::Status s = stub->Tokenize(ctx.get(), *request, &response);
    return c.Print(s, response, FormatTokenize);
  }
  err << "error: unknown command '" << cmd << "'\n";
  return kExitUsage;
}

}  // namespace kiln::cli
