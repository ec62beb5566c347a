// kiln.v1 service tests: an in-process KilnServer on port 0 against FakeEngine, called
// through the generated sync stub. Synchronization is through the fake's notifications
// and the server's WaitForIdle / FlushHealth, never sleeps.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "server/server.h"
#include "tests/testing/fake_engine.h"

namespace kiln::server {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using testing::FakeEngine;

constexpr absl::Duration kWait = absl::Seconds(10);

engine::GenerateChunk Chunk(std::string text, std::vector<int32_t> ids) {
  engine::GenerateChunk c;
  c.text = std::move(text);
  c.token_ids = std::move(ids);
  return c;
}

engine::GenerateChunk FinalChunk(std::string text, std::vector<int32_t> ids,
                                 engine::FinishReason reason) {
  engine::GenerateChunk c = Chunk(std::move(text), std::move(ids));
  c.finish = engine::GenerateChunk::Finish{};
  c.finish->reason = reason;
  c.finish->usage.prompt_tokens = 2;
  c.finish->usage.completion_tokens = static_cast<int32_t>(c.token_ids.size());
  return c;
}

struct Options {
  std::string admin_token;
  std::string inference_token;
  bool log_prompts = false;
};

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(Options{}); }

  void StartServer(const Options& options) {
    ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "";  // the exposer is tested once in metrics_test
    config.limits.max_logprobs = 11;
    config.log_prompts = options.log_prompts;
    if (!options.admin_token.empty()) {
      config.admin_token_file = WriteFile("admin", options.admin_token);
      config.inference_token_file = WriteFile("inference", options.inference_token);
    }
    engine_ = std::make_shared<FakeEngine>();
    metrics_ = std::make_shared<Metrics>("9.9.9", "deadbeef", false);
    logger_ = std::make_shared<Logger>(LogFormat::kText, [this](const std::string& line) {
      absl::MutexLock lock(&log_mu_);
      log_lines_.push_back(line);
    });
    auto server = KilnServer::Start(config, engine_, metrics_, logger_,
                                    BuildInfo{"9.9.9", "deadbeef", "Test"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->grpc_port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::Kiln::NewStub(channel);
    health_ = grpc::health::v1::Health::NewStub(channel);
  }

  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(1));
  }

  std::string WriteFile(const std::string& name, const std::string& content) {
    const std::string path = ::testing::TempDir() + "/service_test_" + name;
    std::ofstream(path) << content << "\n";
    return path;
  }

  HealthCheckResponse::ServingStatus Health(const std::string& service,
                                            grpc::StatusCode* code = nullptr) {
    grpc::ClientContext ctx;
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    grpc::Status status = health_->Check(&ctx, request, &response);
    if (code != nullptr) *code = status.error_code();
    return response.status();
  }

  // Reads a whole Generate stream.
  grpc::Status GenerateAll(const v1::GenerateRequest& request,
                           std::vector<v1::GenerateResponse>* responses,
                           const std::string& token = "") {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    auto reader = stub_->Generate(&ctx, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) responses->push_back(response);
    return reader->Finish();
  }

  static v1::GenerateRequest TextRequest(const std::string& text = "hi") {
    v1::GenerateRequest r;
    r.set_model("m");
    r.set_text(text);
    return r;
  }

  bool Idle() { return server_->WaitForIdle(absl::Now() + kWait); }

  std::string Metric(const std::string& line) {
    const std::string text = metrics_->Text();
    return absl::StrContains(text, line) ? line : text;
  }

  std::shared_ptr<FakeEngine> engine_;
  std::shared_ptr<Metrics> metrics_;
  std::shared_ptr<Logger> logger_;
  std::unique_ptr<KilnServer> server_;
  std::unique_ptr<v1::Kiln::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  absl::Mutex log_mu_;
  std::vector<std::string> log_lines_;
};

