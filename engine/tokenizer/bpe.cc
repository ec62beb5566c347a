#include "engine/tokenizer/bpe.h"

#include <cstdio>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {
namespace {

absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const Json& m, size_t index) {
  if (m.is_string()) {
    // "a b": exactly one space separates the two parts (tokenizers' legacy merges format).
    const std::string& s = m.get_ref<const std::string&>();
    const size_t sp = s.find(' ');
    if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.merges[", index, "] '", s, "' is not two tokens separated by a space"));
    }
    return std::make_pair(s.substr(0, sp), s.substr(sp + 1));
  }
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    return std::make_pair(m[0].get<std::string>(), m[1].get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model.merges[", index, "] must be \"a b\" or [\"a\", \"b\"]"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const Json& model, BpeLimits limits) {
  std::unique_ptr<BpeModel> bpe(new BpeModel());
  const Json* dropout = Member(model, "dropout");
  if (dropout != nullptr && (!dropout->is_number() || dropout->get<double>() != 0.0)) {
    return absl::UnimplementedError("model.dropout: BPE dropout is not supported");
  }
  KILN_ASSIGN_OR_RETURN(bpe->unk_token_, GetOptionalString(model, "unk_token", "model"));
  KILN_ASSIGN_OR_RETURN(bpe->continuing_subword_prefix_,
                        GetOptionalString(model, "continuing_subword_prefix", "model"));
  KILN_ASSIGN_OR_RETURN(bpe->end_of_word_suffix_,
                        GetOptionalString(model, "end_of_word_suffix", "model"));
  KILN_ASSIGN_OR_RETURN(bpe->fuse_unk_, GetBool(model, "fuse_unk", "model", false));
  KILN_ASSIGN_OR_RETURN(bpe->byte_fallback_, GetBool(model, "byte_fallback", "model", false));
  KILN_ASSIGN_OR_RETURN(bpe->ignore_merges_, GetBool(model, "ignore_merges", "model", false));

  const Json* vocab = Member(model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return absl::InvalidArgumentError("model.vocab must be an object of token -> id");
  }
  if (vocab->size() > limits.max_vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("model.vocab has ", vocab->size(),
                                                   " entries, over the limit of ",
                                                   limits.max_vocab_size));
  }
  bpe->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const std::string& token = it.key();
    if (!it.value().is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.vocab['", token, "'] must be an integer id"));
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || static_cast<uint64_t>(id) >= limits.max_vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("model.vocab['", token, "'] has id ", id,
                                                     ", outside [0, ", limits.max_vocab_size, ")"));
    }
    if (token.size() > limits.max_token_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("model.vocab has a ", token.size(),
                                                     "-byte token, over the limit of ",
                                                     limits.max_token_bytes));
    }
    if (static_cast<size_t>(id) >= bpe->id_strings_.size()) {
      bpe->id_strings_.resize(id + 1);
      bpe->has_id_.resize(id + 1, false);
    }
    if (bpe->has_id_[id]) {
      return absl::InvalidArgumentError(absl::StrCat("model.vocab: id ", id, " is used by both '",
                                                     bpe->id_strings_[id], "' and '", token, "'"));
    }
    bpe->has_id_[id] = true;
    bpe->id_strings_[id] = token;
    bpe->vocab_.emplace(token, static_cast<int32_t>(id));
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = bpe->vocab_.find(name);
    bpe->byte_ids_[b] = it == bpe->vocab_.end() ? -1 : it->second;
  }

  const Json* merges = Member(model, "merges");
  if (merges != nullptr && !merges->is_array()) {
    return absl::InvalidArgumentError("model.merges must be an array");
  }
  if (merges != nullptr) {
    if (merges->size() > limits.max_merges) {
      return absl::InvalidArgumentError(absl::StrCat("model.merges has ", merges->size(),
                                                     " entries, over the limit of ",
                                                     limits.max_merges));
    }
    const size_t prefix_len =
        bpe->continuing_subword_prefix_.has_value() ? bpe->continuing_subword_prefix_->size() : 0;
    bpe->merges_.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      KILN_ASSIGN_OR_RETURN(auto pair, ParseMerge((*merges)[i], i));
      const auto a = bpe->vocab_.find(pair.first);
      const auto b = bpe->vocab_.find(pair.second);
      if (a == bpe->vocab_.end() || b == bpe->vocab_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model.merges[", i, "] names token '",
            a == bpe->vocab_.end() ? pair.first : pair.second, "' that is not in model.vocab"));
      }
      if (pair.second.size() < prefix_len) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model.merges[", i, "]: '", pair.second, "' is shorter than continuing_subword_prefix"));
      }
      const std::string merged = pair.first + pair.second.substr(prefix_len);
      const auto m = bpe->vocab_.find(merged);
      if (m == bpe->vocab_.end()) {
        return absl::InvalidArgumentError(absl::StrCat("model.merges[", i, "] produces '", merged,
                                                       "' that is not in model.vocab"));
      }
      // A later duplicate overrides the earlier rank, as tokenizers' HashMap collect does.
      bpe->merges_.insert_or_assign(PairKey(a->second, b->second),
                                    MergeInfo{static_cast<uint32_t>(i), m->second});
    }
  }
  return bpe;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(ToAbsl(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_strings_.size() || !has_id_[id]) return nullptr;
  return &id_strings_[id];
}

