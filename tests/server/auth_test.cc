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