TEST_F(ServiceTest, GenerateCoalescesChunksThatPiledUp) {
  // All chunks are in the stream before the reactor first drains it: one response.
  engine_->ScriptGenerate({absl::OkStatus(),
                           {Chunk("Hel", {1}), Chunk("lo", {2}),
                            FinalChunk(" world", {3}, engine::FinishReason::kStop)},
                           absl::OkStatus()});
  std::vector<v1::GenerateResponse> responses;
  grpc::Status status = GenerateAll(TextRequest(), &responses);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].text(), "Hello world");
  EXPECT_THAT(responses[0].token_ids(), ::testing::ElementsAre(1, 2, 3));
  EXPECT_EQ(responses[0].finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(responses[0].usage().completion_tokens(), 1);
  // No id given: the server assigns one, returns it and passes it to the engine.
  EXPECT_EQ(responses[0].request_id().size(), 16u);
  auto call = engine_->WaitForGenerate(0);
  ASSERT_TRUE(call.has_value());
  EXPECT_EQ(call->request.request_id, responses[0].request_id());
  EXPECT_EQ(*call->request.prompt_text, "hi");
}

TEST_F(ServiceTest, GenerateStreamsChunksPushedLater) {
  v1::GenerateRequest request = TextRequest();
  request.set_request_id("client-id-1");
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, request);
  auto call = engine_->WaitForGenerate(0);
  ASSERT_TRUE(call.has_value());
  EXPECT_EQ(call->request.request_id, "client-id-1");
  std::string text;
  v1::GenerateResponse response;
  ASSERT_TRUE(call->stream->Push(Chunk("a", {10})));
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.text(), "a");
  EXPECT_EQ(response.request_id(), "client-id-1");
  text += response.text();
  call->stream->Push(Chunk("b", {11}));
  call->stream->Push(FinalChunk("c", {12}, engine::FinishReason::kLength));
  call->stream->Finish(absl::OkStatus());
  std::vector<int32_t> ids = {10};
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&response)) {
    EXPECT_EQ(response.request_id(), "");  // only on the first response
    text += response.text();
    ids.insert(ids.end(), response.token_ids().begin(), response.token_ids().end());
    finish = response.finish_reason();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(text, "abc");
  EXPECT_THAT(ids, ::testing::ElementsAre(10, 11, 12));
  EXPECT_EQ(finish, v1::FINISH_REASON_LENGTH);
}

TEST_F(ServiceTest, GenerateValidationNeverReachesTheEngine) {
  v1::GenerateRequest request = TextRequest();
  request.mutable_token_ids()->add_ids(-1);
  std::vector<v1::GenerateResponse> responses;
  grpc::Status status = GenerateAll(request, &responses);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("token_ids.ids[0]"));
  request = TextRequest();
  request.clear_model();
  EXPECT_EQ(GenerateAll(request, &responses).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  request = TextRequest();
  request.clear_prompt();
  EXPECT_EQ(GenerateAll(request, &responses).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(responses.empty());
  EXPECT_EQ(engine_->num_generate_calls(), 0u);
}

TEST_F(ServiceTest, GenerateMapsEveryEngineCode) {
  for (int code = 1; code <= 16; ++code) {
    const auto absl_code = static_cast<absl::StatusCode>(code);
    engine_->ScriptGenerate({absl::Status(absl_code, "submit says no"), {}, std::nullopt});
    std::vector<v1::GenerateResponse> responses;
    grpc::Status status = GenerateAll(TextRequest(), &responses);
    EXPECT_EQ(static_cast<int>(status.error_code()), code);
    EXPECT_EQ(status.error_message(), "submit says no");
  }
  // A stream that ends with an error delivers what came before, then the code.
  engine_->ScriptGenerate({absl::OkStatus(), {Chunk("x", {1})},
                           absl::ResourceExhaustedError("client stalled")});
  std::vector<v1::GenerateResponse> responses;
  grpc::Status status = GenerateAll(TextRequest(), &responses);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].text(), "x");
}

