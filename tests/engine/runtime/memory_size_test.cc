#include "engine/runtime/memory_size.h"

#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

// Units as accelerate's convert_file_size_to_int reads them.
TEST(MemorySizeTest, ParsesBytesAndUnits) {
  EXPECT_EQ(*ParseMemorySize("1073741824", "f"), 1073741824u);
  EXPECT_EQ(*ParseMemorySize("20GiB", "f"), 20ull << 30);
  EXPECT_EQ(*ParseMemorySize("500MB", "f"), 500000000u);
  EXPECT_EQ(*ParseMemorySize("1.5GiB", "f"), 3ull << 29);
  EXPECT_EQ(*ParseMemorySize("8Gb", "f"), 1000000000u);  // lowercase b: bits
  EXPECT_EQ(*ParseMemorySize("2kib", "f"), 2048u);
}

TEST(MemorySizeTest, RejectsGarbageNamingTheField) {
  for (const char* bad : {"", "GiB", "-1GiB", "1..2GB", "12 parsecs", "1.5", ".5GB",
                          "99999999999999999999999GiB"}) {
    auto r = ParseMemorySize(bad, "max_memory[\"cpu\"]");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("max_memory[\"cpu\"]"), std::string::npos);
  }
}

}  // namespace
}  // namespace kiln::engine
