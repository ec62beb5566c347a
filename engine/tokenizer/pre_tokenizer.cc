#include "engine/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {
namespace {

// Splits every split of `splits` with `pattern` under `behavior` (NormalizedString::split),
// optionally inverting matches, and drops empty results (PreTokenizedString::split).
absl::Status SplitAll(const Pattern& pattern, SplitBehavior behavior, bool invert,
                      std::vector<PreSplit>* splits) {
  std::vector<PreSplit> out;
  out.reserve(splits->size());
  std::vector<Piece> pieces;
  for (PreSplit& split : *splits) {
    KILN_RETURN_IF_ERROR(pattern.FindMatches(split.text, &pieces));
    if (invert) {
      for (Piece& p : pieces) p.is_match = !p.is_match;
    }
    for (const auto& [b, e] : ApplySplitBehavior(std::move(pieces), behavior)) {
      if (b == e) continue;
      out.push_back({split.text.substr(b, e - b), split.at_origin && b == 0});
    }
    pieces.clear();
  }
  *splits = std::move(out);
  return absl::OkStatus();
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::shared_ptr<const Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  absl::Status PreTokenize(std::vector<PreSplit>* splits) const override {
    if (add_prefix_space_) {
      for (PreSplit& s : *splits) {
        if (s.text.empty() || s.text[0] != ' ') s.text.insert(0, " ");
      }
    }
    if (regex_ != nullptr) {
      std::vector<PreSplit> out;
      std::vector<std::pair<size_t, size_t>> matches;
      for (PreSplit& split : *splits) {
        matches.clear();
        KILN_RETURN_IF_ERROR(regex_->FindAll(split.text, &matches));
        // Isolated: matches and the gaps between them are all kept.
        size_t prev = 0;
        auto emit = [&](size_t b, size_t e) {
          if (b != e) out.push_back({split.text.substr(b, e - b), split.at_origin && b == 0});
        };
        for (const auto& [b, e] : matches) {
          emit(prev, b);
          emit(b, e);
          prev = e;
        }
        emit(prev, split.text.size());
      }
      *splits = std::move(out);
    }
    for (PreSplit& s : *splits) {
      std::string mapped;
      mapped.reserve(s.text.size() * 2);
      for (unsigned char b : s.text) AppendUtf8(ByteToChar(b), &mapped);
      s.text = std::move(mapped);
    }
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::shared_ptr<const Regex> regex_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(std::vector<PreSplit>* splits) const override {
    return SplitAll(pattern_, behavior_, invert_, splits);
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

enum class PrependScheme { kFirst, kAlways, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : scheme_(scheme), split_(split) {
    AppendUtf8(replacement, &replacement_);
    pattern_ = Pattern::CharPredicate([replacement](char32_t c) { return c == replacement; });
  }
  absl::Status PreTokenize(std::vector<PreSplit>* splits) const override {
    for (PreSplit& s : *splits) {
      std::string replaced;
      replaced.reserve(s.text.size() + replacement_.size());
      for (char c : s.text) {
        if (c == ' ') {
          replaced.append(replacement_);
        } else {
          replaced.push_back(c);
        }
      }
      const bool starts = replaced.compare(0, replacement_.size(), replacement_) == 0;
      const bool prepend = !starts && (scheme_ == PrependScheme::kAlways ||
                                       (scheme_ == PrependScheme::kFirst && s.at_origin));
      if (prepend) replaced.insert(0, replacement_);
      s.text = std::move(replaced);
    }
    if (!split_) {
      std::erase_if(*splits, [](const PreSplit& s) { return s.text.empty(); });
      return absl::OkStatus();
    }
    return SplitAll(pattern_, SplitBehavior::kMergedWithNext, false, splits);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  Pattern pattern_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual)
      : individual_(individual), pattern_(Pattern::CharPredicate(IsNumeric)) {}
  absl::Status PreTokenize(std::vector<PreSplit>* splits) const override {
    return SplitAll(pattern_,
                    individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false,
                    splits);
  }

 private:
  bool individual_;
  Pattern pattern_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status PreTokenize(std::vector<PreSplit>* splits) const override {
    for (const auto& p : parts_) KILN_RETURN_IF_ERROR(p->PreTokenize(splits));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

absl::StatusOr<char32_t> SingleChar(const std::string& s, absl::string_view what) {
  if (s.empty() || !IsValidUtf8(s)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be a single character"));
  }
  size_t pos = 0;
  const char32_t c = NextCodePoint(s, &pos);
  if (pos != s.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be a single character, got '",
                                                   s, "'"));
  }
  return c;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizerFromJson(const Json& j, std::string path,
                                                                   RegexLimits limits) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  KILN_ASSIGN_OR_RETURN(const std::string type, GetType(j, path));
  if (type == "ByteLevel") {
    KILN_ASSIGN_OR_RETURN(const bool prefix, GetBool(j, "add_prefix_space", path, true));
    KILN_ASSIGN_OR_RETURN(const bool use_regex, GetBool(j, "use_regex", path, true));
    std::shared_ptr<const Regex> regex;
    if (use_regex) {
      KILN_ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2Pattern, "pre_tokenizer ByteLevel", limits));
    }
    return std::make_unique<ByteLevelPreTokenizer>(prefix, std::move(regex));
  }
  if (type == "Split") {
    const Json* pattern = Member(j, "pattern");
    const Json* behavior = Member(j, "behavior");
    if (pattern == nullptr || behavior == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": Split needs pattern and behavior"));
    }
    KILN_ASSIGN_OR_RETURN(Pattern p, Pattern::FromJson(*pattern, path + ".pattern",
                                                       "pre_tokenizer Split", limits));
    KILN_ASSIGN_OR_RETURN(const SplitBehavior b, ParseSplitBehavior(*behavior, path + ".behavior"));
    KILN_ASSIGN_OR_RETURN(const bool invert, GetBool(j, "invert", path, false));
    return std::make_unique<SplitPreTokenizer>(std::move(p), b, invert);
  }
  if (type == "Metaspace") {
    KILN_ASSIGN_OR_RETURN(const std::string rep, GetString(j, "replacement", path, "\xE2\x96\x81"));
    KILN_ASSIGN_OR_RETURN(const char32_t c, SingleChar(rep, path + ".replacement"));
    PrependScheme scheme = PrependScheme::kAlways;
    if (const Json* ps = Member(j, "prepend_scheme"); ps != nullptr) {
      const std::string s = ps->is_string() ? ps->get<std::string>() : "";
      if (s == "first") {
        scheme = PrependScheme::kFirst;
      } else if (s == "always") {
        scheme = PrependScheme::kAlways;
      } else if (s == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(path, ".prepend_scheme '", s,
                                                       "' is not first/always/never"));
      }
    } else {
      // Legacy files: add_prefix_space true -> always, false -> never.
      KILN_ASSIGN_OR_RETURN(const bool prefix, GetBool(j, "add_prefix_space", path, true));
      scheme = prefix ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    KILN_ASSIGN_OR_RETURN(const bool split, GetBool(j, "split", path, true));
    return std::make_unique<MetaspacePreTokenizer>(c, scheme, split);
  }
  if (type == "Digits") {
    KILN_ASSIGN_OR_RETURN(const bool individual, GetBool(j, "individual_digits", path, false));
    return std::make_unique<DigitsPreTokenizer>(individual);
  }
  if (type == "Sequence") {
    const Json* list = Member(j, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".pretokenizers must be an array"));
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      KILN_ASSIGN_OR_RETURN(
          auto part, PreTokenizerFromJson((*list)[i], absl::StrCat(path, ".pretokenizers[", i, "]"),
                                          limits));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  return absl::UnimplementedError(
      absl::StrCat(path, ": pre_tokenizer type '", type, "' is not supported"));
}

}  // namespace kiln::tokenizer
