// Helpers shared by the fuzz targets in tests/fuzz (see README.md there).
//
// FuzzInput: a minimal byte consumer (clang's FuzzedDataProvider is not available with GCC,
// and the targets also build as plain corpus-replay drivers with GCC). Reads past the end
// return zeros / empty strings, so every input is a valid program.
// KILN_FUZZ_CHECK: an invariant that must hold for every input; a violation aborts, which
// libFuzzer (and the corpus driver) report as a crash.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#define KILN_FUZZ_CHECK(cond, ...)                                                    \
  do {                                                                                \
    if (!(cond)) ::kiln::fuzz::Fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);       \
  } while (0)

namespace kiln::fuzz {

// Reports a violated invariant (with an optional printf-style detail) and aborts.
[[noreturn]] inline void Fail(const char* file, int line, const char* cond, const char* fmt,
                              ...) {
  std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, cond);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(stderr, fmt, args);
  va_end(args);
  std::fputc('\n', stderr);
  std::abort();
}

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_ - pos_; }
  bool empty() const { return pos_ >= size_; }

  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  bool Bool() { return (Byte() & 1) != 0; }
  template <typename T>
  T Int() {
    T v{};
    uint8_t buf[sizeof(T)] = {};
    size_t n = remaining() < sizeof(T) ? remaining() : sizeof(T);
    if (n > 0) std::memcpy(buf, data_ + pos_, n);
    pos_ += n;
    std::memcpy(&v, buf, sizeof(T));
    return v;
  }
  // A value in [lo, hi] (inclusive), uniformly-ish.
  int64_t Range(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
    uint64_t r = Int<uint64_t>();
    return span == 0 ? static_cast<int64_t>(r) : lo + static_cast<int64_t>(r % span);
  }
  // A float that is often special (NaN, Inf, 0, negative) and otherwise arbitrary.
  float Float() {
    switch (Byte() % 8) {
      case 0: return std::numeric_limits<float>::quiet_NaN();
      case 1: return std::numeric_limits<float>::infinity();
      case 2: return -std::numeric_limits<float>::infinity();
      case 3: return 0.0f;
      case 4: return static_cast<float>(Range(-4, 4));
      case 5: return static_cast<float>(Byte()) / 128.0f;
      default: return Int<float>();
    }
  }
  // A string of up to `max_len` bytes (length byte first).
  std::string String(size_t max_len) {
    size_t n = Byte();
    n = n % (max_len + 1);
    if (n > remaining()) n = remaining();
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  std::string_view Rest() {
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), remaining());
    pos_ = size_;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Bytes as text, for the many targets whose input is a document.
inline std::string_view AsText(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// A short status message must satisfy the error-hygiene rule G2: 1..512 bytes, no NUL.
// Works for std::string_view and absl::string_view (Status::message()).
template <typename S>
bool MessageIsClean(const S& m) {
  return !m.empty() && m.size() <= 512 && m.find('\0') == S::npos;
}

}  // namespace kiln::fuzz
