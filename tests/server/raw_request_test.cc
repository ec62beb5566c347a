// ParseRequest / CheckStringFieldsUtf8 (server/raw_request.h) over bytes produced by protobuf
// itself (which serializes invalid UTF-8 in string fields, logging only) and hand-broken wire data.
#include "server/raw_request.h"

#include <string>

#include "gmock/gmock.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "gtest/gtest.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::server {
namespace {

grpc::ByteBuffer Wire(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string Bytes(const google::protobuf::Message& m) {
  std::string out;
  EXPECT_TRUE(m.SerializeToString(&out));
  return out;
}

TEST(RawRequestTest, ValidRequestRoundTrips) {
  v1::GenerateRequest in;
  in.set_model("m");
  in.set_text("héllo, 世界 🙂");
  in.mutable_stopping()->add_stop("\n\n");
  in.mutable_sampling()->set_temperature(0.5f);
  v1::GenerateRequest out;
  ASSERT_TRUE(ParseRequest(Wire(Bytes(in)), &out).ok());
  EXPECT_EQ(out.SerializeAsString(), in.SerializeAsString());
}

TEST(RawRequestTest, AnEmptyMessageIsTheDefaultMessageButNoMessageIsAnError) {
  v1::TokenizeRequest out;
  ASSERT_TRUE(ParseRequest(Wire(""), &out).ok());  // zero bytes: a valid, empty message
  EXPECT_EQ(out.text(), "");
  const absl::Status none = ParseRequest(grpc::ByteBuffer(), &out);  // no message at all
  EXPECT_EQ(none.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.message(), "request: no kiln.v1.TokenizeRequest message was received");
}

TEST(RawRequestTest, InvalidUtf8NamesTheFieldAndOffset) {
  struct Case {
    std::string text;
    int offset;
  };
  for (const Case& c : {Case{std::string("\xff", 1), 0}, Case{std::string("abc\xc3", 4), 3},
                        Case{std::string("a\xed\xa0\x80z", 5), 1},  // a UTF-16 surrogate
                        Case{std::string("ab\xf4\x90\x80\x80", 6), 2}}) {  // above U+10FFFF
    v1::GenerateRequest in;
    in.set_model("m");
    in.set_text(c.text);
    v1::GenerateRequest out;
    const absl::Status s = ParseRequest(Wire(Bytes(in)), &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), "text: must be valid UTF-8 (invalid byte at offset " +
                               std::to_string(c.offset) + " of the field)");
  }
}

TEST(RawRequestTest, NestedAndRepeatedFieldsGetTheirPath) {
  v1::GenerateRequest in;
  in.set_model("m");
  in.set_text("fine");
  in.mutable_stopping()->add_stop("a");
  in.mutable_stopping()->add_stop("b");
  in.mutable_stopping()->add_stop(std::string("\x80", 1));
  const absl::Status s = CheckStringFieldsUtf8(*v1::GenerateRequest::descriptor(), Bytes(in));
  EXPECT_EQ(s.message(), "stopping.stop[2]: must be valid UTF-8 (invalid byte at offset 0 of the field)");

  v1::LoadModelRequest load;  // a map-free admin message with nested strings works the same way
  load.set_model(std::string("x\xfe", 2));
  EXPECT_THAT(std::string(CheckStringFieldsUtf8(*v1::LoadModelRequest::descriptor(), Bytes(load)).message()),
              ::testing::StartsWith("model: must be valid UTF-8"));
}

TEST(RawRequestTest, MalformedWireFormatIsInvalidArgument) {
  v1::GenerateRequest in;
  in.set_model("model");
  std::string bytes = Bytes(in);
  bytes.resize(bytes.size() - 2);  // the string's length now runs past the end
  v1::GenerateRequest out;
  const absl::Status s = ParseRequest(Wire(bytes), &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "request is not a valid kiln.v1.GenerateRequest (malformed wire format)");
}

// The same buffer is reused for every message of a stream (stream_reactors.cc), with messages
// both under and over gRPC's inlined-slice size, which take different serializer paths.
TEST(RawRequestTest, SerializeResponseRoundTripsIntoAReusedBuffer) {
  grpc::ByteBuffer wire;
  for (int tokens : {1, 200, 3, 1000}) {
    v1::TokenizeResponse in;
    for (int i = 0; i < tokens; ++i) {
      in.add_token_ids(i);
      in.add_tokens("tok" + std::to_string(i));
    }
    ASSERT_TRUE(SerializeResponse(in, &wire).ok());
    grpc::Slice slice;
    ASSERT_TRUE(wire.DumpToSingleSlice(&slice).ok());
    v1::TokenizeResponse out;
    ASSERT_TRUE(out.ParseFromArray(slice.begin(), static_cast<int>(slice.size())));
    EXPECT_EQ(out.SerializeAsString(), in.SerializeAsString()) << tokens << " tokens";
  }
}

}  // namespace
}  // namespace kiln::server
