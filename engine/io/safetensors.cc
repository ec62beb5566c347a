#include "engine/io/safetensors.h"

#include <algorithm>
#include <array>
#include <numeric>
#include <optional>
#include <unordered_set>
#include <utility>

#include "engine/io/str_cat.h"
#include "engine/io/json_util.h"
#include "nlohmann/json.hpp"

namespace kiln::engine {

using io_internal::Append;
using io_internal::Cat;
namespace {

using nlohmann::json;
using kernels::DType;

constexpr std::string_view kMetadataKey = "__metadata__";

// Names the format defines that kiln does not load (yet): UNIMPLEMENTED rather than "unknown".
constexpr std::array<std::string_view, 10> kUnsupportedDTypes = {
    "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"};

// Streaming handler for the header grammar. It builds TensorInfos as entries close, so memory
// is O(tensors), and stops at the first violation with a message naming the tensor and value.
class HeaderSax {
 public:
  HeaderSax(std::string_view display_name, const SafetensorsLimits& limits,
            SafetensorsHeader* out)
      : display_name_(display_name), limits_(limits), out_(out) {}

  bool null() { return BadValue("null"); }
  bool boolean(bool v) { return BadValue(v ? "true" : "false"); }
  bool number_integer(json::number_integer_t v) {
    if (v >= 0) return number_unsigned(static_cast<uint64_t>(v));
    return BadValue(std::to_string(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (state_ == State::kShape) {
      if (v > static_cast<uint64_t>(INT64_MAX)) {
        return Fail(TensorCode(), Cat(Where(), "shape: dimension ", v, " is too large"));
      }
      if (cur_.shape.size() >= limits_.max_rank) {
        return Fail(TensorCode(), Cat(Where(), "shape has more than ", limits_.max_rank,
                                               " dimensions"));
      }
      cur_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (state_ == State::kOffsets) {
      if (num_offsets_ >= 2) {
        return Fail(TensorCode(), Cat(Where(), "data_offsets must have exactly 2 values"));
      }
      offsets_[num_offsets_++] = v;
      return true;
    }
    return BadValue(std::to_string(v));
  }
  bool number_float(json::number_float_t /*v*/, const std::string& s) {
    return BadValue(s.size() > 40 ? s.substr(0, 40) + "..." : s);
  }
  bool string(std::string& s) {
    if (state_ == State::kFieldValue && field_ == Field::kDType) {
      std::optional<DType> dt = kernels::DTypeFromSafetensorsName(s);
      if (!dt.has_value()) {
        const bool known = std::find(kUnsupportedDTypes.begin(), kUnsupportedDTypes.end(), s) !=
                           kUnsupportedDTypes.end();
        return Fail(known ? Code::kUnimplemented : Code::kInvalid,
                    Cat(Where(), "dtype ", QuoteForMessage(s),
                                 known ? " is not supported by kiln" : " is unknown",
                                 " (supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)"));
      }
      cur_.dtype = *dt;
      state_ = State::kTensor;
      return true;
    }
    if (state_ == State::kMetaValue) {
      if (s.size() > limits_.max_metadata_value_bytes) {
        return Fail(Code::kInvalid, Cat("__metadata__: value of ", QuoteForMessage(meta_key_),
                                                 " is ", s.size(), " bytes, over the limit of ",
                                                 limits_.max_metadata_value_bytes));
      }
      out_->metadata.emplace(std::move(meta_key_), std::move(s));
      state_ = State::kMeta;
      return true;
    }
    return BadValue(QuoteForMessage(s));
  }
  bool binary(json::binary_t& /*v*/) { return BadValue("binary"); }

  bool start_object(std::size_t /*n*/) {
    if (state_ == State::kStart) {
      state_ = State::kTop;
      return true;
    }
    if (state_ != State::kTopValue) return BadValue("an object");
    if (top_key_ == kMetadataKey) {
      state_ = State::kMeta;
    } else {
      cur_ = TensorInfo();
      cur_.name = std::move(top_key_);
      seen_fields_ = 0;
      num_offsets_ = 0;
      state_ = State::kTensor;
    }
    return true;
  }
  bool key(std::string& k) {
    if (state_ == State::kTop) {
      if (k.size() > limits_.max_name_bytes) {
        return Fail(Code::kInvalid, Cat("tensor name ", QuoteForMessage(k), " is ",
                                                 k.size(), " bytes, over the limit of ",
                                                 limits_.max_name_bytes));
      }
      if (!top_keys_.insert(k).second) {
        return Fail(Code::kInvalid, Cat("duplicate key ", QuoteForMessage(k),
                                                 " in the header"));
      }
      if (k != kMetadataKey && out_->tensors.size() >= limits_.max_tensors) {
        return Fail(Code::kInvalid, Cat("more than ", limits_.max_tensors,
                                                 " tensors in one file"));
      }
      top_key_ = std::move(k);
      state_ = State::kTopValue;
      return true;
    }
    if (state_ == State::kMeta) {
      if (k.size() > limits_.max_name_bytes) {
        return Fail(Code::kInvalid, Cat("__metadata__: key is ", k.size(),
                                                 " bytes, over the limit of ",
                                                 limits_.max_name_bytes));
      }
      if (out_->metadata.count(k) != 0) {
        return Fail(Code::kInvalid,
                    Cat("__metadata__: duplicate key ", QuoteForMessage(k)));
      }
      meta_key_ = std::move(k);
      state_ = State::kMetaValue;
      return true;
    }
    if (state_ == State::kTensor) {
      Field f;
      if (k == "dtype") {
        f = Field::kDType;
      } else if (k == "shape") {
        f = Field::kShape;
      } else if (k == "data_offsets") {
        f = Field::kOffsets;
      } else {
        return Fail(Code::kInvalid, Cat(Where(), "unknown field ", QuoteForMessage(k),
                                                 " (allowed: dtype, shape, data_offsets)"));
      }
      const unsigned bit = 1u << static_cast<int>(f);
      if ((seen_fields_ & bit) != 0) {
        return Fail(Code::kInvalid, Cat(Where(), "duplicate field ", QuoteForMessage(k)));
      }
      seen_fields_ |= bit;
      field_ = f;
      state_ = State::kFieldValue;
      return true;
    }
    return BadValue("an object");  // unreachable: keys only follow start_object
  }
  bool end_object() {
    if (state_ == State::kTensor) return FinishTensor();
    if (state_ == State::kMeta) {
      state_ = State::kTop;
      return true;
    }
    if (state_ == State::kTop) {
      state_ = State::kDone;
      return true;
    }
    return BadValue("an object");  // unreachable: the parser balances objects
  }
  bool start_array(std::size_t /*n*/) {
    if (state_ == State::kFieldValue && field_ == Field::kShape) {
      state_ = State::kShape;
      return true;
    }
    if (state_ == State::kFieldValue && field_ == Field::kOffsets) {
      state_ = State::kOffsets;
      return true;
    }
    return BadValue("an array");
  }
  bool end_array() {
    if (state_ == State::kShape) {
      state_ = State::kTensor;
      return true;
    }
    if (state_ == State::kOffsets) {
      if (num_offsets_ != 2) {
        return Fail(Code::kInvalid, Cat(Where(), "data_offsets must have exactly 2 values, got ",
                                                 num_offsets_));
      }
      state_ = State::kTensor;
      return true;
    }
    return BadValue("an array");
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) {
    if (error_.ok()) {
      std::string what = ex.what();
      const size_t pos = what.find("] ");
      if (pos != std::string::npos) what = what.substr(pos + 2);
      // Quoted (escaped) because nlohmann echoes input bytes.
      error_ = absl::InvalidArgumentError(Cat(display_name_, ": header is not valid JSON at byte ",
                                                       position, ": ", QuoteForMessage(what, 200)));
    }
    return false;
  }

  const absl::Status& error() const { return error_; }
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State { kStart, kTop, kTopValue, kMeta, kMetaValue, kTensor, kFieldValue, kShape, kOffsets, kDone };
  enum class Field { kDType = 0, kShape = 1, kOffsets = 2 };
  enum class Code { kInvalid, kUnimplemented };

  Code TensorCode() const { return Code::kInvalid; }

  std::string Where() const { return Cat("tensor ", QuoteForMessage(cur_.name), ": "); }

  bool Fail(Code code, std::string msg) {
    if (error_.ok()) {
      std::string full = Cat(display_name_, ": ", msg);
      error_ = code == Code::kUnimplemented ? absl::UnimplementedError(full)
                                            : absl::InvalidArgumentError(full);
    }
    return false;
  }

  // A value of the wrong kind where `state_` expected something else.
  bool BadValue(std::string_view got) {
    switch (state_) {
      case State::kStart:
        return Fail(Code::kInvalid, Cat("header must be a JSON object, got ", got));
      case State::kTopValue:
        if (top_key_ == kMetadataKey) {
          return Fail(Code::kInvalid,
                      Cat("__metadata__ must be an object of strings, got ", got));
        }
        return Fail(Code::kInvalid, Cat("tensor ", QuoteForMessage(top_key_),
                                                 ": entry must be an object, got ", got));
      case State::kMetaValue:
        return Fail(Code::kInvalid, Cat("__metadata__: value of ", QuoteForMessage(meta_key_),
                                                 " must be a string, got ", got));
      case State::kFieldValue:
        switch (field_) {
          case Field::kDType:
            return Fail(Code::kInvalid, Cat(Where(), "dtype must be a string, got ", got));
          case Field::kShape:
            return Fail(Code::kInvalid, Cat(Where(), "shape must be an array, got ", got));
          case Field::kOffsets:
            return Fail(Code::kInvalid,
                        Cat(Where(), "data_offsets must be an array, got ", got));
        }
        break;
      case State::kShape:
        return Fail(Code::kInvalid,
                    Cat(Where(), "shape must hold non-negative integers, got ", got));
      case State::kOffsets:
        return Fail(Code::kInvalid,
                    Cat(Where(), "data_offsets must hold non-negative integers, got ", got));
      case State::kTop:
      case State::kMeta:
      case State::kTensor:
      case State::kDone:
        break;
    }
    return Fail(Code::kInvalid, Cat("unexpected ", got, " in the header"));
  }

  bool FinishTensor() {
    constexpr unsigned kAll = 7;
    if (seen_fields_ != kAll) {
      std::string missing;
      if ((seen_fields_ & 1) == 0) missing = "dtype";
      else if ((seen_fields_ & 2) == 0) missing = "shape";
      else missing = "data_offsets";
      return Fail(Code::kInvalid, Cat(Where(), "missing field \"", missing, "\""));
    }
    uint64_t n = 1;
    for (int64_t d : cur_.shape) {
      if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) {
        return Fail(Code::kInvalid, Cat(Where(), "shape ", ShapeString(),
                                                 " has more than 2^64 elements"));
      }
    }
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(kernels::DTypeSize(cur_.dtype)), &bytes)) {
      return Fail(Code::kInvalid, Cat(Where(), "shape ", ShapeString(),
                                               " overflows 2^64 bytes"));
    }
    const uint64_t begin = offsets_[0];
    const uint64_t end = offsets_[1];
    if (begin > end) {
      return Fail(Code::kInvalid, Cat(Where(), "data_offsets [", begin, ", ", end,
                                               "]: begin is after end"));
    }
    if (end - begin != bytes) {
      return Fail(Code::kInvalid,
                  Cat(Where(), "data_offsets [", begin, ", ", end, "] span ", end - begin,
                               " bytes but dtype ", kernels::DTypeName(cur_.dtype), " x shape ",
                               ShapeString(), " needs ", bytes));
    }
    cur_.num_elements = n;
    cur_.data_begin = begin;
    cur_.data_end = end;
    out_->tensors.push_back(std::move(cur_));
    cur_ = TensorInfo();
    state_ = State::kTop;
    return true;
  }

