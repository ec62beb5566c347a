#include "engine/placement/memory_spec.h"

#include <charconv>
#include <cmath>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/io/json_util.h"

namespace kiln::engine::placement {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// 2^63 as a double: the first value that does not fit an int64 after truncation.
constexpr double kInt64Limit = 9223372036854775808.0;

absl::Status SizeError(std::string_view field, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      AV(field), ": ", QuoteForMessage(value), " is not a valid memory size (", AV(why),
      "); use an integer for bytes or a number with a unit: GiB, MiB, KiB, GB, MB, KB"));
}

// Python's float() on the number part, minus what makes no sense for a size (inf, nan, hex).
std::optional<double> ParseNumber(std::string_view s) {
  const absl::string_view stripped = absl::StripAsciiWhitespace(AV(s));
  s = std::string_view(stripped.data(), stripped.size());
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::general);
  if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

std::string Device::Name() const {
  return is_gpu() ? absl::StrCat("cuda:", index) : std::string("cpu");
}

std::string Device::HfName() const { return is_gpu() ? absl::StrCat(index) : std::string("cpu"); }

absl::StatusOr<int64_t> ParseMemorySize(std::string_view field, int64_t value) {
  if (value < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(AV(field), ": ", value, " bytes is negative; a memory size must be >= 0"));
  }
  return value;
}

absl::StatusOr<int64_t> ParseMemorySize(std::string_view field, std::string_view value) {
  if (AllDigits(value)) {
    int64_t bytes = 0;
    if (!absl::SimpleAtoi(AV(value), &bytes)) return SizeError(field, value, "too large");
    return bytes;
  }
  struct Unit {
    std::string_view suffix;
    double scale;
    bool decimal;  // decimal units honour accelerate's lowercase-"b" = bits rule
  };
  static constexpr Unit kUnits[] = {
      {"GIB", 1073741824.0, false}, {"MIB", 1048576.0, false}, {"KIB", 1024.0, false},
      {"GB", 1e9, true},            {"MB", 1e6, true},         {"KB", 1e3, true},
  };
  const std::string upper = absl::AsciiStrToUpper(AV(value));
  for (const Unit& u : kUnits) {
    if (!absl::EndsWith(upper, AV(u.suffix))) continue;
    std::optional<double> number = ParseNumber(value.substr(0, value.size() - u.suffix.size()));
    if (!number) return SizeError(field, value, "the number before the unit does not parse");
    // int(float(x) * scale): one double multiplication, then truncation toward zero.
    const double scaled = *number * u.scale;
    if (std::fabs(scaled) >= kInt64Limit) return SizeError(field, value, "too large");
    int64_t bytes = static_cast<int64_t>(scaled);
    if (u.decimal && value.back() == 'b') {
      // Python's // floors; bytes is non-negative here or refused below, so / is the same.
      if (bytes < 0) return SizeError(field, value, "negative");
      bytes /= 8;
    }
    if (bytes < 0) return SizeError(field, value, "negative");
    return bytes;
  }
  return SizeError(field, value, "no unit");
}

absl::StatusOr<Device> ParseDeviceIndex(std::string_view field, int64_t index) {
  if (index < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        AV(field), ": device ", index, " is negative; use \"cpu\" for the CPU or a GPU index >= 0"));
  }
  if (index > 1 << 16) {
    return absl::InvalidArgumentError(
        absl::StrCat(AV(field), ": device ", index, " is not a plausible GPU index (max 65536)"));
  }
  return Device::Gpu(static_cast<int>(index));
}

absl::StatusOr<Device> ParseDeviceName(std::string_view field, std::string_view name) {
  if (name == "cpu") return Device::Cpu();
  if (name == "cuda") return Device::Gpu(0);
  std::string_view digits = name;
  if (digits.substr(0, 5) == "cuda:") digits.remove_prefix(5);
  int64_t index = 0;
  if (AllDigits(digits) && absl::SimpleAtoi(AV(digits), &index)) return ParseDeviceIndex(field, index);
  if (name == "disk") {
    return absl::UnimplementedError(absl::StrCat(
        AV(field), ": \"disk\" offload is not supported by kiln; give the model more GPU or CPU memory"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(AV(field), ": unknown device ", QuoteForMessage(name),
                   "; expected \"cpu\", \"cuda\", \"cuda:N\" or a GPU index N"));
}

absl::StatusOr<MaxMemory> ParseMaxMemory(
    const std::vector<std::pair<std::string, std::string>>& entries) {
  MaxMemory out;
  std::set<Device> seen;
  for (const auto& [key, value] : entries) {
    const std::string field = absl::StrCat("max_memory[", QuoteForMessage(key), "]");
    absl::StatusOr<Device> device = ParseDeviceName(field, key);
    if (!device.ok()) return device.status();
    if (!seen.insert(*device).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": device ", device->Name(), " appears more than once in max_memory"));
    }
    absl::StatusOr<int64_t> bytes = ParseMemorySize(field, value);
    if (!bytes.ok()) return bytes.status();
    out.emplace_back(*device, *bytes);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

}  // namespace kiln::engine::placement
