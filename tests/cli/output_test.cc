#include "cli/output.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ExitCodes, AreTheGrpcCodeNumbers) {
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::OK), 0);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::CANCELLED), 1);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INVALID_ARGUMENT), 3);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::NOT_FOUND), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::PERMISSION_DENIED), 7);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNIMPLEMENTED), 12);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAVAILABLE), 14);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAUTHENTICATED), 16);
  // Out-of-range codes never collide with the usage code.
  EXPECT_EQ(ExitCodeFor(static_cast<grpc::StatusCode>(64)), 2);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::DO_NOT_USE), 2);
  EXPECT_EQ(kExitUsage, 64);
}

TEST(FormatError, CodeNameAndMessage) {
  EXPECT_EQ(FormatError(grpc::Status(grpc::StatusCode::NOT_FOUND, "model 'x' is not loaded")),
            "error: NOT_FOUND: model 'x' is not loaded");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::FAILED_PRECONDITION), "FAILED_PRECONDITION");
  EXPECT_EQ(StatusCodeName(static_cast<grpc::StatusCode>(42)), "CODE_42");
}

TEST(ToJsonLine, OneLineProtoNamesRoundTrips) {
  kiln::v1::GenerateResponse r;
  r.set_text("a\nb \"q\"");
  r.add_token_ids(7);
  r.add_token_ids(8);
  r.set_finish_reason(kiln::v1::FINISH_REASON_STOP);
  r.mutable_usage()->set_prompt_tokens(3);
  r.mutable_timing()->set_total_ms(12);
  const std::string line = ToJsonLine(r);
  EXPECT_THAT(line, Not(HasSubstr("\n")));
  EXPECT_EQ(line.front(), '{');
  EXPECT_EQ(line.back(), '}');
  EXPECT_THAT(line, HasSubstr("\"text\":\"a\\nb \\\"q\\\"\""));
  EXPECT_THAT(line, HasSubstr("\"token_ids\":[7,8]"));
  EXPECT_THAT(line, HasSubstr("\"finish_reason\":\"FINISH_REASON_STOP\""));
  // Zero-valued scalars are present so machine consumers see every field.
  EXPECT_THAT(line, HasSubstr("\"completion_tokens\":0"));
  EXPECT_THAT(line, HasSubstr("\"matched_stop\":\"\""));
  // int64 follows the proto3 JSON mapping (a string).
  EXPECT_THAT(line, HasSubstr("\"total_ms\":\"12\""));

  kiln::v1::GenerateResponse back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &back).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(r, back));
}

TEST(FormatBytes, BinaryUnits) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.0 GiB");
}

TEST(ShortEnumName, StripsPrefixAndLowercases) {
  EXPECT_EQ(ShortEnumName("MODEL_STATE_READY", "MODEL_STATE_"), "ready");
  EXPECT_EQ(ShortEnumName("OTHER", "MODEL_STATE_"), "other");
}

TEST(FormatModelTable, AlignsColumnsAndSummarizesDevices) {
  kiln::v1::ListModelsResponse list;
  EXPECT_EQ(FormatModelTable(list), "no models\n");
  kiln::v1::ModelInfo* m = list.add_models();
  m->set_served_name("tiny");
  m->set_model("org/tiny");
  m->set_state(kiln::v1::MODEL_STATE_READY);
  m->set_architecture("LlamaForCausalLM");
  m->set_dtype(kiln::v1::DTYPE_BFLOAT16);
  m->set_weight_bytes(2048);
  (*m->mutable_device_map())["model.layers.0"] = "cuda:0";
  (*m->mutable_device_map())["lm_head"] = "cpu";
  (*m->mutable_device_map())["model.layers.1"] = "cuda:0";
  const std::string table = FormatModelTable(list);
  EXPECT_EQ(table,
            "NAME  STATE  ARCHITECTURE      DTYPE     QUANT  WEIGHTS  DEVICES     MODEL\n"
            "tiny  ready  LlamaForCausalLM  bfloat16  -      2.0 KiB  cpu,cuda:0  org/tiny\n");
}

TEST(FormatTokenize, IdsOrIdTokenPairs) {
  kiln::v1::TokenizeResponse r;
  r.add_token_ids(1);
  r.add_token_ids(22);
  EXPECT_EQ(FormatTokenize(r), "1 22\n");
  r.add_tokens("<s>");
  r.add_tokens("hi");
  EXPECT_EQ(FormatTokenize(r), "1\t<s>\n22\thi\n");
}

TEST(FormatGenerateSummary, FinishUsageTiming) {
  kiln::v1::GenerateResponse r;
  r.set_finish_reason(kiln::v1::FINISH_REASON_STOP);
  r.set_matched_stop("END");
  r.mutable_usage()->set_prompt_tokens(4);
  r.mutable_usage()->set_completion_tokens(9);
  r.mutable_timing()->set_time_to_first_token_ms(5);
  r.mutable_timing()->set_total_ms(30);
  EXPECT_EQ(FormatGenerateSummary(r),
            "[finish=stop stop=\"END\" prompt_tokens=4 completion_tokens=9 "
            "cached_prompt_tokens=0 ttft_ms=5 total_ms=30]");
}

TEST(FormatServerInfo, ShowsVersionDevicesAndLimits) {
  kiln::v1::ServerInfo info;
  info.set_version("0.1.0");
  info.set_git_commit("abc");
  info.set_build_type("Release");
  info.add_architectures("LlamaForCausalLM");
  kiln::v1::DeviceInfo* d = info.add_devices();
  d->set_name("cpu");
  d->set_total_bytes(int64_t{8} << 30);
  info.mutable_limits()->set_max_new_tokens(4096);
  const std::string text = FormatServerInfo(info);
  EXPECT_THAT(text, HasSubstr("version:       0.1.0 (abc, Release)"));
  EXPECT_THAT(text, HasSubstr("architectures: LlamaForCausalLM"));
  EXPECT_THAT(text, HasSubstr("cpu     8.0 GiB"));
  EXPECT_THAT(text, HasSubstr("max_new_tokens=4096"));
}

}  // namespace
}  // namespace kiln::cli