  std::string ShapeString() const {
    std::string s = "[";
    for (size_t i = 0; i < cur_.shape.size(); ++i) {
      Append(&s, i == 0 ? "" : ", ", cur_.shape[i]);
    }
    return s + "]";
  }

  std::string display_name_;
  const SafetensorsLimits& limits_;
  SafetensorsHeader* out_;
  absl::Status error_;
  State state_ = State::kStart;
  std::string top_key_;
  std::string meta_key_;
  std::unordered_set<std::string> top_keys_;
  TensorInfo cur_;
  Field field_ = Field::kDType;
  unsigned seen_fields_ = 0;
  std::array<uint64_t, 2> offsets_{};
  int num_offsets_ = 0;
};

// The byte buffer must be entirely indexed: sorted by (begin, end), each range starts where
// the previous ended, and the last ends at the buffer's end. This also defuses aliasing.
absl::Status CheckTiling(const SafetensorsHeader& h, std::string_view display_name) {
  std::vector<size_t> order(h.tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const TensorInfo& x = h.tensors[a];
    const TensorInfo& y = h.tensors[b];
    return x.data_begin != y.data_begin ? x.data_begin < y.data_begin : x.data_end < y.data_end;
  });
  uint64_t running = 0;
  for (size_t i : order) {
    const TensorInfo& t = h.tensors[i];
    const std::string where = Cat(display_name, ": tensor ", QuoteForMessage(t.name),
                                           ": data_offsets [", t.data_begin, ", ", t.data_end, "]");
    if (t.data_end > h.data_bytes) {
      return absl::InvalidArgumentError(Cat(where, " extend past the data buffer of ",
                                                     h.data_bytes, " bytes"));
    }
    if (t.data_begin > running) {
      return absl::InvalidArgumentError(Cat(where, " leave a hole: the previous tensor ends at ",
                                                     running));
    }
    if (t.data_begin < running) {
      return absl::InvalidArgumentError(Cat(where, " overlap the previous tensor, which ends at ",
                                                     running));
    }
    running = t.data_end;
  }
  if (running != h.data_bytes) {
    return absl::InvalidArgumentError(Cat(
        display_name, ": the tensors cover ", running, " bytes of the ", h.data_bytes,
        "-byte data buffer; trailing or unindexed bytes are not allowed"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view header,
                                                         uint64_t data_bytes,
                                                         std::string_view display_name,
                                                         const SafetensorsLimits& limits) {
  auto invalid = [&](std::string_view what) {
    return absl::InvalidArgumentError(Cat(display_name, ": ", what));
  };
  if (header.empty() || header.front() != '{') {
    return invalid("header must start with '{'");
  }
  // The format allows padding with spaces (0x20) only; nlohmann would also skip \n, \t, \r.
  size_t len = header.size();
  while (len > 0 && header[len - 1] == ' ') --len;
  if (header[len - 1] != '}') {
    return invalid("header must end with '}' followed only by space padding");
  }
  header = header.substr(0, len);
  if (absl::Status s = CheckUtf8(header, display_name); !s.ok()) return s;
  if (absl::Status s = CheckJsonDepth(header, 4, display_name); !s.ok()) return s;

  SafetensorsHeader out;
  out.data_bytes = data_bytes;
  HeaderSax sax(display_name, limits, &out);
  const bool ok = json::sax_parse(header.begin(), header.end(), &sax, json::input_format_t::json,
                                  /*strict=*/true);
  if (!sax.error().ok()) return sax.error();
  if (!ok || !sax.done()) return invalid("header is not a valid JSON object");
  if (absl::Status s = CheckTiling(out, display_name); !s.ok()) return s;
  return out;
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header,
                                 uint64_t data_offset)
    : file_(std::move(file)), header_(std::move(header)), data_offset_(data_offset) {
  index_.reserve(header_.tensors.size());
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    index_.emplace(std::string_view(header_.tensors[i].name), i);
  }
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path, std::string_view display_name, const SafetensorsLimits& limits) {
  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path, display_name);
  if (!file.ok()) return file.status();
  const uint64_t size = (*file)->size();
  auto invalid = [&](std::string_view what) {
    return absl::InvalidArgumentError(Cat(display_name, ": ", what));
  };
  if (size < 8) {
    return invalid(Cat("file is ", size,
                                " bytes, too small for the 8-byte header size field"));
  }
  uint8_t raw[8];
  if (absl::Status s = (*file)->Read(0, raw); !s.ok()) return s;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | raw[i];
  if (n == 0) return invalid("header size is 0");
  if (n > limits.max_header_bytes) {
    return invalid(Cat("header size ", n, " exceeds the limit of ",
                                limits.max_header_bytes, " bytes"));
  }
  if (n > size - 8) {
    return invalid(Cat("header size ", n, " exceeds the ", size - 8,
                                " bytes that follow the size field"));
  }
  // Allocation is bounded by min(N, limit, file - 8), all checked above.
  std::string header(static_cast<size_t>(n), '\0');
  if (absl::Status s = (*file)->Read(8, std::span<uint8_t>(reinterpret_cast<uint8_t*>(header.data()),
                                                           header.size()));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<SafetensorsHeader> parsed =
      ParseSafetensorsHeader(header, size - 8 - n, display_name, limits);
  if (!parsed.ok()) return parsed.status();
  return std::unique_ptr<SafetensorsFile>(
      new SafetensorsFile(*std::move(file), *std::move(parsed), 8 + n));
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

std::span<const uint8_t> SafetensorsFile::Data(const TensorInfo& info) const {
  return file_->data().subspan(static_cast<size_t>(data_offset_ + info.data_begin),
                               static_cast<size_t>(info.num_bytes()));
}

absl::Status SafetensorsFile::Read(const TensorInfo& info, std::span<uint8_t> dst) const {
  if (dst.size() != info.num_bytes()) {
    return absl::InvalidArgumentError(Cat(display_name(), ": tensor ", QuoteForMessage(info.name),
                                                   ": destination holds ", dst.size(),
                                                   " bytes, the tensor ", info.num_bytes()));
  }
  return file_->Read(data_offset_ + info.data_begin, dst);
}

}  // namespace kiln::engine
