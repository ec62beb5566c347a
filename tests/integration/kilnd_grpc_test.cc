// The real kilnd on loopback, driven by plain generated gRPC clients. Until an engine can
// load models, every model RPC ends in a lookup or load error: these tests pin those codes.
#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/integration/grpc_clients.h"
#include "tests/integration/kilnd_process.h"

namespace kiln::testing {
namespace {

using ::grpc::health::v1::HealthCheckResponse;
using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// One daemon for the suite (read-only checks); killed, not drained, at the end — the drain
// tests below cover the SIGTERM path with their own daemons.
class KilndTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<KilndProcess>> p =
        KilndProcess::Start({KilndPath(), {"--max_new_tokens=123", "--default_max_new_tokens=100", "--max_logprobs=7"}});
    // Not ASSERT: a fatal failure in SetUpTestSuite makes gtest *skip* the tests, and a
    // daemon that cannot start must fail them (SetUp asserts kilnd_ is set).
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) kilnd_ = p->release();
  }
  static void TearDownTestSuite() {
    delete kilnd_;
    kilnd_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(kilnd_, nullptr);
    channel_ = Connect(kilnd_->grpc_address());
    stub_ = kiln::v1::Kiln::NewStub(channel_);
  }

  static KilndProcess* kilnd_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<kiln::v1::Kiln::Stub> stub_;
};
KilndProcess* KilndTest::kilnd_ = nullptr;

TEST_F(KilndTest, ReadyFileNamesTheRunningProcess) {
  EXPECT_GT(kilnd_->grpc_port(), 0);
  EXPECT_GT(kilnd_->metrics_port(), 0);
  EXPECT_NE(kilnd_->grpc_port(), kilnd_->metrics_port());
  EXPECT_TRUE(kilnd_->running());
}

TEST_F(KilndTest, HealthOverallAndServiceAreServing) {
  HealthCheckResponse::ServingStatus status = HealthCheckResponse::UNKNOWN;
  grpc::Status s = HealthCheck(channel_, "", &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status, HealthCheckResponse::SERVING);
  s = HealthCheck(channel_, "kiln.v1.Kiln", &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status, HealthCheckResponse::SERVING);
}

