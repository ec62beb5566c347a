#include "server/service.h"

#include <memory>
#include <utility>

#include "absl/time/clock.h"
#include "server/raw_request.h"
#include "server/stream_reactors.h"

namespace kiln::server {
namespace {

// A unary RPC in flight: the default reactor plus its scope, shared with any engine
// completion callback (std::function needs copyable captures).
struct Unary {
  Unary(ServiceContext* service, const char* method, grpc::CallbackServerContext* ctx)
      : reactor(ctx->DefaultReactor()), scope(service, method, ctx) {}

  // Records the result, then finishes; nothing may touch the response afterwards.
  grpc::ServerUnaryReactor* Finish(const grpc::Status& status) {
    grpc::ServerUnaryReactor* r = reactor;
    scope.End(status);
    r->Finish(status);
    return r;
  }

  grpc::ServerUnaryReactor* const reactor;
  RpcScope scope;
};

absl::Status RequireName(const char* field, const std::string& value) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(field) + ": must not be empty");
}

}  // namespace

grpc::ServerWriteReactor<v1::LoadModelEvent>* KilnService::LoadModel(
    grpc::CallbackServerContext* ctx, const v1::LoadModelRequest* request) {
  return StartLoadModel(context_, ctx, request);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* KilnService::Generate(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  return StartGenerate(context_, ctx, request);
}

grpc::ServerUnaryReactor* KilnService::UnloadModel(grpc::CallbackServerContext* ctx,
                                                   const v1::UnloadModelRequest* request,
                                                   v1::UnloadModelResponse* response) {
  auto rpc = std::make_shared<Unary>(context_, "UnloadModel", ctx);
  grpc::ServerUnaryReactor* reactor = rpc->reactor;
  grpc::Status admitted = rpc->scope.Admit(RpcClass::kAdmin);
  if (!admitted.ok()) return rpc->Finish(admitted);
  absl::Status valid = RequireName("served_name", request->served_name());
  if (!valid.ok()) return rpc->Finish(ToGrpcStatus(valid));
  context_->engine().UnloadModel(
      request->served_name(), request->drain(),
      [rpc, response](absl::StatusOr<engine::UnloadResult> result) {
        if (result.ok()) {
          response->set_freed_bytes(result->freed_bytes);
          response->set_aborted_requests(result->aborted_requests);
        }
        rpc->Finish(ToGrpcStatus(result.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* KilnService::ListModels(grpc::CallbackServerContext* ctx,
                                                  const v1::ListModelsRequest*,
                                                  v1::ListModelsResponse* response) {
  Unary rpc(context_, "ListModels", ctx);
  grpc::Status admitted = rpc.scope.Admit(RpcClass::kInference);
  if (!admitted.ok()) return rpc.Finish(admitted);
  for (const engine::ModelInfo& model : context_->engine().ListModels()) {
    ToProto(model, response->add_models());
  }
  return rpc.Finish(grpc::Status::OK);
}

grpc::ServerUnaryReactor* KilnService::GetModel(grpc::CallbackServerContext* ctx,
                                                const v1::GetModelRequest* request,
                                                v1::ModelInfo* response) {
  Unary rpc(context_, "GetModel", ctx);
  grpc::Status admitted = rpc.scope.Admit(RpcClass::kInference);
  if (!admitted.ok()) return rpc.Finish(admitted);
  absl::Status valid = RequireName("served_name", request->served_name());
  if (!valid.ok()) return rpc.Finish(ToGrpcStatus(valid));
  absl::StatusOr<engine::ModelInfo> model = context_->engine().GetModel(request->served_name());
  if (model.ok()) ToProto(*model, response);
  return rpc.Finish(ToGrpcStatus(model.status()));
}

grpc::ServerUnaryReactor* KilnService::LoadAdapter(grpc::CallbackServerContext* ctx,
                                                   const v1::LoadAdapterRequest* request,
                                                   v1::AdapterInfo* response) {
  auto rpc = std::make_shared<Unary>(context_, "LoadAdapter", ctx);
  grpc::ServerUnaryReactor* reactor = rpc->reactor;
  grpc::Status admitted = rpc->scope.Admit(RpcClass::kAdmin);
  if (!admitted.ok()) return rpc->Finish(admitted);
  absl::StatusOr<engine::LoadAdapterOptions> options = ToEngineAdapterOptions(*request);
  if (!options.ok()) return rpc->Finish(ToGrpcStatus(options.status()));
  context_->engine().LoadAdapter(*options,
                                 [rpc, response](absl::StatusOr<engine::AdapterInfo> result) {
                                   if (result.ok()) ToProto(*result, response);
                                   rpc->Finish(ToGrpcStatus(result.status()));
                                 });
  return reactor;
}

grpc::ServerUnaryReactor* KilnService::UnloadAdapter(grpc::CallbackServerContext* ctx,
                                                     const v1::UnloadAdapterRequest* request,
                                                     v1::UnloadAdapterResponse* response) {
  auto rpc = std::make_shared<Unary>(context_, "UnloadAdapter", ctx);
  grpc::ServerUnaryReactor* reactor = rpc->reactor;
  grpc::Status admitted = rpc->scope.Admit(RpcClass::kAdmin);
  if (!admitted.ok()) return rpc->Finish(admitted);
  absl::Status valid = RequireName("model", request->model());
  if (valid.ok()) valid = RequireName("served_name", request->served_name());
  if (!valid.ok()) return rpc->Finish(ToGrpcStatus(valid));
  context_->engine().UnloadAdapter(request->model(), request->served_name(), request->force(),
                                   [rpc, response](absl::StatusOr<int64_t> result) {
                                     if (result.ok()) response->set_freed_bytes(*result);
                                     rpc->Finish(ToGrpcStatus(result.status()));
                                   });
  return reactor;
}

grpc::ServerUnaryReactor* KilnService::ListAdapters(grpc::CallbackServerContext* ctx,
                                                    const v1::ListAdaptersRequest* request,
                                                    v1::ListAdaptersResponse* response) {
  Unary rpc(context_, "ListAdapters", ctx);
  grpc::Status admitted = rpc.scope.Admit(RpcClass::kInference);
  if (!admitted.ok()) return rpc.Finish(admitted);
  absl::StatusOr<std::vector<engine::AdapterInfo>> adapters =
      context_->engine().ListAdapters(request->model());
  if (adapters.ok()) {
    for (const engine::AdapterInfo& a : *adapters) ToProto(a, response->add_adapters());
  }
  return rpc.Finish(ToGrpcStatus(adapters.status()));
}

grpc::ServerUnaryReactor* KilnService::Tokenize(grpc::CallbackServerContext* ctx,
                                                const grpc::ByteBuffer* raw_request,
                                                grpc::ByteBuffer* raw_response) {
  Unary rpc(context_, "Tokenize", ctx);
  grpc::Status admitted = rpc.scope.Admit(RpcClass::kInference);
  if (!admitted.ok()) return rpc.Finish(admitted);
  v1::TokenizeRequest request;
  if (absl::Status parsed = ParseRequest(*raw_request, &request); !parsed.ok()) {
    // No message because the client cancelled before sending it: a cancel, not bad input.
    if (!raw_request->Valid() && ctx->IsCancelled()) {
      return rpc.Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
    }
    return rpc.Finish(ToGrpcStatus(parsed));
  }
  absl::Status valid = RequireName("model", request.model());
  if (!valid.ok()) return rpc.Finish(ToGrpcStatus(valid));
  absl::StatusOr<engine::TokenizeResult> result = context_->engine().Tokenize(
      request.model(), request.text(), request.add_special_tokens());
  if (!result.ok()) return rpc.Finish(ToGrpcStatus(result.status()));
  engine::TokenizeResult r = *std::move(result);
  if (!request.return_tokens()) r.tokens.clear();
  v1::TokenizeResponse response;
  ToProto(r, &response);
  return rpc.Finish(ToGrpcStatus(SerializeResponse(response, raw_response)));
}

grpc::ServerUnaryReactor* KilnService::GetServerInfo(grpc::CallbackServerContext* ctx,
                                                     const v1::GetServerInfoRequest*,
                                                     v1::ServerInfo* response) {
  Unary rpc(context_, "GetServerInfo", ctx);
  grpc::Status admitted =
      rpc.scope.Admit(RpcClass::kInference, /*allowed_while_draining=*/true);
  if (!admitted.ok()) return rpc.Finish(admitted);
  FillServerInfo(context_->engine().GetInfo(), context_->limits(), context_->server_limits(),
                 response);
  response->set_version(context_->build().version);
  response->set_git_commit(context_->build().git_commit);
  response->set_build_type(context_->build().build_type);
  response->set_uptime_ms(absl::ToInt64Milliseconds(absl::Now() - context_->start_time()));
  response->set_draining(context_->draining());
  return rpc.Finish(grpc::Status::OK);
}

}  // namespace kiln::server
