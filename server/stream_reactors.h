// Server-streaming reactors for Generate and LoadModel over an engine EventStream.
//
// Protocol (one write in flight): each time a write completes (or the engine signals new
// events while idle) the reactor drains the stream; Generate coalesces everything that
// piled up into one GenerateResponse, LoadModel keeps only the newest progress event plus
// the ready event. When the stream's final status has been delivered and every message is
// written, the RPC finishes with it (absl code → gRPC code 1:1). OnCancel cancels the engine
// stream and finishes CANCELLED (DEADLINE_EXCEEDED when the client deadline passed).
//
// Lifetime: gRPC owns the reactor until OnDone; the engine's ready callback holds only a
// shared Link whose pointer OnDone clears under the link's lock, so a callback that arrives
// after OnDone (or races with it) never touches a deleted reactor.
#pragma once

#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "kiln/v1/kiln.pb.h"
#include "server/rpc_context.h"

namespace kiln::server {

// Both start the RPC (validation, admission, engine call) before returning. Generate is a raw
// method: `request` is a serialized GenerateRequest, parsed after admission (raw_request.h),
// and the reactor writes serialized GenerateResponses.
grpc::ServerWriteReactor<grpc::ByteBuffer>* StartGenerate(ServiceContext* service,
                                                          grpc::CallbackServerContext* ctx,
                                                          const grpc::ByteBuffer* request);
grpc::ServerWriteReactor<v1::LoadModelEvent>* StartLoadModel(ServiceContext* service,
                                                             grpc::CallbackServerContext* ctx,
                                                             const v1::LoadModelRequest* request);

}  // namespace kiln::server
