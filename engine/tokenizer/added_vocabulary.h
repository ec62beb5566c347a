// Added tokens (tokenizer.json "added_tokens"): ids assigned as `tokenizers` assigns them, and the
// two-pass split of the input on them (non-normalized tokens on the raw text, normalized tokens
// on each normalized piece), leftmost-longest, honouring single_word / lstrip / rstrip.
// Immutable after Build; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/normalizer.h"

namespace kiln::tokenizer {

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
  std::optional<int64_t> declared_id;  // the "id" written in the file, if any
};

class AddedVocabulary {
 public:
  struct Segment {
    size_t begin = 0;
    size_t end = 0;
    int32_t id = -1;  // -1: plain text to encode with the model
  };

  // Assigns ids in order like tokenizers' add_tokens (the model id for a token already in the
  // vocab, else the next id after max(model size, largest added id)). INVALID_ARGUMENT when a
  // declared id disagrees with that, a content repeats, or an id reaches max_id.
  static absl::StatusOr<AddedVocabulary> Build(std::vector<AddedToken> tokens,
                                               const BpeModel& model, const Normalizer* normalizer,
                                               size_t max_id);

  // Splits `text` on the non-normalized (`normalized_pass` false) or normalized tokens.
  // Special tokens are skipped when `split_special` (tokenizers' encode_special_tokens).
  void Split(std::string_view text, bool normalized_pass, bool split_special,
             std::vector<Segment>* out) const;

  std::optional<int32_t> TokenToId(std::string_view content) const;
  const AddedToken* FindById(int32_t id) const;
  bool IsSpecialContent(std::string_view content) const;
  size_t size() const { return tokens_.size(); }
  int32_t max_id() const { return max_id_; }  // -1 when empty

 private:
  struct Trie {
    struct Node {
      absl::flat_hash_map<unsigned char, int32_t> next;
      int32_t token = -1;  // index into tokens_ when a pattern ends here
    };
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
    void Insert(std::string_view pattern, int32_t token);
    // Longest pattern starting at `pos`: returns its end and token index, or token -1.
    std::pair<size_t, int32_t> LongestAt(std::string_view text, size_t pos) const;
  };

  std::vector<AddedToken> tokens_;
  std::vector<int32_t> ids_;  // parallel to tokens_
  absl::flat_hash_map<std::string, size_t> by_content_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  Trie raw_trie_;
  Trie normalized_trie_;
  int32_t max_id_ = -1;
};

}  // namespace kiln::tokenizer
