#include "engine/tokenizer/decoder.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// ByteLevel: every token whose characters are all in the byte table becomes those bytes, any
// other token its own UTF-8 bytes; the whole concatenation is decoded lossily.
class ByteLevelDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::string bytes;
    std::string token_bytes;
    for (const std::string& t : *tokens) {
      token_bytes.clear();
      bool all = true;
      size_t pos = 0;
      while (pos < t.size()) {
        const int b = CharToByte(NextCodePoint(t, &pos));
        if (b < 0) {
          all = false;
          break;
        }
        token_bytes.push_back(static_cast<char>(b));
      }
      bytes.append(all ? token_bytes : t);
    }
    tokens->assign(1, Utf8Lossy(bytes));
    return absl::OkStatus();
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& t = (*tokens)[i];
      std::string out;
      out.reserve(t.size());
      for (size_t pos = 0; pos < t.size();) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          // The first token loses every replacement char (not only a leading one), as tokenizers.
          if (!(i == 0 && strip_first_)) out.push_back(' ');
          pos += replacement_.size();
        } else {
          out.push_back(t[pos++]);
        }
      }
      t = std::move(out);
    }
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      KILN_ASSIGN_OR_RETURN(t, pattern_.ReplaceAll(t, content_));
    }
    return absl::OkStatus();
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens->size());
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      if (IsValidUtf8(run)) {
        out.push_back(run);
      } else {
        // An invalid run becomes one U+FFFD per byte.
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back(kReplacementChar);
      }
      run.clear();
    };
    for (std::string& t : *tokens) {
      if (auto b = ParseByteToken(t); b.has_value()) {
        run.push_back(static_cast<char>(*b));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    *tokens = std::move(out);
    return absl::OkStatus();
  }
  bool HasByteFallback() const override { return true; }
};

class FuseDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    tokens->assign(1, std::move(all));
    return absl::OkStatus();
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, code point)
      for (size_t pos = 0; pos < t.size();) {
        const size_t at = pos;
        chars.emplace_back(at, NextCodePoint(t, &pos));
      }
      size_t start_cut = 0;
      for (size_t i = 0; i < chars.size() && i < start_; ++i) {
        if (chars[i].second != content_) break;
        start_cut = i + 1;
      }
      size_t stop_cut = chars.size();
      for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        const size_t index = chars.size() - i - 1;
        if (chars[index].second != content_) break;
        stop_cut = index;
      }
      if (stop_cut < start_cut) stop_cut = start_cut;
      const size_t b = start_cut < chars.size() ? chars[start_cut].first : t.size();
      const size_t e = stop_cut < chars.size() ? chars[stop_cut].first : t.size();
      t = t.substr(b, e - b);
    }
    return absl::OkStatus();
  }

 private:
  char32_t content_;
  size_t start_;
  size_t stop_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& p : parts_) KILN_RETURN_IF_ERROR(p->DecodeChain(tokens));
    return absl::OkStatus();
  }
  bool HasByteFallback() const override {
    for (const auto& p : parts_) {
      if (p->HasByteFallback()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

absl::StatusOr<char32_t> OneChar(const std::string& s, absl::string_view what) {
  size_t pos = 0;
  if (s.empty() || !IsValidUtf8(s)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be a single character"));
  }
  const char32_t c = NextCodePoint(s, &pos);
  if (pos != s.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be a single character"));
  }
  return c;
}

}  // namespace

std::optional<uint8_t> ParseByteToken(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return std::nullopt;
  const char hi = token[3];
  const char lo = token[4];
  if (hi == '+') {
    const int v = HexValue(lo);
    if (v < 0) return std::nullopt;
    return static_cast<uint8_t>(v);
  }
  const int h = HexValue(hi);
  const int l = HexValue(lo);
  if (h < 0 || l < 0) return std::nullopt;
  return static_cast<uint8_t>(h * 16 + l);
}

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const Json& j, std::string path,
                                                         RegexLimits limits) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  KILN_ASSIGN_OR_RETURN(const std::string type, GetType(j, path));
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Metaspace") {
    KILN_ASSIGN_OR_RETURN(std::string rep, GetString(j, "replacement", path, "\xE2\x96\x81"));
    KILN_ASSIGN_OR_RETURN(const char32_t c, OneChar(rep, path + ".replacement"));
    (void)c;
    bool strip_first = true;
    if (const Json* ps = Member(j, "prepend_scheme"); ps != nullptr) {
      strip_first = !(ps->is_string() && ps->get_ref<const std::string&>() == "never");
    } else {
      KILN_ASSIGN_OR_RETURN(strip_first, GetBool(j, "add_prefix_space", path, true));
    }
    return std::make_unique<MetaspaceDecoder>(std::move(rep), strip_first);
  }
  if (type == "Replace") {
    const Json* pattern = Member(j, "pattern");
    if (pattern == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".pattern is required"));
    }
    KILN_ASSIGN_OR_RETURN(Pattern p, Pattern::FromJson(*pattern, path + ".pattern",
                                                       "decoder Replace", limits));
    KILN_ASSIGN_OR_RETURN(std::string content, GetString(j, "content", path, ""));
    return std::make_unique<ReplaceDecoder>(std::move(p), std::move(content));
  }
  if (type == "Strip") {
    KILN_ASSIGN_OR_RETURN(const std::string content, GetString(j, "content", path, " "));
    KILN_ASSIGN_OR_RETURN(const char32_t c, OneChar(content, path + ".content"));
    KILN_ASSIGN_OR_RETURN(const int64_t start, GetInt(j, "start", path, 0));
    KILN_ASSIGN_OR_RETURN(const int64_t stop, GetInt(j, "stop", path, 0));
    if (start < 0 || stop < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": start/stop must be >= 0"));
    }
    return std::make_unique<StripDecoder>(c, static_cast<size_t>(start), static_cast<size_t>(stop));
  }
  if (type == "Sequence") {
    const Json* list = Member(j, "decoders");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".decoders must be an array"));
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      KILN_ASSIGN_OR_RETURN(auto part,
                            DecoderFromJson((*list)[i], absl::StrCat(path, ".decoders[", i, "]"),
                                            limits));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  return absl::UnimplementedError(
      absl::StrCat(path, ": decoder type '", type, "' is not supported"));
}

}  // namespace kiln::tokenizer