TEST_F(ServiceTest, ClientCancellationCancelsTheEngineStream) {
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, TextRequest());
  auto call = engine_->WaitForGenerate(0);
  ASSERT_TRUE(call.has_value());
  call->stream->Push(Chunk("a", {1}));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  ctx.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(Idle());  // the reactor is done, so OnCancel ran
  EXPECT_TRUE(call->stream->cancelled());
  EXPECT_EQ(Metric(R"(kiln_rpc_requests_total{code="CANCELLED",method="Generate"} 1)"),
            R"(kiln_rpc_requests_total{code="CANCELLED",method="Generate"} 1)");
  // The engine finishing later is harmless (the reactor is gone).
  call->stream->Finish(absl::CancelledError("cancelled"));
}

// A cancel that arrives while the server's write of a message the client has already read is
// still "in flight" on the server: gRPC may then report that write as successful
// (OnWriteDone(true)) after OnCancel. The reactor must finish on its own, without waiting for
// the engine to end the stream. Repeated, because which of the two lands first is a race;
// CI once saw the reactor wait here for the engine.
TEST_F(ServiceTest, CancelRacingAWriteAlwaysFinishesWithoutTheEngine) {
  constexpr size_t kRounds = 200;
  for (size_t i = 0; i < kRounds; ++i) {
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, TextRequest());
    auto call = engine_->WaitForGenerate(i);
    ASSERT_TRUE(call.has_value()) << "round " << i;
    call->stream->Push(Chunk("a", {1}));
    v1::GenerateResponse response;
    ASSERT_TRUE(reader->Read(&response)) << "round " << i;
    ctx.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED) << "round " << i;
    ASSERT_TRUE(Idle()) << "round " << i << ": the reactor waited for the engine";
    EXPECT_TRUE(call->stream->cancelled()) << "round " << i;
    call->stream->Finish(absl::CancelledError("cancelled"));
  }
  EXPECT_EQ(Metric(absl::StrCat(R"(kiln_rpc_requests_total{code="CANCELLED",method="Generate"} )", kRounds)),
            absl::StrCat(R"(kiln_rpc_requests_total{code="CANCELLED",method="Generate"} )", kRounds));
}

TEST_F(ServiceTest, DeadlineIsPropagatedToTheEngine) {
  grpc::ClientContext ctx;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  ctx.set_deadline(absl::ToChronoTime(deadline));
  auto reader = stub_->Generate(&ctx, TextRequest());
  auto call = engine_->WaitForGenerate(0);
  ASSERT_TRUE(call.has_value());
  ASSERT_TRUE(call->request.deadline.has_value());
  EXPECT_LT(absl::AbsDuration(*call->request.deadline - deadline), absl::Seconds(1));
  call->stream->Finish(absl::DeadlineExceededError("engine: deadline passed"));
  v1::GenerateResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(status.error_message(), "engine: deadline passed");
}

TEST_F(ServiceTest, ExpiredDeadlineEndsDeadlineExceededAndCancelsTheEngine) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(300)));
  auto reader = stub_->Generate(&ctx, TextRequest());
  auto call = engine_->WaitForGenerate(0);
  ASSERT_TRUE(call.has_value());  // the engine holds the stream and never produces
  v1::GenerateResponse response;
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(Idle());
  EXPECT_TRUE(call->stream->cancelled());
  EXPECT_EQ(Metric(R"(kiln_rpc_requests_total{code="DEADLINE_EXCEEDED",method="Generate"} 1)"),
            R"(kiln_rpc_requests_total{code="DEADLINE_EXCEEDED",method="Generate"} 1)");
}