TEST_F(KilndTest, HealthUnknownServiceIsNotFound) {
  HealthCheckResponse::ServingStatus status = HealthCheckResponse::UNKNOWN;
  EXPECT_EQ(HealthCheck(channel_, "no.such.Service", &status).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // A model that was never loaded has no health entry either.
  EXPECT_EQ(HealthCheck(channel_, "model/never-loaded", &status).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(KilndTest, ReflectionListsServices) {
  absl::StatusOr<std::vector<std::string>> services = ReflectionListServices(channel_);
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_THAT(*services, Contains("kiln.v1.Kiln"));
  EXPECT_THAT(*services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(*services, Contains("grpc.reflection.v1alpha.ServerReflection"));
}

TEST_F(KilndTest, ReflectionServesTheKilnSchema) {
  absl::StatusOr<std::vector<google::protobuf::FileDescriptorProto>> files =
      ReflectionFileContainingSymbol(channel_, "kiln.v1.Kiln");
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_FALSE(files->empty());
  const google::protobuf::FileDescriptorProto& file = (*files)[0];
  EXPECT_EQ(file.name(), "kiln/v1/kiln.proto");
  EXPECT_EQ(file.package(), "kiln.v1");
  ASSERT_EQ(file.service_size(), 1);
  std::vector<std::string> methods;
  for (const auto& m : file.service(0).method()) methods.push_back(m.name());
  // The served schema is the one this client was generated from.
  const google::protobuf::ServiceDescriptor* local =
      kiln::v1::GenerateRequest::descriptor()->file()->FindServiceByName("Kiln");
  ASSERT_NE(local, nullptr);
  ASSERT_EQ(static_cast<int>(methods.size()), local->method_count());
  for (int i = 0; i < local->method_count(); ++i) EXPECT_EQ(methods[i], local->method(i)->name());
}

TEST_F(KilndTest, ServerInfoFields) {
  kiln::v1::ServerInfo info;
  auto ctx = MakeContext();
  grpc::Status s = stub_->GetServerInfo(ctx.get(), {}, &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.version(), KILN_VERSION);
  EXPECT_FALSE(info.git_commit().empty());
  EXPECT_EQ(info.build_type(), KILN_BUILD_TYPE);
  EXPECT_EQ(info.cuda_built(), KILN_WITH_CUDA_BUILT);
  EXPECT_FALSE(info.draining());
  EXPECT_GE(info.uptime_ms(), 0);
  std::vector<std::string> devices;
  for (const auto& d : info.devices()) devices.push_back(d.name());
  EXPECT_THAT(devices, Contains("cpu"));
  // Limits reflect the flags kilnd was started with.
  EXPECT_EQ(info.limits().max_new_tokens(), 123);
  EXPECT_EQ(info.limits().max_logprobs(), 7);
  EXPECT_GT(info.limits().max_prompt_tokens(), 0);
  EXPECT_GT(info.limits().max_concurrent_streams(), 0);

  // Uptime moves forward.
  kiln::v1::ServerInfo later;
  auto ctx2 = MakeContext();
  ASSERT_TRUE(stub_->GetServerInfo(ctx2.get(), {}, &later).ok());
  EXPECT_GE(later.uptime_ms(), info.uptime_ms());
}

TEST_F(KilndTest, LoadModelFailsWithoutALoader) {
  kiln::v1::LoadModelRequest request;
  request.set_model("org/some-model");
  auto ctx = MakeContext();
  auto reader = stub_->LoadModel(ctx.get(), request);
  kiln::v1::LoadModelEvent event;
  while (reader->Read(&event)) {
    EXPECT_FALSE(event.has_ready()) << "a load cannot succeed without a model";
  }
  const grpc::Status s = reader->Finish();
  EXPECT_THAT(s.error_code(),
              AnyOf(grpc::StatusCode::UNIMPLEMENTED, grpc::StatusCode::NOT_FOUND))
      << s.error_message();
}

TEST_F(KilndTest, LoadModelRefusesTrustRemoteCode) {
  kiln::v1::LoadModelRequest request;
  request.set_model("org/some-model");
  request.set_trust_remote_code(true);
  auto ctx = MakeContext();
  auto reader = stub_->LoadModel(ctx.get(), request);
  kiln::v1::LoadModelEvent event;
  EXPECT_FALSE(reader->Read(&event));
  const grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("trust_remote_code"));
}

TEST_F(KilndTest, UnknownModelIsNotFoundEverywhere) {
  {
    kiln::v1::GenerateRequest request;
    request.set_model("nope");
    request.set_text("hello");
    auto ctx = MakeContext();
    auto reader = stub_->Generate(ctx.get(), request);
    kiln::v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response));
    const grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("nope"));
  }
  {
    kiln::v1::GetModelRequest request;
    request.set_served_name("nope");
    kiln::v1::ModelInfo info;
    auto ctx = MakeContext();
    EXPECT_EQ(stub_->GetModel(ctx.get(), request, &info).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    kiln::v1::TokenizeRequest request;
    request.set_model("nope");
    request.set_text("x");
    kiln::v1::TokenizeResponse response;
    auto ctx = MakeContext();
    EXPECT_EQ(stub_->Tokenize(ctx.get(), request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    kiln::v1::UnloadModelRequest request;
    request.set_served_name("nope");
    kiln::v1::UnloadModelResponse response;
    auto ctx = MakeContext();
    EXPECT_EQ(stub_->UnloadModel(ctx.get(), request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
}

TEST_F(KilndTest, LoadModelRejectsNamesEscapingTheRoots) {
  for (const char* name : {"../etc", "/etc/passwd", "a/../../b"}) {
    kiln::v1::LoadModelRequest request;
    request.set_model(name);
    auto ctx = MakeContext();
    auto reader = stub_->LoadModel(ctx.get(), request);
    kiln::v1::LoadModelEvent event;
    while (reader->Read(&event)) {
      EXPECT_FALSE(event.has_ready()) << name;
    }
    const grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name << ": "
                                                                 << s.error_message();
    EXPECT_THAT(s.error_message(), Not(HasSubstr(kilnd_->dir()))) << name;
  }
}

// ListModels reports what the daemon knows, failed loads included (kiln.proto); nothing can
// be READY without a loadable model.
TEST_F(KilndTest, FailedLoadIsListedAsFailedAndNothingIsReady) {
  kiln::v1::LoadModelRequest request;
  request.set_model("org/missing-model");
  auto ctx = MakeContext();
  auto reader = stub_->LoadModel(ctx.get(), request);
  kiln::v1::LoadModelEvent event;
  while (reader->Read(&event)) {
  }
  const grpc::Status load = reader->Finish();
  ASSERT_FALSE(load.ok());

  kiln::v1::ListModelsResponse models;
  auto ctx2 = MakeContext();
  ASSERT_TRUE(stub_->ListModels(ctx2.get(), {}, &models).ok());
  bool listed = false;
  for (const kiln::v1::ModelInfo& m : models.models()) {
    EXPECT_NE(m.state(), kiln::v1::MODEL_STATE_READY) << m.served_name();
    if (m.served_name() != "org/missing-model") continue;
    listed = true;
    EXPECT_EQ(m.state(), kiln::v1::MODEL_STATE_FAILED);
    EXPECT_FALSE(m.error().empty());
  }
  if (load.error_code() == grpc::StatusCode::NOT_FOUND) {
    // The model store resolved the name and failed: the engine keeps the failure visible.
    EXPECT_TRUE(listed);
    HealthCheckResponse::ServingStatus status = HealthCheckResponse::UNKNOWN;
    const grpc::Status h = HealthCheck(channel_, "model/org/missing-model", &status);
    if (h.ok()) {
      EXPECT_EQ(status, HealthCheckResponse::NOT_SERVING);
    }
  }

  kiln::v1::ListAdaptersResponse adapters;
  auto ctx3 = MakeContext();
  ASSERT_TRUE(stub_->ListAdapters(ctx3.get(), {}, &adapters).ok());
  EXPECT_EQ(adapters.adapters_size(), 0);
}

TEST_F(KilndTest, MetricsAreValidPrometheusTextAndCountRpcs) {
  absl::StatusOr<PromExposition> before = ScrapeMetrics(kilnd_->metrics_port());
  ASSERT_TRUE(before.ok()) << before.status();
  // (.find, not .at: a family with no samples yet, e.g. before the first RPC, is absent.)
  auto type_of = [](const PromExposition& e, const std::string& family) {
    auto it = e.type.find(family);
    return it == e.type.end() ? std::string("<absent>") : it->second;
  };
  EXPECT_EQ(type_of(*before, "kiln_build_info"), "gauge");
  EXPECT_EQ(CountSamples(*before, "kiln_build_info", {{"version", KILN_VERSION}}), 1);
  EXPECT_EQ(SumSamples(*before, "kiln_build_info"), 1);

  const std::map<std::string, std::string> ok_info = {{"method", "GetServerInfo"},
                                                      {"code", "OK"}};
  const std::map<std::string, std::string> missing = {{"method", "GetModel"},
                                                      {"code", "NOT_FOUND"}};
  const double info_before = SumSamples(*before, "kiln_rpc_requests_total", ok_info);
  const double missing_before = SumSamples(*before, "kiln_rpc_requests_total", missing);
  for (int i = 0; i < 3; ++i) {
    kiln::v1::ServerInfo info;
    auto ctx = MakeContext();
    ASSERT_TRUE(stub_->GetServerInfo(ctx.get(), {}, &info).ok());
  }
  kiln::v1::GetModelRequest request;
  request.set_served_name("nope");
  kiln::v1::ModelInfo model;
  auto ctx = MakeContext();
  ASSERT_EQ(stub_->GetModel(ctx.get(), request, &model).error_code(),
            grpc::StatusCode::NOT_FOUND);

  absl::StatusOr<PromExposition> after = ScrapeMetrics(kilnd_->metrics_port());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(type_of(*after, "kiln_rpc_requests_total"), "counter");
  EXPECT_TRUE(after->help.count("kiln_rpc_requests_total"));
  EXPECT_EQ(SumSamples(*after, "kiln_rpc_requests_total", ok_info), info_before + 3);
  EXPECT_EQ(SumSamples(*after, "kiln_rpc_requests_total", missing), missing_before + 1);
}

// --- Daemons with their own settings. ---

TEST(KilndReflectionTest, ReflectionCanBeSwitchedOffWhileHealthStaysUp) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> kilnd =
      KilndProcess::Start({KilndPath(), {"--enable_reflection=false"}});
  ASSERT_TRUE(kilnd.ok()) << kilnd.status();
  std::shared_ptr<grpc::Channel> channel = Connect((*kilnd)->grpc_address());
  absl::StatusOr<std::vector<std::string>> services = ReflectionListServices(channel);
  EXPECT_FALSE(services.ok()) << "reflection answered although it was switched off";
  grpc::health::v1::Health::Stub health(channel);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  auto ctx = MakeContext("", std::chrono::seconds(10));
  ASSERT_TRUE(health.Check(ctx.get(), request, &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
}

// --- SIGTERM drain: each test owns its daemon. ---

TEST(KilndDrainTest, SigtermFlipsHealthThenExitsZero) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> kilnd =
      KilndProcess::Start({KilndPath(), {"--drain_timeout_s=5", "--log_format=json"}});
  ASSERT_TRUE(kilnd.ok()) << kilnd.status();
  std::shared_ptr<grpc::Channel> channel = Connect((*kilnd)->grpc_address());
  grpc::health::v1::Health::Stub health(channel);
  grpc::health::v1::HealthCheckRequest request;  // "" = overall readiness
  auto ctx = MakeContext("", std::chrono::seconds(30));
  auto watch = health.Watch(ctx.get(), request);
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(watch->Read(&response));
  ASSERT_EQ(response.status(), HealthCheckResponse::SERVING);

  ASSERT_TRUE((*kilnd)->Signal(SIGTERM).ok());
  // Readiness must fail before the process goes away (Kubernetes stops routing to it).
  ASSERT_TRUE(watch->Read(&response)) << (*kilnd)->Log();
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  ctx->TryCancel();
  watch->Finish();

  // drain_timeout_s (5) plus the server's shutdown grace (5) plus slack.
  absl::StatusOr<int> code = (*kilnd)->Wait(std::chrono::seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << (*kilnd)->Log();
  const std::string log = (*kilnd)->Log();
  EXPECT_THAT(log, HasSubstr("drain_begin"));
  EXPECT_THAT(log, HasSubstr("\"code\":0"));
}

TEST(KilndDrainTest, SigintIdleExitsZeroPromptly) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> kilnd =
      KilndProcess::Start({KilndPath(), {"--drain_timeout_s=30"}});
  ASSERT_TRUE(kilnd.ok()) << kilnd.status();
  // With nothing in flight the drain does not wait for its deadline (30 s).
  absl::StatusOr<int> code = (*kilnd)->Stop(SIGINT, std::chrono::seconds(15));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << (*kilnd)->Log();
}

}  // namespace
}  // namespace kiln::testing
