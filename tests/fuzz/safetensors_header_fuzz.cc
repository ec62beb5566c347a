// Fuzz target: the safetensors header parser (ParseSafetensorsHeader), test matrix A1-A8.
// Input: [1 byte: data-size selector][header JSON bytes]. On success, checks the documented
// guarantees: offsets tile [0, data_bytes) exactly, each tensor's bytes match its shape.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/io/safetensors.h"
#include "kernels/dtype.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::FuzzInput in(data, size);
  // Small data sizes make valid tilings reachable; the huge ones exercise overflow checks.
  static constexpr uint64_t kSizes[] = {0, 1, 2, 4, 8, 12, 16, 24, 32, 64, 128, 1024,
                                        uint64_t{1} << 40, ~uint64_t{0}, 48, 96};
  uint64_t data_bytes = kSizes[in.Byte() % 16];
  kiln::engine::SafetensorsLimits limits;
  limits.max_tensors = 4096;
  auto header = in.Rest();
  auto parsed = kiln::engine::ParseSafetensorsHeader(header, data_bytes, "fuzz.safetensors",
                                                     limits);
  if (!parsed.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(parsed.status().message()));
    return 0;
  }
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& t : parsed->tensors) {
    KILN_FUZZ_CHECK(t.data_begin <= t.data_end && t.data_end <= data_bytes);
    KILN_FUZZ_CHECK(t.shape.size() <= limits.max_rank);
    uint64_t n = 1;
    for (int64_t d : t.shape) {
      KILN_FUZZ_CHECK(d >= 0);
      n *= static_cast<uint64_t>(d);  // cannot overflow: bytes == end - begin <= data_bytes
    }
    KILN_FUZZ_CHECK(n == t.num_elements);
    ranges.emplace_back(t.data_begin, t.data_end);
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t pos = 0;
  for (const auto& [b, e] : ranges) {
    KILN_FUZZ_CHECK(b == pos, "hole or overlap at %llu", static_cast<unsigned long long>(b));
    pos = e;
  }
  KILN_FUZZ_CHECK(pos == parsed->data_bytes && pos == data_bytes);
  return 0;
}
