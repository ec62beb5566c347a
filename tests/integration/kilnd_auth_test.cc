// Bearer-token auth on the real kilnd: admin vs inference credentials (reliability.md §5),
// through a plain gRPC client and through kilnctl --token / $KILN_TOKEN; and the credential
// gRPC's own services need (--auth_health, --auth_reflection), checked in the transport.
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>
#include <gtest/gtest.h>

#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/integration/grpc_clients.h"
#include "tests/integration/kilnd_process.h"

namespace kiln::testing {
namespace {

using ::grpc::health::v1::HealthCheckResponse;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdminToken[] = "admin-7f3c9a";
constexpr char kInferenceToken[] = "infer-51b2e0";

// Adds `authorization: Bearer <token>` to every call of a channel, so helpers that take a
// channel (HealthCheck, ReflectionListServices) can send a token.
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(std::string token) : token_(std::move(token)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", "Bearer " + token_});
    }
    methods->Proceed();
  }

 private:
  std::string token_;
};

class TokenInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::string token) : token_(std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(token_);
  }

 private:
  std::string token_;
};

std::shared_ptr<grpc::Channel> ConnectWithToken(const std::string& address,
                                                const std::string& token) {
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<TokenInterceptorFactory>(token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      address, grpc::InsecureChannelCredentials(), grpc::ChannelArguments(),
      std::move(factories));
}

class KilndAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("kilnd_auth");
    EXPECT_TRUE(dir.ok()) << dir.status();
    if (!dir.ok()) return;
    dir_ = dir->release();
    // Several lines = rotation: the second token of each file is the one used.
    absl::StatusOr<std::string> admin =
        dir_->WriteFile("admin_tokens", std::string("old-admin\n") + kAdminToken + "\n");
    absl::StatusOr<std::string> inference = dir_->WriteFile(
        "inference_tokens", std::string("old-infer\n") + kInferenceToken + "\n");
    EXPECT_TRUE(admin.ok() && inference.ok());
    if (!admin.ok() || !inference.ok()) return;
    absl::StatusOr<std::unique_ptr<KilndProcess>> p = KilndProcess::Start(
        {KilndPath(),
         {"--admin_token_file=" + *admin, "--inference_token_file=" + *inference}});
    // Not ASSERT: a fatal failure in SetUpTestSuite makes gtest *skip* the tests, and a
    // daemon that cannot start must fail them (SetUp asserts kilnd_ is set).
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) kilnd_ = p->release();
  }
  static void TearDownTestSuite() {
    delete kilnd_;
    kilnd_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(kilnd_, nullptr);
    channel_ = Connect(kilnd_->grpc_address());
    stub_ = kiln::v1::Kiln::NewStub(channel_);
  }

  grpc::Status Info(const std::string& token) {
    kiln::v1::ServerInfo info;
    auto ctx = MakeContext(token);
    return stub_->GetServerInfo(ctx.get(), {}, &info);
  }
  grpc::Status Load(const std::string& token) {
    kiln::v1::LoadModelRequest request;
    request.set_model("org/m");
    auto ctx = MakeContext(token);
    auto reader = stub_->LoadModel(ctx.get(), request);
    kiln::v1::LoadModelEvent event;
    while (reader->Read(&event)) {
    }
    return reader->Finish();
  }
  ProcessResult Kilnctl(std::vector<std::string> args, std::vector<std::string> env = {}) {
    args.insert(args.begin(), {KilnctlPath(), "--addr=" + kilnd_->grpc_address()});
    absl::StatusOr<ProcessResult> r = RunProcess(args, env, std::chrono::seconds(30));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }

  static TempDir* dir_;
  static KilndProcess* kilnd_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<kiln::v1::Kiln::Stub> stub_;
};
TempDir* KilndAuthTest::dir_ = nullptr;
KilndProcess* KilndAuthTest::kilnd_ = nullptr;

