#include "engine/common/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace kiln {
namespace {

absl::StatusOr<int> Parse(int v) {
  if (v < 0) return absl::InvalidArgumentError("negative");
  return v * 2;
}

absl::Status Check(int v) {
  if (v == 7) return absl::NotFoundError("seven");
  return absl::OkStatus();
}

absl::StatusOr<int> Chain(int v) {
  KILN_RETURN_IF_ERROR(Check(v));
  KILN_ASSIGN_OR_RETURN(int doubled, Parse(v));
  KILN_ASSIGN_OR_RETURN(auto again, Parse(doubled));  // two uses in one scope compile
  return again;
}

absl::StatusOr<std::unique_ptr<std::string>> MakeMoveOnly(bool ok) {
  if (!ok) return absl::InternalError("nope");
  return std::make_unique<std::string>("x");
}

absl::StatusOr<std::string> UseMoveOnly(bool ok) {
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<std::string> p, MakeMoveOnly(ok));
  return *p;
}

TEST(StatusMacrosTest, PropagatesErrorsAndValues) {
  EXPECT_EQ(*Chain(3), 12);
  EXPECT_EQ(Chain(7).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Chain(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*UseMoveOnly(true), "x");
  EXPECT_EQ(UseMoveOnly(false).status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace kiln
