// absl::StrCat that also takes std::string_view (this abseil's string_view is its own type).
// Internal to engine/ (io, model config, adapter); not for server/.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kiln::engine::io_internal {

template <typename T>
decltype(auto) StrArg(const T& v) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    const std::string_view s(v);
    return absl::string_view(s.data(), s.size());
  } else {
    return (v);
  }
}

template <typename... A>
std::string Cat(const A&... a) {
  return absl::StrCat(StrArg(a)...);
}

template <typename... A>
void Append(std::string* out, const A&... a) {
  absl::StrAppend(out, StrArg(a)...);
}

}  // namespace kiln::engine::io_internal
