#include "engine/io/json_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <unordered_set>
#include <utility>

#include "engine/io/str_cat.h"

namespace kiln::engine {

using io_internal::Append;
using io_internal::Cat;
namespace {

using nlohmann::json;

// Wraps nlohmann's DOM builder to add what it lacks: duplicate-key rejection and a readable
// parse-error message without exceptions. sax_parse dispatches statically, so forwarding is
// enough; the parser itself is iterative (no recursion on nesting).
class StrictDomSax {
 public:
  explicit StrictDomSax(json& root) : dom_(root, /*allow_exceptions=*/false) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const std::string& s) {
    return dom_.number_float(v, s);
  }
  bool string(std::string& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) {
    keys_.emplace_back();
    return dom_.start_object(n);
  }
  bool key(std::string& k) {
    if (!keys_.back().insert(k).second) {
      error_ = Cat("duplicate key ", QuoteForMessage(k));
      return false;
    }
    return dom_.key(k);
  }
  bool end_object() {
    keys_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return dom_.start_array(n); }
  bool end_array() { return dom_.end_array(); }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) {
    // ex.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...";
    // it may quote input bytes, so it is sanitized before use.
    std::string what = ex.what();
    const size_t pos = what.find("] ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    error_ = Cat("invalid JSON at byte ", position, ": ", what);
    return dom_.parse_error(position, "", ex);
  }

  const std::string& error() const { return error_; }

 private:
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<std::unordered_set<std::string>> keys_;
  std::string error_;
};

absl::Status Invalid(std::string_view display_name, std::string_view what) {
  return absl::InvalidArgumentError(Cat(display_name, ": ", what));
}

}  // namespace

namespace {
// Escapes quotes, backslashes, control bytes and non-ASCII; caps the length.
std::string EscapeForMessage(std::string_view s, size_t max_len, bool escape_quotes) {
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max_len) {
      Append(&out, "...");
      break;
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (escape_quotes && (c == '"' || c == '\\')) {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}
}  // namespace

std::string QuoteForMessage(std::string_view s, size_t max_len) {
  return Cat("\"", EscapeForMessage(s, max_len, /*escape_quotes=*/true), "\"");
}

std::string JsonValueForMessage(const json& v, size_t max_len) {
  if (v.is_string()) return QuoteForMessage(v.get_ref<const std::string&>(), max_len);
  // dump() cannot throw here: strings inside were validated as UTF-8 by the parser, and
  // error_handler_t::replace covers values built in code.
  std::string s = v.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  if (s.size() > max_len) s = s.substr(0, max_len) + "...";
  return s;
}

absl::Status CheckUtf8(std::string_view text, std::string_view display_name) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return Invalid(display_name, Cat("invalid UTF-8 at byte ", i));
    }
    if (i + len > n) return Invalid(display_name, Cat("truncated UTF-8 at byte ", i));
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) {
        return Invalid(display_name, Cat("invalid UTF-8 at byte ", i));
      }
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return Invalid(display_name, Cat("invalid UTF-8 at byte ", i));
    }
    i += len;
  }
  return absl::OkStatus();
}

absl::Status CheckJsonDepth(std::string_view text, int max_depth, std::string_view display_name) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character (escapes are validated by the parser later)
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) {
        return Invalid(display_name,
                       Cat("JSON nesting depth exceeds the limit of ", max_depth));
      }
    } else if (c == '}' || c == ']') {
      --depth;  // unbalanced input is reported by the parser
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<json> ParseJson(std::string_view text, std::string_view display_name,
                               const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return Invalid(display_name, Cat("file is ", text.size(),
                                              " bytes, over the limit of ", limits.max_bytes));
  }
  if (absl::Status s = CheckUtf8(text, display_name); !s.ok()) return s;
  if (absl::Status s = CheckJsonDepth(text, limits.max_depth, display_name); !s.ok()) return s;
  json root;
  StrictDomSax sax(root);
  const bool ok = json::sax_parse(text.begin(), text.end(), &sax, nlohmann::json::input_format_t::json,
                                  /*strict=*/true);
  if (!ok) {
    return Invalid(display_name,
                   sax.error().empty() ? std::string("invalid JSON")
                                       : EscapeForMessage(sax.error(), 300, /*escape_quotes=*/false));
  }
  return root;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, std::string_view display_name,
                                          size_t max_bytes) {
  // O_NONBLOCK so that opening a FIFO never blocks; S_ISREG below refuses it anyway.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(Cat(display_name, ": file not found"));
    }
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(Cat(display_name, ": permission denied"));
    }
    return Invalid(display_name, Cat("cannot open: ", std::strerror(err)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(display_name, "not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return Invalid(display_name, Cat("file is ", st.st_size, " bytes, over the limit of ",
                                              max_bytes));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t r = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = r < 0 ? errno : 0;
      ::close(fd);
      return Invalid(display_name, r == 0 ? std::string("file shrank while being read")
                                          : Cat("read error: ", std::strerror(err)));
    }
    done += static_cast<size_t>(r);
  }
  ::close(fd);
  return out;
}

absl::StatusOr<json> ReadJsonFile(const std::string& path, std::string_view display_name,
                                  const JsonLimits& limits) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, display_name, limits.max_bytes);
  if (!text.ok()) return text.status();
  return ParseJson(*text, display_name, limits);
}

// ---------------------------------------------------------------------------------------------