TEST_F(ServiceTest, LoadModelProgressThenReady) {
  v1::LoadModelRequest request;
  request.set_model("org/tiny");
  request.set_served_name("tiny");
  request.set_dtype(v1::DTYPE_FLOAT16);
  grpc::ClientContext ctx;
  auto reader = stub_->LoadModel(&ctx, request);
  auto call = engine_->WaitForLoad(0);
  ASSERT_TRUE(call.has_value());
  EXPECT_EQ(call->options.model, "org/tiny");
  EXPECT_EQ(call->options.served_name, "tiny");
  EXPECT_EQ(call->options.dtype, engine::WeightDType::kFloat16);
  engine::LoadProgressEvent progress;
  progress.stage = engine::LoadProgressEvent::Stage::kLoadingWeights;
  progress.bytes_done = 10;
  progress.bytes_total = 100;
  call->stream->Push(progress);
  v1::LoadModelEvent event;
  ASSERT_TRUE(reader->Read(&event));
  ASSERT_TRUE(event.has_progress());
  EXPECT_EQ(event.progress().stage(), v1::LoadProgress::STAGE_LOADING_WEIGHTS);
  EXPECT_EQ(event.progress().bytes_total(), 100);
  engine::ModelInfo info;
  info.served_name = "tiny";
  info.state = engine::ModelState::kReady;
  info.architecture = "LlamaForCausalLM";
  call->stream->Push(info);
  call->stream->Finish(absl::OkStatus());
  ASSERT_TRUE(reader->Read(&event));
  ASSERT_TRUE(event.has_ready());
  EXPECT_EQ(event.ready().served_name(), "tiny");
  EXPECT_EQ(event.ready().state(), v1::MODEL_STATE_READY);
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(ServiceTest, LoadModelDropsStaleProgressAndMapsErrors) {
  engine::LoadProgressEvent p1, p2;
  p1.tensors_done = 1;
  p2.tensors_done = 2;
  engine::ModelInfo ready;
  ready.served_name = "m";
  engine_->ScriptLoad({{p1, p2, ready}, absl::OkStatus()});
  v1::LoadModelRequest request;
  request.set_model("m");
  std::vector<v1::LoadModelEvent> events;
  {
    grpc::ClientContext ctx;
    auto reader = stub_->LoadModel(&ctx, request);
    v1::LoadModelEvent event;
    while (reader->Read(&event)) events.push_back(event);
    EXPECT_TRUE(reader->Finish().ok());
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].progress().tensors_done(), 2);
  EXPECT_TRUE(events[1].has_ready());

  engine_->ScriptLoad({{}, absl::UnimplementedError("gptq on load")});
  grpc::ClientContext ctx;
  auto reader = stub_->LoadModel(&ctx, request);
  v1::LoadModelEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED);

  grpc::ClientContext ctx2;
  request.clear_model();
  auto reader2 = stub_->LoadModel(&ctx2, request);
  EXPECT_FALSE(reader2->Read(&event));
  EXPECT_EQ(reader2->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServiceTest, UnaryRpcsFinishFromEngineThreads) {
  engine_->set_hold_callbacks(true);
  engine_->SetUnloadResult(engine::UnloadResult{1000, 2});
  v1::UnloadModelRequest request;
  request.set_served_name("m");
  request.set_drain(true);
  v1::UnloadModelResponse response;
  grpc::ClientContext ctx;
  grpc::Status status;
  absl::Notification done;
  stub_->async()->UnloadModel(&ctx, &request, &response, [&](grpc::Status s) {
    status = s;
    done.Notify();
  });
  // The engine holds the completion; the RPC stays open until it is released.
  ASSERT_TRUE(engine_->WaitForHeldCallbacks(1));
  EXPECT_FALSE(done.HasBeenNotified());
  engine_->ReleaseCallbacks();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.freed_bytes(), 1000);
  EXPECT_EQ(response.aborted_requests(), 2);
  EXPECT_EQ(engine_->last_unary_args(), "UnloadModel m drain=1");
}

