// ParseMemorySize: sizes as accelerate's max_memory accepts them: a byte count ("1073741824")
// or a number with a unit — binary KiB/MiB/GiB/TiB (1024^n) or decimal KB/MB/GB/TB (1000^n),
// case-insensitive; a trailing lowercase "b" in the decimal form means bits ("8Gb" = 1 GB), as
// accelerate's convert_file_size_to_int reads it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kiln::engine {

// INVALID_ARGUMENT naming `field` for anything else (negative, fractional bytes, overflow).
absl::StatusOr<uint64_t> ParseMemorySize(std::string_view text, const std::string& field);

}  // namespace kiln::engine
