// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}) as `tokenizers` runs it:
// vocab + ranked merges, byte_fallback (<0xXX> tokens), unk_token with fuse_unk, ignore_merges,
// continuing_subword_prefix / end_of_word_suffix. Dropout is rejected (kiln is deterministic).
//
// Merging uses a min-heap over (rank, position) with lazy invalidation, O(n log n) per word.
// Immutable after construction; Tokenize is safe to call from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/json_access.h"

namespace kiln::tokenizer {

struct BpeLimits {
  size_t max_vocab_size = 1u << 21;  // entries and largest id + 1
  size_t max_merges = 1u << 22;
  size_t max_token_bytes = 4096;
};

class BpeModel {
 public:
  // Validates the model: ids non-negative, unique and < max_vocab_size; merges well formed, naming
  // vocab tokens, and producing a vocab token; unk_token (if set) in the vocab. Errors are
  // INVALID_ARGUMENT naming the field; dropout > 0 is UNIMPLEMENTED.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const Json& model, BpeLimits limits);

  // Appends the ids of `word` (one pre-tokenized split, non-empty). INVALID_ARGUMENT when an
  // unknown character needs unk_token and none is usable.
  absl::Status Tokenize(std::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr for ids with no token.
  const std::string* IdToToken(int32_t id) const;
  // Number of vocab entries (tokenizers' BPE::get_vocab_size).
  size_t size() const { return vocab_.size(); }
  // Largest id + 1.
  size_t id_bound() const { return id_strings_.size(); }

 private:
  BpeModel() = default;
  struct MergeInfo {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    uint32_t len;  // bytes covered; 0 marks a symbol merged into its left neighbour
  };
  absl::Status InitialSymbols(std::string_view word, std::vector<Symbol>* symbols) const;
  void MergeAll(std::vector<Symbol>* symbols) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_strings_;  // by id; gaps hold empty strings
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;
  std::optional<std::string> unk_token_;
  std::optional<std::string> continuing_subword_prefix_;
  std::optional<std::string> end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256] = {};  // <0xXX> ids, -1 when absent
};

}  // namespace kiln::tokenizer
