#include "engine/runtime/memory_size.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kiln::engine {

absl::StatusOr<uint64_t> ParseMemorySize(std::string_view text, const std::string& field) {
  auto invalid = [&]() {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", std::string(text.substr(0, 32)),
        "\" is not a size (use bytes, or a number with KiB/MiB/GiB/TiB or KB/MB/GB/TB)"));
  };
  if (text.empty() || text.size() > 32) return invalid();
  size_t digits_end = 0;
  while (digits_end < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[digits_end])) || text[digits_end] == '.')) {
    ++digits_end;
  }
  const std::string number(text.substr(0, digits_end));
  const std::string unit(text.substr(digits_end));
  if (number.empty() || number.front() == '.' || number.find('.') != number.rfind('.')) {
    return invalid();
  }
  const double value = std::strtod(number.c_str(), nullptr);
  double multiplier = 1;
  const std::string upper = absl::AsciiStrToUpper(unit);
  struct Unit {
    const char* name;
    double multiplier;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},           {"B", 1},           {"KIB", 1024.0},     {"MIB", 1048576.0},
      {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6},
      {"GB", 1e9},       {"TB", 1e12},
  };
  bool found = false;
  for (const Unit& u : kUnits) {
    if (upper == u.name) {
      multiplier = u.multiplier;
      found = true;
      break;
    }
  }
  if (!found) return invalid();
  // accelerate: a decimal unit ending in lowercase "b" counts bits.
  if (unit.size() == 2 && unit.back() == 'b' && upper != "B") multiplier /= 8;
  const double bytes = value * multiplier;
  if (multiplier == 1 && number.find('.') != std::string::npos) return invalid();
  if (!std::isfinite(bytes) || bytes >= 1.8e19) return invalid();
  return static_cast<uint64_t>(bytes);
}

}  // namespace kiln::engine
