#include "tests/integration/grpc_clients.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>

#include "tests/integration/kilnd_process.h"

namespace kiln::testing {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

constexpr char kReflectionMethod[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

// Waits for one completion-queue event with `tag`.
absl::Status Await(grpc::CompletionQueue* cq, void* tag, const char* what) {
  void* got = nullptr;
  bool ok = false;
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(10);
  if (cq->AsyncNext(&got, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT) {
    return absl::DeadlineExceededError(std::string("reflection: no event for ") + what);
  }
  if (got != tag || !ok) return absl::UnavailableError(std::string("reflection: ") + what + " failed");
  return absl::OkStatus();
}

// One request/response exchange on the reflection stream. `fill` sets the request fields.
absl::StatusOr<std::unique_ptr<Message>> ReflectionExchange(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& field,
    const std::string& value) {
  // Referencing the plugin keeps libgrpc++_reflection (which registers the v1alpha
  // descriptors in the generated pool) linked in.
  static const bool kLinked = [] {
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    return true;
  }();
  (void)kLinked;
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  const Descriptor* req_desc =
      pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionRequest");
  const Descriptor* resp_desc =
      pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionResponse");
  if (req_desc == nullptr || resp_desc == nullptr) {
    return absl::InternalError("reflection v1alpha descriptors are not in the generated pool");
  }
  static google::protobuf::DynamicMessageFactory factory(pool);
  std::unique_ptr<Message> request(factory.GetPrototype(req_desc)->New());
  request->GetReflection()->SetString(request.get(), req_desc->FindFieldByName(field), value);
  std::string wire;
  request->SerializeToString(&wire);
  grpc::Slice slice(wire);
  grpc::ByteBuffer send_buffer(&slice, 1);

  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&ctx, kReflectionMethod, &cq);
  int tags[5];
  call->StartCall(&tags[0]);
  absl::Status s = Await(&cq, &tags[0], "start");
  if (s.ok()) {
    call->Write(send_buffer, &tags[1]);
    s = Await(&cq, &tags[1], "write");
  }
  grpc::ByteBuffer recv_buffer;
  if (s.ok()) {
    call->Read(&recv_buffer, &tags[2]);
    s = Await(&cq, &tags[2], "read");
  }
  if (s.ok()) {
    call->WritesDone(&tags[3]);
    s = Await(&cq, &tags[3], "writes done");
  }
  if (!s.ok()) ctx.TryCancel();
  grpc::Status status;
  call->Finish(&status, &tags[4]);
  void* got = nullptr;
  bool ok = false;
  cq.AsyncNext(&got, &ok, std::chrono::system_clock::now() + std::chrono::seconds(10));
  cq.Shutdown();
  while (cq.Next(&got, &ok)) {
  }
  if (!s.ok()) return s;
  if (!status.ok()) {
    return absl::UnavailableError("reflection RPC: " + status.error_message());
  }
  std::vector<grpc::Slice> slices;
  if (!recv_buffer.Dump(&slices).ok()) return absl::InternalError("ByteBuffer::Dump");
  std::string received;
  for (const grpc::Slice& piece : slices) {
    received.append(reinterpret_cast<const char*>(piece.begin()), piece.size());
  }
  std::unique_ptr<Message> response(factory.GetPrototype(resp_desc)->New());
  if (!response->ParseFromString(received)) return absl::InternalError("bad reflection response");
  return response;
}

const Message* SubMessage(const Message& m, const std::string& field) {
  const FieldDescriptor* f = m.GetDescriptor()->FindFieldByName(field);
  if (f == nullptr || !m.GetReflection()->HasField(m, f)) return nullptr;
  return &m.GetReflection()->GetMessage(m, f);
}

}  // namespace

std::string KilndPath() { return KILND_PATH; }
std::string KilnctlPath() { return KILNCTL_PATH; }

std::shared_ptr<grpc::Channel> Connect(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

std::unique_ptr<grpc::ClientContext> MakeContext(const std::string& token,
                                                 std::chrono::milliseconds deadline) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + deadline);
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         grpc::health::v1::HealthCheckResponse::ServingStatus* status) {
  grpc::health::v1::Health::Stub stub(channel);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto ctx = MakeContext();
  grpc::Status s = stub.Check(ctx.get(), request, &response);
  *status = response.status();
  return s;
}

