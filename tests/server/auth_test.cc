#include "server/auth.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::server {
namespace {

TEST(AuthTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(AuthTest, DisabledWithoutTokens) {
  Authenticator auth({}, {});
  EXPECT_FALSE(auth.enabled());
  EXPECT_TRUE(auth.Check("", RpcClass::kAdmin).ok());
}

TEST(AuthTest, ClassesAndCodes) {
  Authenticator auth({"adm1", "adm2"}, {"inf"});
  EXPECT_TRUE(auth.Check("Bearer adm2", RpcClass::kAdmin).ok());
  EXPECT_TRUE(auth.Check("bearer adm1", RpcClass::kInference).ok());
  EXPECT_TRUE(auth.Check("Bearer inf", RpcClass::kInference).ok());
  EXPECT_EQ(auth.Check("Bearer inf", RpcClass::kAdmin).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth.Check("Bearer INF", RpcClass::kInference).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Check("", RpcClass::kInference).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Check("Basic inf", RpcClass::kInference).code(),
            absl::StatusCode::kUnauthenticated);
  // The message never echoes the token.
  EXPECT_THAT(std::string(auth.Check("Bearer secret123", RpcClass::kAdmin).message()),
              ::testing::Not(::testing::HasSubstr("secret123")));
}

TEST(AuthTest, FromFiles) {
  const std::string admin = ::testing::TempDir() + "/auth_admin.txt";
  const std::string empty = ::testing::TempDir() + "/auth_empty.txt";
  {
    std::ofstream(admin) << "  tok-a \n\ntok-b\n";
    std::ofstream(empty) << "\n  \n";
  }
  auto auth = Authenticator::FromFiles(admin, "");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE((*auth)->Check("Bearer tok-a", RpcClass::kAdmin).ok());
  EXPECT_TRUE((*auth)->Check("Bearer tok-b", RpcClass::kAdmin).ok());
  EXPECT_EQ(Authenticator::FromFiles(empty, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Authenticator::FromFiles("", "/nonexistent/tokens").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kiln::server

namespace kiln::server {
namespace {

TEST(AuthTest, MethodsMapToAccessByPolicy) {
  const AuthPolicy defaults;
  EXPECT_EQ(ClassifyMethod("/grpc.health.v1.Health/Check", defaults), MethodAccess::kOpen);
  EXPECT_EQ(ClassifyMethod("/grpc.health.v1.Health/Watch", defaults), MethodAccess::kOpen);
  EXPECT_EQ(ClassifyMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                           defaults),
            MethodAccess::kInference);
  EXPECT_EQ(ClassifyMethod("/kiln.v1.Kiln/Generate", defaults), MethodAccess::kServiceChecks);
  EXPECT_EQ(ClassifyMethod("/kiln.v1.Kiln/LoadModel", defaults), MethodAccess::kServiceChecks);
  // Unknown services fail closed.
  EXPECT_EQ(ClassifyMethod("/grpc.channelz.v1.Channelz/GetTopChannels", defaults),
            MethodAccess::kInference);
  EXPECT_EQ(ClassifyMethod("", defaults), MethodAccess::kInference);

  const AuthPolicy flipped{/*auth_health=*/true, /*auth_reflection=*/false};
  EXPECT_EQ(ClassifyMethod("/grpc.health.v1.Health/Check", flipped), MethodAccess::kInference);
  EXPECT_EQ(ClassifyMethod("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", flipped),
            MethodAccess::kOpen);
}

grpc::Status RunProcessor(AuthProcessor& processor, const std::string& path,
                          const std::string& authorization) {
  grpc::AuthMetadataProcessor::InputMetadata md;
  md.emplace(grpc::string_ref(":path"), grpc::string_ref(path));
  if (!authorization.empty()) {
    md.emplace(grpc::string_ref("authorization"), grpc::string_ref(authorization));
  }
  grpc::AuthMetadataProcessor::OutputMetadata consumed, response;
  return processor.Process(md, nullptr, &consumed, &response);
}

TEST(AuthTest, ProcessorChecksOnlyWhatThePolicyCovers) {
  auto auth = std::make_shared<Authenticator>(std::vector<std::string>{"adm"},
                                              std::vector<std::string>{"inf"});
  AuthProcessor processor(auth, AuthPolicy{});
  const std::string reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
  EXPECT_EQ(RunProcessor(processor, reflection, "").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(RunProcessor(processor, reflection, "Bearer nope").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(RunProcessor(processor, reflection, "Bearer inf").ok());
  EXPECT_TRUE(RunProcessor(processor, reflection, "Bearer adm").ok());
  EXPECT_TRUE(RunProcessor(processor, "/grpc.health.v1.Health/Check", "").ok());
  // kiln.v1 handlers check (and count) their own credentials.
  EXPECT_TRUE(RunProcessor(processor, "/kiln.v1.Kiln/LoadModel", "").ok());

  AuthProcessor strict(auth, AuthPolicy{/*auth_health=*/true, /*auth_reflection=*/true});
  EXPECT_EQ(RunProcessor(strict, "/grpc.health.v1.Health/Check", "").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(RunProcessor(strict, "/grpc.health.v1.Health/Check", "Bearer inf").ok());
}

}  // namespace
}  // namespace kiln::server
