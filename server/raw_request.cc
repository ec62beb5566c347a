#include "server/raw_request.h"

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/sample/utf8.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/slice.h"

namespace kiln::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::io::CodedInputStream;
using google::protobuf::internal::WireFormatLite;

// Nesting deeper than this is left to protobuf's own recursion limit (100); kiln's request
// messages are at most 3 deep.
constexpr int kMaxDepth = 16;

// Offset of the first byte that starts an ill-formed sequence, or -1 when `text` is valid.
int64_t FirstInvalidUtf8Offset(std::string_view text) {
  if (engine::sample::IsValidUtf8(text)) return -1;
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t len = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3
                     : (lead >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > text.size() || !engine::sample::IsValidUtf8(text.substr(i, len))) {
      return static_cast<int64_t>(i);
    }
    i += len;
  }
  return -1;  // unreachable: the whole text was valid after all
}

// Walks one (sub)message's fields; repeated elements are named "stop[2]".
struct Walker {
  absl::Status Walk(const Descriptor& descriptor, CodedInputStream* in, int depth,
                    const std::string& prefix) {
    std::vector<std::pair<int, int>> counts;  // (field number, elements seen)
    while (true) {
      const uint32_t tag = in->ReadTag();
      if (tag == 0) return absl::OkStatus();  // end of this (sub)message, or malformed: ParseFrom decides
      const int number = WireFormatLite::GetTagFieldNumber(tag);
      const FieldDescriptor* field = descriptor.FindFieldByNumber(number);
      if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED ||
          field == nullptr ||
          (field->type() != FieldDescriptor::TYPE_STRING &&
           field->type() != FieldDescriptor::TYPE_MESSAGE)) {
        if (!WireFormatLite::SkipField(in, tag)) return absl::OkStatus();
        continue;
      }
      std::string name = absl::StrCat(prefix, field->name());
      if (field->is_repeated()) {
        int index = 0;
        bool found = false;
        for (auto& [n, c] : counts) {
          if (n == number) {
            index = c++;
            found = true;
          }
        }
        if (!found) counts.emplace_back(number, 1);
        absl::StrAppend(&name, "[", index, "]");
      }
      uint32_t length = 0;
      if (!in->ReadVarint32(&length)) return absl::OkStatus();
      if (field->type() == FieldDescriptor::TYPE_STRING) {
        std::string value;
        if (!in->ReadString(&value, static_cast<int>(length))) return absl::OkStatus();
        const int64_t bad = FirstInvalidUtf8Offset(value);
        if (bad >= 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              name, ": must be valid UTF-8 (invalid byte at offset ", bad, " of the field)"));
        }
        continue;
      }
      if (depth >= kMaxDepth) {
        if (!in->Skip(static_cast<int>(length))) return absl::OkStatus();
        continue;
      }
      const CodedInputStream::Limit limit = in->PushLimit(static_cast<int>(length));
      absl::Status nested = Walk(*field->message_type(), in, depth + 1, name + ".");
      if (!nested.ok()) return nested;
      in->PopLimit(limit);
    }
  }
};

}  // namespace

absl::Status CheckStringFieldsUtf8(const Descriptor& descriptor, const std::string& bytes) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  return Walker{}.Walk(descriptor, &in, 0, "");
}

absl::Status ParseRequest(const grpc::ByteBuffer& wire, google::protobuf::Message* message) {
  // No message at all (the client half-closed without sending one, or its stream broke
  // mid-message): generated handlers refuse that too, but with a bare UNIMPLEMENTED.
  if (!wire.Valid()) {
    return absl::InvalidArgumentError(absl::StrCat("request: no ", message->GetDescriptor()->full_name(),
                                                   " message was received"));
  }
  grpc::Slice slice;
  std::string bytes;
  {
    if (!wire.DumpToSingleSlice(&slice).ok()) {
      return absl::InvalidArgumentError("request could not be read");
    }
    bytes.assign(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  absl::Status utf8 = CheckStringFieldsUtf8(*message->GetDescriptor(), bytes);
  if (!utf8.ok()) return utf8;
  if (!message->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("request is not a valid ",
                                                   message->GetDescriptor()->full_name(),
                                                   " (malformed wire format)"));
  }
  return absl::OkStatus();
}

absl::Status SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer* wire) {
  bool own_buffer = false;
  wire->Clear();  // gRPC's serializer writes only into an empty buffer (it asserts so)
  const grpc::Status status =
      grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, wire, &own_buffer);
  if (status.ok()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("could not serialize ",
                                          message.GetDescriptor()->full_name(), ": ",
                                          status.error_message()));
}

}  // namespace kiln::server