TEST_F(KilndAuthTest, MissingOrUnknownTokenIsUnauthenticated) {
  EXPECT_EQ(Info("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Info("wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Load("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A prefix of a valid token is not a valid token.
  EXPECT_EQ(Info(std::string(kInferenceToken).substr(0, 5)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The token never comes back in the error.
  const grpc::Status s = Info("wrong-secret-token");
  EXPECT_THAT(s.error_message(), Not(HasSubstr("wrong-secret-token")));
}

TEST_F(KilndAuthTest, MalformedAuthorizationIsUnauthenticated) {
  kiln::v1::ServerInfo info;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ctx.AddMetadata("authorization", std::string("Basic ") + kInferenceToken);
  EXPECT_EQ(stub_->GetServerInfo(&ctx, {}, &info).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(KilndAuthTest, InferenceTokenCannotAdminister) {
  EXPECT_TRUE(Info(kInferenceToken).ok());
  EXPECT_TRUE(Info("old-infer").ok());  // rotation: every line is valid
  EXPECT_EQ(Load(kInferenceToken).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  kiln::v1::UnloadModelRequest request;
  request.set_served_name("m");
  kiln::v1::UnloadModelResponse response;
  auto ctx = MakeContext(kInferenceToken);
  EXPECT_EQ(stub_->UnloadModel(ctx.get(), request, &response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(KilndAuthTest, AdminTokenPassesBothClasses) {
  EXPECT_TRUE(Info(kAdminToken).ok());
  // Past auth, the load fails for lack of a model, not for credentials.
  EXPECT_THAT(Load(kAdminToken).error_code(),
              AnyOf(grpc::StatusCode::UNIMPLEMENTED, grpc::StatusCode::NOT_FOUND));
}

TEST_F(KilndAuthTest, HealthAndMetricsNeedNoToken) {
  // Kubelet probes and Prometheus scrapes carry no credentials.
  HealthCheckResponse::ServingStatus status = HealthCheckResponse::UNKNOWN;
  const grpc::Status s = HealthCheck(channel_, "", &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status, HealthCheckResponse::SERVING);
  absl::StatusOr<PromExposition> metrics = ScrapeMetrics(kilnd_->metrics_port());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
}

TEST_F(KilndAuthTest, ReflectionNeedsATokenByDefault) {
  absl::StatusOr<std::vector<std::string>> anonymous = ReflectionListServices(channel_);
  // (The helper reports a failed read, not the status; the token cases below show the
  // refusal is the credential check.)
  ASSERT_FALSE(anonymous.ok()) << "reflection answered without a token";
  absl::StatusOr<std::vector<std::string>> wrong =
      ReflectionListServices(ConnectWithToken(kilnd_->grpc_address(), "wrong"));
  EXPECT_FALSE(wrong.ok());
  for (const char* token : {kInferenceToken, kAdminToken}) {
    absl::StatusOr<std::vector<std::string>> services =
        ReflectionListServices(ConnectWithToken(kilnd_->grpc_address(), token));
    ASSERT_TRUE(services.ok()) << services.status();
    EXPECT_THAT(*services, ::testing::Contains("kiln.v1.Kiln"));
  }
  // kiln.v1 still answers with its own codes through the transport check.
  EXPECT_EQ(Load(kInferenceToken).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST(KilndAuthScopesTest, HealthCanRequireATokenAndReflectionCanBeOpen) {
  absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("kilnd_auth_scopes");
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::string> tokens = (*dir)->WriteFile("tokens", std::string(kInferenceToken));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  absl::StatusOr<std::unique_ptr<KilndProcess>> kilnd = KilndProcess::Start(
      {KilndPath(),
       {"--inference_token_file=" + *tokens, "--auth_health=true", "--auth_reflection=false"}});
  ASSERT_TRUE(kilnd.ok()) << kilnd.status();
  const std::string address = (*kilnd)->grpc_address();

  HealthCheckResponse::ServingStatus status = HealthCheckResponse::UNKNOWN;
  EXPECT_EQ(HealthCheck(Connect(address), "", &status).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  const grpc::Status with_token = HealthCheck(ConnectWithToken(address, kInferenceToken), "", &status);
  ASSERT_TRUE(with_token.ok()) << with_token.error_message() << "\n" << (*kilnd)->Log();
  EXPECT_EQ(status, HealthCheckResponse::SERVING);

  absl::StatusOr<std::vector<std::string>> services = ReflectionListServices(Connect(address));
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_THAT(*services, ::testing::Contains("grpc.health.v1.Health"));
  EXPECT_THAT((*kilnd)->Log(), HasSubstr("auth_health=on auth_reflection=off"));
}

TEST_F(KilndAuthTest, KilnctlTokenFlagAndEnvironment) {
  ProcessResult r = Kilnctl({"info"}, {"KILN_TOKEN="});
  EXPECT_EQ(r.exit_code, 16) << r.err;
  EXPECT_THAT(r.err, HasSubstr("error: UNAUTHENTICATED: "));

  r = Kilnctl({"info", std::string("--token=") + kInferenceToken});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("version:"));

  r = Kilnctl({"info"}, {std::string("KILN_TOKEN=") + kInferenceToken});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // --token wins over the environment.
  r = Kilnctl({"info", "--token=bogus"}, {std::string("KILN_TOKEN=") + kInferenceToken});
  EXPECT_EQ(r.exit_code, 16) << r.err;

  r = Kilnctl({"load", "org/m", std::string("--token=") + kInferenceToken});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_THAT(r.err, HasSubstr("error: PERMISSION_DENIED: "));

  r = Kilnctl({"load", "org/m", std::string("--token=") + kAdminToken});
  EXPECT_THAT(r.exit_code, AnyOf(12, 5)) << r.err;
}

}  // namespace
}  // namespace kiln::testing