JsonFields::JsonFields(const json& obj, std::string_view display_name, std::string prefix)
    : obj_(obj), display_name_(display_name), prefix_(std::move(prefix)) {}

// Keys can come from the file itself (iterated objects), so they are escaped like values:
// a key holding NUL or control bytes must not reach a status message raw (fuzz finding,
// tests/fuzz/corpus/json_util_fuzz/regress-nul-key).
std::string JsonFields::FieldName(std::string_view key) const {
  return Cat(prefix_, EscapeForMessage(key, 128, /*escape_quotes=*/false));
}

const json* JsonFields::Get(std::string_view key) const {
  if (!obj_.is_object()) return nullptr;
  auto it = obj_.find(std::string(key));
  return it == obj_.end() ? nullptr : &*it;
}

bool JsonFields::Has(std::string_view key) const {
  const json* v = Get(key);
  return v != nullptr && !v->is_null();
}

absl::Status JsonFields::Invalid(std::string_view key, std::string_view what) const {
  const json* v = Get(key);
  return absl::InvalidArgumentError(
      Cat(display_name_, ": ", FieldName(key), ": ", what,
                   v == nullptr ? std::string() : Cat(" (got ", JsonValueForMessage(*v), ")")));
}

absl::Status JsonFields::TypeError(std::string_view key, std::string_view expected) const {
  const json* v = Get(key);
  return absl::InvalidArgumentError(Cat(display_name_, ": ", FieldName(key), ": expected ",
                                                 expected, ", got ",
                                                 v == nullptr ? "nothing" : JsonValueForMessage(*v)));
}

absl::StatusOr<std::optional<int64_t>> JsonFields::OptionalInt(std::string_view key) const {
  const json* v = Get(key);
  if (v == nullptr || v->is_null()) return std::optional<int64_t>();
  if (v->is_number_integer() && !v->is_number_unsigned()) {
    return std::optional<int64_t>(v->get<int64_t>());
  }
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return TypeError(key, "an integer below 2^63");
    return std::optional<int64_t>(static_cast<int64_t>(u));
  }
  return TypeError(key, "an integer");
}

absl::StatusOr<int64_t> JsonFields::RequiredInt(std::string_view key) const {
  absl::StatusOr<std::optional<int64_t>> v = OptionalInt(key);
  if (!v.ok()) return v.status();
  if (!v->has_value()) {
    return absl::InvalidArgumentError(
        Cat(display_name_, ": ", FieldName(key), ": missing required integer"));
  }
  return **v;
}

absl::StatusOr<std::optional<int64_t>> JsonFields::OptionalPositiveInt(std::string_view key) const {
  const json* v = Get(key);
  if (v == nullptr || v->is_null()) return std::optional<int64_t>();
  absl::StatusOr<std::optional<int64_t>> i = OptionalInt(key);
  if (!i.ok() || **i <= 0) return TypeError(key, "a positive integer");
  return *i;
}

absl::StatusOr<int64_t> JsonFields::RequiredPositiveInt(std::string_view key) const {
  if (Get(key) == nullptr) {
    return absl::InvalidArgumentError(
        Cat(display_name_, ": ", FieldName(key), ": missing required positive integer"));
  }
  absl::StatusOr<std::optional<int64_t>> v = OptionalPositiveInt(key);
  if (!v.ok()) return v.status();
  if (!v->has_value()) return TypeError(key, "a positive integer");
  return **v;
}

absl::StatusOr<std::optional<double>> JsonFields::OptionalNumber(std::string_view key) const {
  const json* v = Get(key);
  if (v == nullptr || v->is_null()) return std::optional<double>();
  if (!v->is_number()) return TypeError(key, "a number");
  const double d = v->get<double>();
  if (!std::isfinite(d)) return TypeError(key, "a finite number");
  return std::optional<double>(d);
}

absl::StatusOr<std::optional<bool>> JsonFields::OptionalBool(std::string_view key) const {
  const json* v = Get(key);
  if (v == nullptr || v->is_null()) return std::optional<bool>();
  if (!v->is_boolean()) return TypeError(key, "true or false");
  return std::optional<bool>(v->get<bool>());
}

absl::StatusOr<std::optional<std::string>> JsonFields::OptionalString(std::string_view key) const {
  const json* v = Get(key);
  if (v == nullptr || v->is_null()) return std::optional<std::string>();
  if (!v->is_string()) return TypeError(key, "a string");
  return std::optional<std::string>(v->get_ref<const std::string&>());
}

absl::StatusOr<std::vector<int64_t>> JsonFields::IntOrIntList(std::string_view key) const {
  const json* v = Get(key);
  std::vector<int64_t> out;
  if (v == nullptr || v->is_null()) return out;
  auto as_int = [](const json& e) -> std::optional<int64_t> {
    if (e.is_number_integer() && !e.is_number_unsigned()) return e.get<int64_t>();
    if (e.is_number_unsigned() && e.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) {
      return static_cast<int64_t>(e.get<uint64_t>());
    }
    return std::nullopt;
  };
  if (v->is_array()) {
    for (const json& e : *v) {
      std::optional<int64_t> i = as_int(e);
      if (!i.has_value()) return TypeError(key, "an integer or a list of integers");
      out.push_back(*i);
    }
    return out;
  }
  std::optional<int64_t> i = as_int(*v);
  if (!i.has_value()) return TypeError(key, "an integer or a list of integers");
  out.push_back(*i);
  return out;
}

}  // namespace kiln::engine