TEST_F(ServiceTest, UnaryStatusMappingAndValidation) {
  {
    engine_->SetUnloadResult(absl::NotFoundError("model 'x' is not loaded"));
    v1::UnloadModelRequest request;
    request.set_served_name("x");
    v1::UnloadModelResponse response;
    grpc::ClientContext ctx;
    grpc::Status s = stub_->UnloadModel(&ctx, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(s.error_message(), "model 'x' is not loaded");
  }
  {
    const int calls = engine_->num_unary_calls();
    v1::UnloadModelRequest request;  // no served_name
    v1::UnloadModelResponse response;
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->UnloadModel(&ctx, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(engine_->num_unary_calls(), calls);
  }
  {
    engine::ModelInfo m;
    m.served_name = "a";
    m.state = engine::ModelState::kReady;
    engine_->SetModels({m, m});
    v1::ListModelsResponse response;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListModels(&ctx, {}, &response).ok());
    ASSERT_EQ(response.models_size(), 2);
    EXPECT_EQ(response.models(0).state(), v1::MODEL_STATE_READY);
  }
  {
    engine_->SetGetModelResult(absl::FailedPreconditionError("still loading"));
    v1::GetModelRequest request;
    request.set_served_name("a");
    v1::ModelInfo response;
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->GetModel(&ctx, request, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  {
    engine::AdapterInfo a;
    a.served_name = "ad";
    a.rank = 8;
    engine_->SetLoadAdapterResult(a);
    v1::LoadAdapterRequest request;
    request.set_model("m");
    request.set_adapter("ad");
    request.set_pin(true);
    v1::AdapterInfo response;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->LoadAdapter(&ctx, request, &response).ok());
    EXPECT_EQ(response.rank(), 8);
    EXPECT_EQ(engine_->last_unary_args(), "LoadAdapter m ad pin=1");
    request.clear_adapter();
    grpc::ClientContext ctx2;
    EXPECT_EQ(stub_->LoadAdapter(&ctx2, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    engine_->SetUnloadAdapterResult(absl::FailedPreconditionError("adapter in use"));
    v1::UnloadAdapterRequest request;
    request.set_model("m");
    request.set_served_name("ad");
    v1::UnloadAdapterResponse response;
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->UnloadAdapter(&ctx, request, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  {
    engine_->SetListAdaptersResult(absl::NotFoundError("no model"));
    v1::ListAdaptersRequest request;
    request.set_model("zzz");
    v1::ListAdaptersResponse response;
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->ListAdapters(&ctx, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    engine_->SetTokenizeResult(engine::TokenizeResult{{1, 2}, {"a", "b"}});
    v1::TokenizeRequest request;
    request.set_model("m");
    request.set_text("ab");
    request.set_add_special_tokens(true);
    v1::TokenizeResponse response;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Tokenize(&ctx, request, &response).ok());
    EXPECT_THAT(response.token_ids(), ::testing::ElementsAre(1, 2));
    EXPECT_EQ(response.tokens_size(), 0);  // return_tokens not asked
    EXPECT_EQ(engine_->last_unary_args(), "Tokenize m ab special=1");
  }
  {  // Tokenize is a raw method: invalid UTF-8 names the field and never reaches the engine
    v1::TokenizeRequest request;
    request.set_model("m");
    request.set_text(std::string("ok\xe2\x82", 4));  // a truncated euro sign
    v1::TokenizeResponse response;
    grpc::ClientContext ctx;
    const grpc::Status status = stub_->Tokenize(&ctx, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), "text: must be valid UTF-8 (invalid byte at offset 2 of the field)");
    EXPECT_EQ(engine_->last_unary_args(), "Tokenize m ab special=1");  // unchanged
  }
}

TEST_F(ServiceTest, GetServerInfo) {
  engine::EngineInfo info;
  info.devices.push_back({"cpu", "host", 0, 0, 0, 0, 0, 0, 0});
  info.architectures = {"LlamaForCausalLM", "Qwen2ForCausalLM"};
  engine_->SetInfo(info);
  v1::ServerInfo response;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->GetServerInfo(&ctx, {}, &response).ok());
  EXPECT_EQ(response.version(), "9.9.9");
  EXPECT_EQ(response.git_commit(), "deadbeef");
  EXPECT_EQ(response.build_type(), "Test");
  EXPECT_FALSE(response.cuda_built());
  ASSERT_EQ(response.devices_size(), 1);
  EXPECT_EQ(response.architectures_size(), 2);
  EXPECT_EQ(response.limits().max_logprobs(), 11);
  EXPECT_EQ(response.limits().max_request_bytes(), 4 << 20);
  EXPECT_EQ(response.limits().max_concurrent_streams(), 128);
  EXPECT_GE(response.uptime_ms(), 0);
  EXPECT_FALSE(response.draining());
}

TEST_F(ServiceTest, HealthFollowsModelsAndDrain) {
  server_->FlushHealth();
  grpc::StatusCode code;
  EXPECT_EQ(Health(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("kiln.v1.Kiln"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("liveness"), HealthCheckResponse::SERVING);
  Health("model/m", &code);
  EXPECT_EQ(code, grpc::StatusCode::NOT_FOUND);

  engine_->NotifyModelState("m", engine::ModelState::kLoading);
  server_->FlushHealth();
  EXPECT_EQ(Health("model/m"), HealthCheckResponse::NOT_SERVING);
  engine_->NotifyModelState("m", engine::ModelState::kReady);
  server_->FlushHealth();
  EXPECT_EQ(Health("model/m"), HealthCheckResponse::SERVING);

  server_->BeginDrain();
  server_->FlushHealth();
  EXPECT_TRUE(engine_->drain_begun());
  EXPECT_EQ(Health(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("kiln.v1.Kiln"), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("model/m"), HealthCheckResponse::NOT_SERVING);
  // A draining process is alive: the liveness probe must not get it killed.
  EXPECT_EQ(Health("liveness"), HealthCheckResponse::SERVING);
  // A model becoming ready during drain does not bring readiness back.
  engine_->NotifyModelState("m", engine::ModelState::kReady);
  server_->SetServing(true);
  server_->FlushHealth();
  EXPECT_EQ(Health("model/m"), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_THAT(metrics_->Text(), HasSubstr("kiln_draining 1"));
}

TEST_F(ServiceTest, DrainRejectsNewRpcsAndLetsInFlightStreamsFinish) {
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, TextRequest());
  auto call = engine_->WaitForGenerate(0);
  ASSERT_TRUE(call.has_value());

  server_->BeginDrain();
  std::vector<v1::GenerateResponse> responses;
  grpc::Status status = GenerateAll(TextRequest(), &responses);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "server is draining");
  EXPECT_EQ(engine_->num_generate_calls(), 1u);
  {
    v1::ListModelsResponse response;
    grpc::ClientContext c;
    EXPECT_EQ(stub_->ListModels(&c, {}, &response).error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  {
    v1::ServerInfo response;
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->GetServerInfo(&c, {}, &response).ok());
    EXPECT_TRUE(response.draining());
  }
  EXPECT_FALSE(server_->WaitForIdle(absl::Now()));  // the stream is still in flight

  call->stream->Push(FinalChunk("done", {7}, engine::FinishReason::kEos));
  call->stream->Finish(absl::OkStatus());
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.text(), "done");
  EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_EOS);
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(Idle());
}

TEST_F(ServiceTest, ShutdownEndsRemainingStreamsUnavailable) {
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, TextRequest());
  ASSERT_TRUE(engine_->WaitForGenerate(0).has_value());
  server_->BeginDrain();
  EXPECT_FALSE(server_->WaitForIdle(absl::Now() + absl::Milliseconds(50)));
  server_->Shutdown(absl::Seconds(5));
  EXPECT_TRUE(engine_->shut_down());
  v1::GenerateResponse response;
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServiceTest, MetricsAndLogsAfterRpcs) {
  for (int i = 0; i < 2; ++i) {
    v1::ListModelsResponse response;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListModels(&ctx, {}, &response).ok());
  }
  engine_->SetGetModelResult(absl::NotFoundError("nope"));
  {
    v1::GetModelRequest request;
    request.set_served_name("x");
    v1::ModelInfo response;
    grpc::ClientContext ctx;
    EXPECT_FALSE(stub_->GetModel(&ctx, request, &response).ok());
  }
  const std::string text = metrics_->Text();
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_requests_total{code="OK",method="ListModels"} 2)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_requests_total{code="NOT_FOUND",method="GetModel"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_in_flight{method="ListModels"} 0)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_rpc_duration_seconds_count{method="ListModels"} 2)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_build_info{commit="deadbeef",cuda="false",version="9.9.9"} 1)"));
  absl::MutexLock lock(&log_mu_);
  int rpc_end = 0;
  for (const std::string& line : log_lines_) {
    if (absl::StrContains(line, "rpc_end method=GetModel code=NOT_FOUND")) ++rpc_end;
  }
  EXPECT_EQ(rpc_end, 1);
}