absl::Status BpeModel::InitialSymbols(std::string_view word, std::vector<Symbol>* symbols) const {
  // Mirrors tokenizers' BPE::merge_word: each character (with prefix/suffix decorations) is a
  // vocab token, else its <0xXX> byte tokens, else unk (fused with a pending unk if fuse_unk).
  // The pending unk symbol (unk_len == 0: none pending).
  int32_t unk_id_pending = -1;
  uint32_t unk_len = 0;
  auto add = [symbols](int32_t id, uint32_t len) {
    const auto n = static_cast<int32_t>(symbols->size());
    if (n > 0) symbols->back().next = n;
    symbols->push_back({id, n - 1, -1, len});
  };
  std::string decorated;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t begin = pos;
    NextCodePoint(word, &pos);
    const auto byte_len = static_cast<uint32_t>(pos - begin);
    std::string_view piece = word.substr(begin, pos - begin);
    if ((begin != 0 && continuing_subword_prefix_.has_value()) ||
        (pos == word.size() && end_of_word_suffix_.has_value())) {
      decorated.clear();
      if (begin != 0 && continuing_subword_prefix_.has_value()) {
        decorated = *continuing_subword_prefix_;
      }
      decorated.append(piece);
      if (pos == word.size() && end_of_word_suffix_.has_value()) decorated += *end_of_word_suffix_;
      piece = decorated;
    }
    if (auto it = vocab_.find(ToAbsl(piece)); it != vocab_.end()) {
      if (unk_len > 0) {
        add(unk_id_pending, unk_len);
        unk_len = 0;
      }
      add(it->second, byte_len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : piece) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : piece) add(byte_ids_[b], 1);
        continue;
      }
    }
    if (unk_token_.has_value()) {
      const auto unk_it = vocab_.find(*unk_token_);
      if (unk_it == vocab_.end()) {
        // As tokenizers: an unk_token outside the vocab only fails when it is needed.
        return absl::InvalidArgumentError(absl::StrCat(
            "model.unk_token '", *unk_token_, "' is not in model.vocab but the input needs it"));
      }
      const int32_t unk_id = unk_it->second;
      if (unk_len > 0 && fuse_unk_) {
        unk_len += byte_len;
      } else {
        if (unk_len > 0) add(unk_id_pending, unk_len);
        unk_id_pending = unk_id;
        unk_len = byte_len;
      }
    }
    // Without unk_token the character is dropped, as tokenizers does.
  }
  if (unk_len > 0) add(unk_id_pending, unk_len);
  return absl::OkStatus();
}

void BpeModel::MergeAll(std::vector<Symbol>* symbols) const {
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // Lowest rank first, then leftmost position (tokenizers' Merge ordering).
  auto worse = [](const Candidate& x, const Candidate& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::vector<Candidate> storage;
  storage.reserve(symbols->size());
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> queue(worse,
                                                                               std::move(storage));
  std::vector<Symbol>& s = *symbols;
  auto lookup = [this](int32_t a, int32_t b) -> const MergeInfo* {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (const MergeInfo* m = lookup(s[i].id, s[i + 1].id)) {
      queue.push({m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = s[top.pos];
    if (left.len == 0 || left.next == -1) continue;
    const int32_t right_pos = left.next;
    const Symbol right = s[right_pos];
    // Skip stale entries: the pair at this position must still produce the same token.
    const MergeInfo* current = lookup(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    s[right_pos].len = 0;
    if (right.next >= 0) s[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeInfo* m = lookup(s[left.prev].id, left.id)) {
        queue.push({m->rank, left.prev, m->new_id});
      }
    }
    if (left.next >= 0) {
      if (const MergeInfo* m = lookup(left.id, s[left.next].id)) {
        queue.push({m->rank, top.pos, m->new_id});
      }
    }
  }
}

absl::Status BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return absl::OkStatus();
  if (ignore_merges_) {
    if (auto it = vocab_.find(ToAbsl(word)); it != vocab_.end()) {
      ids->push_back(it->second);
      return absl::OkStatus();
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  KILN_RETURN_IF_ERROR(InitialSymbols(word, &symbols));
  MergeAll(&symbols);
  for (const Symbol& sym : symbols) {
    if (sym.len != 0) ids->push_back(sym.id);
  }
  return absl::OkStatus();
}

}  // namespace kiln::tokenizer