absl::StatusOr<std::vector<std::string>> ReflectionListServices(
    const std::shared_ptr<grpc::Channel>& channel) {
  absl::StatusOr<std::unique_ptr<Message>> response =
      ReflectionExchange(channel, "list_services", "*");
  if (!response.ok()) return response.status();
  const Message* list = SubMessage(**response, "list_services_response");
  if (list == nullptr) return absl::InternalError("no list_services_response");
  const FieldDescriptor* service_field = list->GetDescriptor()->FindFieldByName("service");
  std::vector<std::string> names;
  const int n = list->GetReflection()->FieldSize(*list, service_field);
  for (int i = 0; i < n; ++i) {
    const Message& service = list->GetReflection()->GetRepeatedMessage(*list, service_field, i);
    names.push_back(service.GetReflection()->GetString(
        service, service.GetDescriptor()->FindFieldByName("name")));
  }
  return names;
}

absl::StatusOr<std::vector<google::protobuf::FileDescriptorProto>> ReflectionFileContainingSymbol(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& symbol) {
  absl::StatusOr<std::unique_ptr<Message>> response =
      ReflectionExchange(channel, "file_containing_symbol", symbol);
  if (!response.ok()) return response.status();
  if (const Message* error = SubMessage(**response, "error_response")) {
    return absl::NotFoundError("reflection error: " + error->ShortDebugString());
  }
  const Message* files = SubMessage(**response, "file_descriptor_response");
  if (files == nullptr) return absl::InternalError("no file_descriptor_response");
  const FieldDescriptor* f = files->GetDescriptor()->FindFieldByName("file_descriptor_proto");
  std::vector<google::protobuf::FileDescriptorProto> out;
  const int n = files->GetReflection()->FieldSize(*files, f);
  for (int i = 0; i < n; ++i) {
    google::protobuf::FileDescriptorProto file;
    if (!file.ParseFromString(files->GetReflection()->GetRepeatedString(*files, f, i))) {
      return absl::InternalError("bad FileDescriptorProto");
    }
    out.push_back(std::move(file));
  }
  return out;
}

namespace {

// One LoadModel stream to its end; the bytes per KV block from its ready event.
absl::StatusOr<int64_t> LoadModelOnce(kiln::v1::Kiln::Stub& stub,
                                      const kiln::v1::LoadModelRequest& load) {
  std::unique_ptr<grpc::ClientContext> ctx = MakeContext("", std::chrono::seconds(60));
  auto reader = stub.LoadModel(ctx.get(), load);
  kiln::v1::LoadModelEvent event;
  int64_t bytes_per_block = 0;
  while (reader->Read(&event)) {
    if (event.has_ready() && event.ready().kv_num_blocks() > 0) {
      bytes_per_block = event.ready().kv_cache_bytes() / event.ready().kv_num_blocks();
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        "LoadModel " + load.model() + ": " + status.error_message());
  }
  if (bytes_per_block <= 0) return absl::InternalError("LoadModel sent no ready event with KV");
  return bytes_per_block;
}

}  // namespace

absl::Status LoadModelWithKvBlocks(kiln::v1::Kiln::Stub& stub, const std::string& model,
                                   int32_t kv_blocks) {
  kiln::v1::LoadModelRequest load;
  load.set_model(model);
  absl::StatusOr<int64_t> bytes_per_block = LoadModelOnce(stub, load);
  if (!bytes_per_block.ok()) return bytes_per_block.status();
  kiln::v1::UnloadModelRequest unload;
  unload.set_served_name(model);
  kiln::v1::UnloadModelResponse unloaded;
  std::unique_ptr<grpc::ClientContext> ctx = MakeContext();
  const grpc::Status status = stub.UnloadModel(ctx.get(), unload, &unloaded);
  if (!status.ok()) return absl::InternalError("UnloadModel: " + status.error_message());
  load.set_kv_cache_bytes(*bytes_per_block * kv_blocks);
  return LoadModelOnce(stub, load).status();
}

absl::StatusOr<PromExposition> ScrapeMetrics(int port) {
  absl::StatusOr<std::string> response = HttpGet(port, "/metrics");
  if (!response.ok()) return response.status();
  const size_t body_at = response->find("\r\n\r\n");
  if (body_at == std::string::npos) return absl::InternalError("no HTTP header end");
  const std::string head = response->substr(0, body_at);
  if (head.rfind("HTTP/1.", 0) != 0 || head.find(" 200 ") == std::string::npos) {
    return absl::InternalError("not HTTP 200: " + head.substr(0, head.find('\r')));
  }
  if (head.find("text/plain") == std::string::npos) {
    return absl::InternalError("content type is not text/plain: " + head);
  }
  return ParsePrometheusText(response->substr(body_at + 4));
}

}  // namespace kiln::testing