TEST_F(ServiceTest, RpcEndLogsModelTokensAndTimingsButNoText) {
  for (const bool log_prompts : {false, true}) {
    SCOPED_TRACE(log_prompts ? "log_prompts" : "default");
    if (log_prompts) {
      server_->Shutdown(absl::Seconds(1));
      StartServer(Options{"", "", /*log_prompts=*/true});
    }
    {
      absl::MutexLock lock(&log_mu_);
      log_lines_.clear();
    }
    grpc::ClientContext ctx;
    auto reader = stub_->Generate(&ctx, TextRequest("secret prompt words"));
    auto call = engine_->WaitForGenerate(0);
    ASSERT_TRUE(call.has_value());
    engine::GenerateChunk last = FinalChunk("generated words", {5, 6}, engine::FinishReason::kEos);
    last.finish->timing.queue_ms = 3;
    last.finish->timing.time_to_first_token_ms = 9;
    call->stream->Push(std::move(last));
    call->stream->Finish(absl::OkStatus());
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    ASSERT_TRUE(reader->Finish().ok());
    ASSERT_TRUE(server_->WaitForIdle(absl::Now() + kWait));  // rpc_end is logged before

    absl::MutexLock lock(&log_mu_);
    std::string line;
    for (const std::string& l : log_lines_) {
      if (absl::StrContains(l, "rpc_end method=Generate")) line = l;
    }
    ASSERT_FALSE(line.empty());
    for (const char* field : {"model=m", "adapter=", "prompt_tokens=2", "completion_tokens=2",
                              "queue_ms=3", "ttft_ms=9", "finish_reason=eos", "code=OK"}) {
      EXPECT_THAT(line, HasSubstr(field));
    }
    EXPECT_THAT(line, ::testing::Not(HasSubstr("generated words")));  // never output text
    if (log_prompts) {
      EXPECT_THAT(line, HasSubstr("secret prompt words"));
    } else {
      EXPECT_THAT(line, ::testing::Not(HasSubstr("secret")));
    }
  }
}

