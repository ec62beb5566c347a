#include "engine/tokenizer/pattern.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {

absl::StatusOr<Pattern> Pattern::FromJson(const Json& j, absl::string_view path, std::string owner,
                                          RegexLimits limits) {
  if (const Json* s = Member(j, "String"); s != nullptr && s->is_string()) {
    return Literal(s->get_ref<const std::string&>());
  }
  if (const Json* r = Member(j, "Regex"); r != nullptr && r->is_string()) {
    auto re = Regex::Compile(r->get_ref<const std::string&>(), std::move(owner), limits);
    if (!re.ok()) return re.status();
    Pattern p;
    p.regex_ = std::shared_ptr<const Regex>(std::move(re).value());
    return p;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, " must be {\"String\": ...} or {\"Regex\": ...}"));
}

Pattern Pattern::Literal(std::string literal) {
  Pattern p;
  p.literal_ = std::move(literal);
  return p;
}

Pattern Pattern::CharPredicate(std::function<bool(char32_t)> pred) {
  Pattern p;
  p.pred_ = std::move(pred);
  return p;
}

absl::Status Pattern::FindMatches(std::string_view text, std::vector<Piece>* out) const {
  out->clear();
  if (text.empty()) {
    out->push_back({0, 0, false});
    return absl::OkStatus();
  }
  if (pred_) {
    size_t last = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t b = pos;
      const char32_t cp = NextCodePoint(text, &pos);
      if (pred_(cp)) {
        if (last < b) out->push_back({last, b, false});
        out->push_back({b, pos, true});
        last = pos;
      }
    }
    if (last < text.size()) out->push_back({last, text.size(), false});
    return absl::OkStatus();
  }
  std::vector<std::pair<size_t, size_t>> matches;
  if (regex_ != nullptr) {
    if (absl::Status s = regex_->FindAll(text, &matches); !s.ok()) return s;
  } else if (literal_.empty()) {
    out->push_back({0, text.size(), false});
    return absl::OkStatus();
  } else {
    for (size_t at = text.find(literal_); at != std::string_view::npos;
         at = text.find(literal_, at + literal_.size())) {
      matches.emplace_back(at, at + literal_.size());
    }
  }
  size_t prev = 0;
  for (const auto& [s, e] : matches) {
    if (prev != s) out->push_back({prev, s, false});
    out->push_back({s, e, true});
    prev = e;
  }
  if (prev != text.size()) out->push_back({prev, text.size(), false});
  return absl::OkStatus();
}

absl::StatusOr<std::string> Pattern::ReplaceAll(std::string_view text,
                                                std::string_view content) const {
  std::vector<Piece> pieces;
  if (absl::Status s = FindMatches(text, &pieces); !s.ok()) return s;
  std::string out;
  out.reserve(text.size());
  for (const Piece& p : pieces) {
    if (p.is_match) {
      out.append(content);
    } else {
      out.append(text.substr(p.begin, p.end - p.begin));
    }
  }
  return out;
}

absl::StatusOr<SplitBehavior> ParseSplitBehavior(const Json& j, absl::string_view path) {
  if (!j.is_string()) return absl::InvalidArgumentError(absl::StrCat(path, " must be a string"));
  const std::string& b = j.get_ref<const std::string&>();
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat(path, " has unknown split behavior '", b, "'"));
}

std::vector<std::pair<size_t, size_t>> ApplySplitBehavior(std::vector<Piece> pieces,
                                                          SplitBehavior behavior) {
  std::vector<std::pair<size_t, size_t>> out;
  out.reserve(pieces.size());
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Piece& p : pieces) out.emplace_back(p.begin, p.end);
      break;
    case SplitBehavior::kRemoved:
      for (const Piece& p : pieces) {
        if (!p.is_match) out.emplace_back(p.begin, p.end);
      }
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Piece& p : pieces) {
        if (p.is_match && !previous_match && !out.empty()) {
          out.back().second = p.end;
        } else {
          out.emplace_back(p.begin, p.end);
        }
        previous_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().first = it->begin;
        } else {
          out.emplace_back(it->begin, it->end);
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Piece& p : pieces) {
        if (p.is_match == previous_match && !out.empty()) {
          out.back().second = p.end;
        } else {
          out.emplace_back(p.begin, p.end);
        }
        previous_match = p.is_match;
      }
      break;
    }
  }
  return out;
}

}  // namespace kiln::tokenizer
