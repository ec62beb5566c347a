#include "engine/tokenizer/normalizer.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {
namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}
  absl::Status Normalize(std::string* s) const override {
    KILN_ASSIGN_OR_RETURN(*s, kiln::tokenizer::Normalize(*s, form_));
    return absl::OkStatus();
  }

 private:
  NormalForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string* s) const override {
    *s = Lowercase(*s);
    return absl::OkStatus();
  }
};

// Prepend only touches non-empty strings, as in `tokenizers`.
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string* s) const override {
    if (!s->empty()) s->insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string* s) const override {
    KILN_ASSIGN_OR_RETURN(*s, pattern_.ReplaceAll(*s, content_));
    return absl::OkStatus();
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string* s) const override {
    size_t begin = 0;
    size_t end = s->size();
    if (left_) {
      size_t pos = 0;
      while (pos < end) {
        const size_t at = pos;
        if (!IsWhitespace(NextCodePoint(*s, &pos))) {
          begin = at;
          break;
        }
        begin = pos;
      }
    }
    if (right_) {
      // Walk back over whole code points.
      while (end > begin) {
        size_t lead = end - 1;
        while (lead > begin && (static_cast<unsigned char>((*s)[lead]) & 0xC0) == 0x80) --lead;
        size_t pos = lead;
        if (!IsWhitespace(NextCodePoint(*s, &pos))) break;
        end = lead;
      }
    }
    *s = s->substr(begin, end - begin);
    return absl::OkStatus();
  }

 private:
  bool left_;
  bool right_;
};

class StripAccentsNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string* s) const override {
    std::string out;
    size_t pos = 0;
    while (pos < s->size()) {
      const size_t at = pos;
      if (!IsCombiningMark(NextCodePoint(*s, &pos))) out.append(*s, at, pos - at);
    }
    *s = std::move(out);
    return absl::OkStatus();
  }
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Normalize(std::string* s) const override {
    for (const auto& p : parts_) KILN_RETURN_IF_ERROR(p->Normalize(s));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> NormalizerFromJson(const Json& j, std::string path,
                                                               RegexLimits limits) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  KILN_ASSIGN_OR_RETURN(const std::string type, GetType(j, path));
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Prepend") {
    KILN_ASSIGN_OR_RETURN(std::string prefix, GetString(j, "prepend", path, ""));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") {
    const Json* pattern = Member(j, "pattern");
    if (pattern == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".pattern is required"));
    }
    KILN_ASSIGN_OR_RETURN(Pattern p, Pattern::FromJson(*pattern, path + ".pattern",
                                                       "normalizer Replace", limits));
    KILN_ASSIGN_OR_RETURN(std::string content, GetString(j, "content", path, ""));
    return std::make_unique<ReplaceNormalizer>(std::move(p), std::move(content));
  }
  if (type == "Strip") {
    KILN_ASSIGN_OR_RETURN(const bool left, GetBool(j, "strip_left", path, false));
    KILN_ASSIGN_OR_RETURN(const bool right, GetBool(j, "strip_right", path, false));
    return std::make_unique<StripNormalizer>(left, right);
  }
  if (type == "Sequence") {
    const Json* list = Member(j, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".normalizers must be an array"));
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      KILN_ASSIGN_OR_RETURN(auto part,
                            NormalizerFromJson((*list)[i], absl::StrCat(path, ".normalizers[", i, "]"),
                                               limits));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  return absl::UnimplementedError(
      absl::StrCat(path, ": normalizer type '", type, "' is not supported"));
}

}  // namespace kiln::tokenizer