class AuthServiceTest : public ServiceTest {
 protected:
  void SetUp() override { StartServer(Options{"admin-tok", "inf-tok"}); }

  grpc::StatusCode ListModels(const std::string& authorization) {
    grpc::ClientContext ctx;
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    v1::ListModelsResponse response;
    return stub_->ListModels(&ctx, {}, &response).error_code();
  }
  grpc::StatusCode Unload(const std::string& authorization) {
    grpc::ClientContext ctx;
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    v1::UnloadModelRequest request;
    request.set_served_name("m");
    v1::UnloadModelResponse response;
    return stub_->UnloadModel(&ctx, request, &response).error_code();
  }
};

TEST_F(AuthServiceTest, TokensAndClasses) {
  EXPECT_EQ(ListModels(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListModels("Bearer wrong"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListModels("Bearer INF-TOK"), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListModels("Bearer inf-tok"), grpc::StatusCode::OK);
  EXPECT_EQ(ListModels("bearer admin-tok"), grpc::StatusCode::OK);
  EXPECT_EQ(Unload(""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Unload("Bearer inf-tok"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Unload("Bearer admin-tok"), grpc::StatusCode::OK);
  EXPECT_EQ(engine_->num_unary_calls(), 3);  // two ListModels, one UnloadModel

  std::vector<v1::GenerateResponse> responses;
  EXPECT_EQ(GenerateAll(TextRequest(), &responses).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(engine_->num_generate_calls(), 0u);
  v1::LoadModelRequest load;
  load.set_model("m");
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer inf-tok");
  auto reader = stub_->LoadModel(&ctx, load);
  v1::LoadModelEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Health needs no token.
  server_->FlushHealth();
  EXPECT_EQ(Health(""), HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace kiln::server
