// What transformers 5.x AutoTokenizer does on top of tokenizer.json, as pure functions over the
// parsed files (see tokenizer.h for the contract). Kept apart so the rules can be checked and
// updated against one transformers version in one place.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/json_access.h"

namespace kiln::tokenizer {

enum class HfTokenizerClass {
  kTokenizersBackend,  // tokenizer.json as is (PreTrainedTokenizerFast, unknown classes, ...)
  kLlama,              // LlamaTokenizer(Fast): Metaspace pipeline rebuilt from vocab + merges
  kGpt2,               // GPT2Tokenizer(Fast): ByteLevel pipeline
  kQwen2,              // Qwen2Tokenizer(Fast): NFC + Split(Qwen2 regex) + ByteLevel
};

// AutoTokenizer's class choice from tokenizer_config.json, config.json ("model_type",
// "tokenizer_class") and whether tokenizer.json mentions "ByteLevel". Either JSON may be null.
HfTokenizerClass ResolveTokenizerClass(const Json& tokenizer_config, const Json& model_config,
                                       bool tokenizer_json_has_byte_level);

// Rewrites normalizer / pre_tokenizer / decoder / model options of `tokenizer_json` the way the
// class's __init__ rebuilds its backend. No-op for kTokenizersBackend.
absl::Status ApplyClassPipeline(HfTokenizerClass cls, const Json& tokenizer_config,
                                Json* tokenizer_json);

// The special tokens tokenizer_config names (bos/eos/unk/pad, additional_special_tokens,
// extra_special_tokens), as added tokens with their flags (special, not normalized by default).
absl::StatusOr<std::vector<AddedToken>> NamedSpecialTokens(const Json& tokenizer_config);

// The content of a named special token entry ("<s>" or {"content": "<s>", ...}); nullopt for
// null/absent.
absl::StatusOr<std::optional<std::string>> SpecialTokenContent(const Json& tokenizer_config,
                                                               absl::string_view key);

// transformers' clean_up_tokenization (" ." -> "." etc.).
std::string CleanUpTokenizationSpaces(std::string text);

inline constexpr char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace kiln::tokenizer
