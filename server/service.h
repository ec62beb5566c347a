// KilnService: the kiln.v1.Kiln callback service. Thin: admit (drain, auth), convert,
// call the engine, convert back. Unary RPCs whose engine call completes asynchronously
// (UnloadModel, LoadAdapter, UnloadAdapter) finish from the engine's completion callback.
//
// GetServerInfo stays available while draining (it reports `draining`); every other RPC
// started after drain began gets UNAVAILABLE "server is draining".
//
// Thread-safety: handlers run concurrently on gRPC threads; state lives in ServiceContext.
#pragma once

#include "kiln/v1/kiln.grpc.pb.h"
#include "server/rpc_context.h"

namespace kiln::server {

// Generate and Tokenize carry free text, so they are raw methods: their handlers parse the
// request themselves and answer invalid UTF-8 with INVALID_ARGUMENT naming the field, where
// generated handlers would answer a bare UNIMPLEMENTED (raw_request.h).
using KilnServiceBase = v1::Kiln::WithRawCallbackMethod_Generate<
    v1::Kiln::WithRawCallbackMethod_Tokenize<v1::Kiln::CallbackService>>;

class KilnService final : public KilnServiceBase {
 public:
  // `context` is not owned and must outlive the grpc::Server serving this service.
  explicit KilnService(ServiceContext* context) : context_(context) {}

  grpc::ServerWriteReactor<v1::LoadModelEvent>* LoadModel(
      grpc::CallbackServerContext* ctx, const v1::LoadModelRequest* request) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* ctx,
                                        const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* ctx,
                                     const v1::GetModelRequest* request,
                                     v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* LoadAdapter(grpc::CallbackServerContext* ctx,
                                        const v1::LoadAdapterRequest* request,
                                        v1::AdapterInfo* response) override;
  grpc::ServerUnaryReactor* UnloadAdapter(grpc::CallbackServerContext* ctx,
                                          const v1::UnloadAdapterRequest* request,
                                          v1::UnloadAdapterResponse* response) override;
  grpc::ServerUnaryReactor* ListAdapters(grpc::CallbackServerContext* ctx,
                                         const v1::ListAdaptersRequest* request,
                                         v1::ListAdaptersResponse* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* ctx,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;

 private:
  ServiceContext* const context_;
};

}  // namespace kiln::server
