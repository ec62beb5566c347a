// Parsing request messages ourselves, so that a request protobuf refuses gets a status that
// names the field instead of gRPC's bare UNIMPLEMENTED.
//
// Why: proto3 `string` fields must hold valid UTF-8 and protobuf's parser rejects the whole
// message otherwise. With generated handlers gRPC 1.51 then drops the parse status and answers
// UNIMPLEMENTED with an empty message (reliability.md G1/G2 forbid both). The methods that carry
// free text (Generate, Tokenize) are therefore registered as raw methods (service.h): they
// receive the ByteBuffer and call ParseRequest, which first walks the wire format with the
// message's descriptor and reports the first string field holding invalid UTF-8 by its path
// ("text", "stopping.stop[1]"), then parses. Walking first also keeps protobuf from logging an
// error line per hostile request.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace kiln::server {

// OK, or INVALID_ARGUMENT: "<field path>: must be valid UTF-8 (invalid byte at offset N of the
// field)" for the first offending string field, or "request is not a valid <full message
// name> (malformed wire format)" for anything else protobuf refuses.
absl::Status ParseRequest(const grpc::ByteBuffer& wire, google::protobuf::Message* message);

// Serializes `message` into `wire` (a raw method's response).
absl::Status SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer* wire);

// The UTF-8 walk alone, over serialized bytes (exposed for tests and fuzzing).
absl::Status CheckStringFieldsUtf8(const google::protobuf::Descriptor& descriptor,
                                   const std::string& bytes);

}  // namespace kiln::server
