// kiln's tokenizer: a tokenizer.json (Hugging Face `tokenizers` 0.23 format) run exactly as the
// `tokenizers` library runs it, with the semantics `transformers.AutoTokenizer` (5.x) layers on
// top when loaded from a model directory.
//
//   KILN_ASSIGN_OR_RETURN(auto tok, Tokenizer::FromDirectory(model_dir));
//   KILN_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok->Encode("Hello", /*add_special_tokens=*/true));
//   KILN_ASSIGN_OR_RETURN(std::string text, tok->Decode(ids, /*skip_special_tokens=*/true));
//
// Supported: model BPE (byte-level GPT-2/Llama-3/Qwen2 style and SentencePiece-style with
// byte_fallback as Llama-2/Mistral); the normalizers, pre-tokenizers, post-processors and
// decoders those families use (see normalizer.h, pre_tokenizer.h, post_processor.h, decoder.h);
// added tokens with all their flags. Anything else is UNIMPLEMENTED with the component named.
//
// AutoTokenizer semantics (FromDirectory, or FromJson with a tokenizer_config): transformers 5
// rebuilds the pipeline for some tokenizer classes instead of trusting tokenizer.json. kiln
// resolves the class as AutoTokenizer does (tokenizer_config "tokenizer_class", config.json
// "model_type") and applies the same rebuild for LlamaTokenizer (Metaspace, prepend_scheme from
// add_prefix_space/legacy), GPT2Tokenizer (ByteLevel) and Qwen2Tokenizer (NFC + Split +
// ByteLevel); every other class uses tokenizer.json as is. add_bos_token/add_eos_token are
// ignored when tokenizer.json exists (as transformers 5 does: its post_processor decides), the
// named special tokens of tokenizer_config are added when missing, split_special_tokens is
// honoured, and clean_up_tokenization_spaces is applied only where transformers applies it to a
// BPE model (with clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output).
// So Decode equals AutoTokenizer.decode, which for BPE equals raw tokenizers' decode.
//
// Thread-safety: immutable after construction; every method is safe to call concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/regex.h"

namespace kiln::tokenizer {

class AddedVocabulary;
class BpeModel;
class Decoder;
class Normalizer;
class PostProcessor;
class PreTokenizer;

struct TokenizerLimits {
  size_t max_json_bytes = 256u << 20;   // tokenizer.json size (Gemma's is ~34 MB)
  int max_json_depth = 64;              // nesting of tokenizer.json / tokenizer_config.json
  size_t max_vocab_size = 1u << 21;     // model vocab entries, and any id + 1
  size_t max_merges = 1u << 22;
  size_t max_token_bytes = 4096;        // one vocab entry
  size_t max_added_tokens = 1u << 17;
  size_t max_input_bytes = 64u << 20;   // Encode input
  RegexLimits regex;                    // per-match budget of Split/Replace/ByteLevel regexes
};

class Tokenizer {
 public:
  // Reads <dir>/tokenizer.json (required), <dir>/tokenizer_config.json and <dir>/config.json
  // (optional) and applies AutoTokenizer semantics. NOT_FOUND without tokenizer.json;
  // INVALID_ARGUMENT for malformed or inconsistent files (message names the file and field,
  // never the directory); UNIMPLEMENTED for unsupported component types.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromDirectory(const std::string& dir,
                                                                  const TokenizerLimits& limits = {});
  // With an empty `tokenizer_config_json`: exactly `tokenizers.Tokenizer.from_str`. With one
  // (and optionally config.json text): AutoTokenizer semantics as FromDirectory.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view tokenizer_config_json = {},
                                                             std::string_view model_config_json = {},
                                                             const TokenizerLimits& limits = {});
  ~Tokenizer();

  // INVALID_ARGUMENT when `text` is not valid UTF-8, exceeds max_input_bytes, or a regex exceeds
  // its budget (the message names the pre-tokenizer / normalizer).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;
  // As tokenizers' decode: ids without a token (out of range, gaps) are dropped; the result is
  // valid UTF-8 (invalid byte sequences become U+FFFD).
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const;

  std::optional<std::string> IdToToken(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Distinct tokens, model vocab plus added tokens (tokenizers' get_vocab_size(true), len()).
  size_t vocab_size() const;
  // Largest token id + 1: every id Encode returns is below this.
  size_t id_bound() const;
  bool IsSpecial(int32_t id) const;
  // From tokenizer_config.json's bos_token / eos_token / pad_token / unk_token (empty when not
  // loaded with a config or when the token is null or unknown).
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::vector<int32_t> eos_ids() const { return eos_ids_; }
  std::optional<int32_t> pad_id() const { return pad_id_; }
  std::optional<int32_t> unk_id() const { return unk_id_; }

  // Building blocks of Decode, used by StreamingDetokenizer: the token strings of `ids` after
  // dropping unknown (and, if asked, special) ids, and the decoder chain over token strings.
  void AppendTokens(absl::Span<const int32_t> ids, bool skip_special_tokens,
                    std::vector<std::string>* tokens) const;
  absl::StatusOr<std::string> DecodeTokens(std::vector<std::string> tokens) const;
  // True when the decoder merges runs of <0xXX> tokens (see Decoder::HasByteFallback).
  bool decoder_has_byte_fallback() const;

 private:
  Tokenizer();
  struct Config;
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Build(std::string_view tokenizer_json,
                                                          const Config* config,
                                                          const TokenizerLimits& limits);
  absl::Status EncodeText(std::string_view piece, bool at_origin, std::vector<int32_t>* ids) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<AddedVocabulary> added_;
  TokenizerLimits limits_;
  bool split_special_tokens_ = false;
  bool clean_up_spaces_ = false;
  size_t vocab_size_ = 0;
  size_t id_bound_ = 0;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  std::optional<int32_t> pad_id_;
  std::optional<int32_t> unk_id_;
};

}  // namespace kiln::tokenizer
