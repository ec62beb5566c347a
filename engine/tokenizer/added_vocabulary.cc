#include "engine/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {
namespace {

bool IsWordChar(char32_t c) { return IsAlphanumeric(c) || c == '_'; }

char32_t LastChar(std::string_view s) {
  size_t lead = s.size() - 1;
  while (lead > 0 && (static_cast<unsigned char>(s[lead]) & 0xC0) == 0x80) --lead;
  return NextCodePoint(s, &lead);
}

char32_t FirstChar(std::string_view s) {
  size_t pos = 0;
  return NextCodePoint(s, &pos);
}

// Byte offset just after the last non-whitespace character of `s` (0 if all whitespace).
size_t AfterLastNonSpace(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t lead = end - 1;
    while (lead > 0 && (static_cast<unsigned char>(s[lead]) & 0xC0) == 0x80) --lead;
    size_t pos = lead;
    if (!IsWhitespace(NextCodePoint(s, &pos))) return end;
    end = lead;
  }
  return 0;
}

// Byte length of the whitespace prefix of `s`.
size_t LeadingSpace(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t at = pos;
    if (!IsWhitespace(NextCodePoint(s, &pos))) return at;
  }
  return s.size();
}

}  // namespace

void AddedVocabulary::Trie::Insert(std::string_view pattern, int32_t token) {
  if (pattern.empty()) return;
  first_byte[static_cast<unsigned char>(pattern[0])] = true;
  int32_t node = 0;
  for (unsigned char c : pattern) {
    auto it = nodes[node].next.find(c);
    if (it == nodes[node].next.end()) {
      nodes.emplace_back();
      const auto fresh = static_cast<int32_t>(nodes.size() - 1);
      nodes[node].next.emplace(c, fresh);
      node = fresh;
    } else {
      node = it->second;
    }
  }
  if (nodes[node].token < 0) nodes[node].token = token;  // the first pattern wins ties
}

std::pair<size_t, int32_t> AddedVocabulary::Trie::LongestAt(std::string_view text,
                                                            size_t pos) const {
  std::pair<size_t, int32_t> best{pos, -1};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = nodes[node].next.find(static_cast<unsigned char>(text[i]));
    if (it == nodes[node].next.end()) break;
    node = it->second;
    if (nodes[node].token >= 0) best = {i + 1, nodes[node].token};
  }
  return best;
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::Build(std::vector<AddedToken> tokens,
                                                       const BpeModel& model,
                                                       const Normalizer* normalizer,
                                                       size_t max_id) {
  AddedVocabulary v;
  for (AddedToken& t : tokens) {
    if (t.content.empty()) continue;  // tokenizers ignores empty added tokens
    if (v.by_content_.contains(t.content)) {
      return absl::InvalidArgumentError(
          absl::StrCat("added_tokens: '", t.content, "' is listed twice"));
    }
    int64_t id = 0;
    if (auto model_id = model.TokenToId(t.content); model_id.has_value()) {
      id = *model_id;
    } else if (v.max_id_ >= 0 && (static_cast<size_t>(v.max_id_) >= model.size() ||
                                  model.size() == 0)) {
      id = static_cast<int64_t>(v.max_id_) + 1;
    } else {
      id = static_cast<int64_t>(model.size());
    }
    if (t.declared_id.has_value() && *t.declared_id != id) {
      return absl::InvalidArgumentError(absl::StrCat(
          "added_tokens: '", t.content, "' declares id ", *t.declared_id,
          " but tokenizers would assign id ", id, " (ids must follow the model vocab in order)"));
    }
    if (static_cast<size_t>(id) >= max_id) {
      return absl::InvalidArgumentError(absl::StrCat("added_tokens: '", t.content, "' gets id ", id,
                                                     ", over the limit of ", max_id));
    }
    if (const std::string* model_token = model.IdToToken(static_cast<int32_t>(id));
        model_token != nullptr && *model_token != t.content) {
      return absl::InvalidArgumentError(absl::StrCat("added_tokens: '", t.content, "' gets id ", id,
                                                     ", which model.vocab gives to '", *model_token,
                                                     "'"));
    }
    const size_t index = v.tokens_.size();
    v.by_content_.emplace(t.content, index);
    v.by_id_.emplace(static_cast<int32_t>(id), index);
    v.ids_.push_back(static_cast<int32_t>(id));
    v.max_id_ = std::max(v.max_id_, static_cast<int32_t>(id));
    v.tokens_.push_back(std::move(t));
  }
  // Tries: non-special tokens first, then special ones (tokenizers' refresh order).
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < v.tokens_.size(); ++i) {
      const AddedToken& t = v.tokens_[i];
      if (t.special != (pass == 1)) continue;
      if (!t.normalized) {
        v.raw_trie_.Insert(t.content, static_cast<int32_t>(i));
        continue;
      }
      std::string content = t.content;
      if (normalizer != nullptr) KILN_RETURN_IF_ERROR(normalizer->Normalize(&content));
      v.normalized_trie_.Insert(content, static_cast<int32_t>(i));
    }
  }
  return v;
}

void AddedVocabulary::Split(std::string_view text, bool normalized_pass, bool split_special,
                            std::vector<Segment>* out) const {
  const Trie& trie = normalized_pass ? normalized_trie_ : raw_trie_;
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!trie.first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const auto [match_end, index] = trie.LongestAt(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = match_end;
    pos = match_end;  // non-overlapping: the scan resumes after this match even if it is skipped
    const AddedToken& t = tokens_[index];
    if (split_special && t.special) continue;
    if (t.single_word) {
      const bool start_space = start == 0 || !IsWordChar(LastChar(text.substr(0, start)));
      const bool stop_space = stop == text.size() || !IsWordChar(FirstChar(text.substr(stop)));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(AfterLastNonSpace(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += LeadingSpace(text.substr(stop));
    start = std::max(start, start_offset);
    if (start_offset < start) out->push_back({start_offset, start, -1});
    out->push_back({start, stop, ids_[index]});
    start_offset = stop;
    pos = std::max(pos, stop);
  }
  if (start_offset < text.size() || text.empty()) out->push_back({start_offset, text.size(), -1});
}

std::optional<int32_t> AddedVocabulary::TokenToId(std::string_view content) const {
  auto it = by_content_.find(ToAbsl(content));
  if (it == by_content_.end()) return std::nullopt;
  return ids_[it->second];
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

bool AddedVocabulary::IsSpecialContent(std::string_view content) const {
  auto it = by_content_.find(ToAbsl(content));
  return it != by_content_.end() && tokens_[it->second].special;
}

}  // namespace kiln::tokenizer
