#include "engine/placement/memory_spec.h"

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kiln::engine::placement {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Every value accelerate's convert_file_size_to_int was asked about, with its answer
// (tools/fixtures/make_placement_fixtures.py).
TEST(MemorySpec, SizesMatchAccelerate) {
  std::ifstream in(std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/placement/cases.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_GT(j["memory_sizes"].size(), 30u);
  for (const nlohmann::json& e : j["memory_sizes"]) {
    SCOPED_TRACE(e.dump());
    absl::StatusOr<int64_t> got = e["value"].is_string()
                                      ? ParseMemorySize("max_memory[\"0\"]", e["value"].get<std::string>())
                                      : ParseMemorySize("max_memory[\"0\"]", e["value"].get<int64_t>());
    if (e["bytes"].is_null()) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    } else {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, e["bytes"].get<int64_t>());
    }
  }
}

TEST(MemorySpec, DigitStringsAreBytes) {
  EXPECT_EQ(*ParseMemorySize("f", "1000"), 1000);
  EXPECT_EQ(*ParseMemorySize("f", "0"), 0);
  EXPECT_EQ(ParseMemorySize("f", "99999999999999999999999").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MemorySpec, RefusalsNameFieldAndValue) {
  absl::StatusOr<int64_t> s = ParseMemorySize("max_memory[\"cpu\"]", "20G");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), AllOf(HasSubstr("max_memory[\"cpu\"]"), HasSubstr("\"20G\""),
                                                       HasSubstr("GiB")));
  EXPECT_EQ(ParseMemorySize("f", "infGB").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseMemorySize("f", "1e30GiB").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseMemorySize("f", "0x10GB").status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<int64_t> neg = ParseMemorySize("max_memory[\"1\"]", int64_t{-5});
  EXPECT_THAT(std::string(neg.status().message()), AllOf(HasSubstr("max_memory[\"1\"]"), HasSubstr("-5")));
  // Control bytes in the value are escaped, not echoed raw.
  absl::StatusOr<int64_t> bin = ParseMemorySize("f", std::string("1\0GB", 4));
  EXPECT_EQ(bin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(bin.status().message()).find('\0'), std::string::npos);
}

TEST(MemorySpec, DeviceNames) {
  EXPECT_EQ(*ParseDeviceName("d", "cpu"), Device::Cpu());
  EXPECT_EQ(*ParseDeviceName("d", "cuda"), Device::Gpu(0));
  EXPECT_EQ(*ParseDeviceName("d", "cuda:1"), Device::Gpu(1));
  EXPECT_EQ(*ParseDeviceName("d", "3"), Device::Gpu(3));
  EXPECT_EQ(*ParseDeviceIndex("d", 2), Device::Gpu(2));
  EXPECT_EQ(Device::Gpu(1).Name(), "cuda:1");
  EXPECT_EQ(Device::Gpu(1).HfName(), "1");
  EXPECT_EQ(Device::Cpu().HfName(), "cpu");

  absl::StatusOr<Device> disk = ParseDeviceName("max_memory[\"disk\"]", "disk");
  EXPECT_EQ(disk.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(disk.status().message()), HasSubstr("max_memory[\"disk\"]"));
  absl::StatusOr<Device> mps = ParseDeviceName("device_map", "mps");
  EXPECT_EQ(mps.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(mps.status().message()), AllOf(HasSubstr("device_map"), HasSubstr("\"mps\"")));
  for (const char* bad : {"cuda:", "cuda:-1", "gpu0", "-1", "cuda:x", "", "CPU"}) {
    EXPECT_EQ(ParseDeviceName("d", bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(ParseDeviceIndex("device_map", -1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MemorySpec, MaxMemoryOrdersDevicesAndRefusesDuplicates) {
  absl::StatusOr<MaxMemory> mm = ParseMaxMemory({{"cpu", "30GiB"}, {"1", "10GB"}, {"cuda:0", "1000"}});
  ASSERT_TRUE(mm.ok()) << mm.status();
  ASSERT_EQ(mm->size(), 3u);
  EXPECT_EQ((*mm)[0], std::make_pair(Device::Gpu(0), int64_t{1000}));
  EXPECT_EQ((*mm)[1], std::make_pair(Device::Gpu(1), int64_t{10000000000}));
  EXPECT_EQ((*mm)[2], std::make_pair(Device::Cpu(), int64_t{30} << 30));

  absl::StatusOr<MaxMemory> dup = ParseMaxMemory({{"0", "1GB"}, {"cuda:0", "2GB"}});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("cuda:0"));
  EXPECT_EQ(ParseMaxMemory({{"disk", "1GB"}}).status().code(), absl::StatusCode::kUnimplemented);
  absl::StatusOr<MaxMemory> bad = ParseMaxMemory({{"0", "lots"}});
  EXPECT_THAT(std::string(bad.status().message()), AllOf(HasSubstr("max_memory[\"0\"]"), HasSubstr("\"lots\"")));
}

}  // namespace
}  // namespace kiln::engine::placement
