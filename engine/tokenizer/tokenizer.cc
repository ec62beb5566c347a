#include "engine/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/tokenizer/added_vocabulary.h"
#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/decoder.h"
#include "engine/tokenizer/json_access.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/post_processor.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/transformers_compat.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {

struct Tokenizer::Config {
  Json tokenizer_config;  // object, or null when absent
  Json model_config;      // object, or null when absent
};

namespace {

// Reads `dir`/`name` into *out. NOT_FOUND when missing (reported only by name: the directory
// may lie outside what the caller may reveal).
absl::Status ReadFile(const std::string& dir, const char* name, size_t max_bytes,
                      std::string* out) {
  const std::filesystem::path path = std::filesystem::path(dir) / name;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(name, " not found in the model directory"));
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat(name, ": cannot read its size"));
  if (size > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is ", size,
                                                   " bytes, over the limit of ", max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(name, ": cannot be opened"));
  out->resize(size);
  in.read(out->data(), static_cast<std::streamsize>(size));
  if (static_cast<size_t>(in.gcount()) != size) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": short read"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const Json& tj, size_t max_count) {
  std::vector<AddedToken> out;
  const Json* list = Member(tj, "added_tokens");
  if (list == nullptr) return out;
  if (!list->is_array()) return absl::InvalidArgumentError("added_tokens must be an array");
  if (list->size() > max_count) {
    return absl::InvalidArgumentError(absl::StrCat("added_tokens has ", list->size(),
                                                   " entries, over the limit of ", max_count));
  }
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& e = (*list)[i];
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    if (!e.is_object()) return absl::InvalidArgumentError(path + " must be an object");
    AddedToken t;
    KILN_ASSIGN_OR_RETURN(t.content, GetString(e, "content", path, ""));
    KILN_ASSIGN_OR_RETURN(t.single_word, GetBool(e, "single_word", path, false));
    KILN_ASSIGN_OR_RETURN(t.lstrip, GetBool(e, "lstrip", path, false));
    KILN_ASSIGN_OR_RETURN(t.rstrip, GetBool(e, "rstrip", path, false));
    KILN_ASSIGN_OR_RETURN(t.special, GetBool(e, "special", path, false));
    KILN_ASSIGN_OR_RETURN(t.normalized, GetBool(e, "normalized", path, !t.special));
    if (Member(e, "id") != nullptr) {
      KILN_ASSIGN_OR_RETURN(const int64_t id, GetInt(e, "id", path, 0));
      t.declared_id = id;
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromDirectory(const std::string& dir,
                                                                    const TokenizerLimits& limits) {
  std::string tokenizer_json;
  KILN_RETURN_IF_ERROR(ReadFile(dir, "tokenizer.json", limits.max_json_bytes, &tokenizer_json));
  std::string files[2];
  const char* names[2] = {"tokenizer_config.json", "config.json"};
  for (int i = 0; i < 2; ++i) {
    absl::Status s = ReadFile(dir, names[i], limits.max_json_bytes, &files[i]);
    if (absl::IsNotFound(s)) {
      files[i] = "{}";
    } else if (!s.ok()) {
      return s;
    }
  }
  return FromJson(tokenizer_json, files[0], files[1], limits);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                               std::string_view tokenizer_config_json,
                                                               std::string_view model_config_json,
                                                               const TokenizerLimits& limits) {
  if (tokenizer_config_json.empty()) return Build(tokenizer_json, nullptr, limits);
  Config config;
  KILN_ASSIGN_OR_RETURN(config.tokenizer_config,
                        ParseJsonBounded(tokenizer_config_json, "tokenizer_config.json",
                                         limits.max_json_bytes, limits.max_json_depth));
  if (!config.tokenizer_config.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json must be a JSON object");
  }
  if (!model_config_json.empty()) {
    KILN_ASSIGN_OR_RETURN(config.model_config,
                          ParseJsonBounded(model_config_json, "config.json", limits.max_json_bytes,
                                           limits.max_json_depth));
  }
  return Build(tokenizer_json, &config, limits);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Build(std::string_view tokenizer_json,
                                                            const Config* config,
                                                            const TokenizerLimits& limits) {
  KILN_ASSIGN_OR_RETURN(Json tj, ParseJsonBounded(tokenizer_json, "tokenizer.json",
                                                  limits.max_json_bytes, limits.max_json_depth));
  if (!tj.is_object()) return absl::InvalidArgumentError("tokenizer.json must be a JSON object");
  std::unique_ptr<Tokenizer> tok(new Tokenizer());
  tok->limits_ = limits;
  const Json null_json;
  const Json& tc = config != nullptr ? config->tokenizer_config : null_json;
  if (config != nullptr) {
    const bool byte_level = tokenizer_json.find("\"ByteLevel\"") != std::string_view::npos;
    const HfTokenizerClass cls = ResolveTokenizerClass(tc, config->model_config, byte_level);
    KILN_RETURN_IF_ERROR(ApplyClassPipeline(cls, tc, &tj));
    KILN_ASSIGN_OR_RETURN(tok->split_special_tokens_,
                          GetBool(tc, "split_special_tokens", "tokenizer_config.json", false));
    KILN_ASSIGN_OR_RETURN(const bool clean, GetBool(tc, "clean_up_tokenization_spaces",
                                                    "tokenizer_config.json", false));
    KILN_ASSIGN_OR_RETURN(
        const bool force_bpe,
        GetBool(tc, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output",
                "tokenizer_config.json", false));
    tok->clean_up_spaces_ = clean && force_bpe;  // every kiln model is BPE
  }

  const Json* model = Member(tj, "model");
  if (model == nullptr) return absl::InvalidArgumentError("tokenizer.json has no model");
  std::string model_type = "BPE";
  if (Member(*model, "type") != nullptr) {
    KILN_ASSIGN_OR_RETURN(model_type, GetType(*model, "model"));
  }
  if (model_type != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat("model.type '", model_type, "' is not supported (only BPE)"));
  }
  BpeLimits bpe_limits{limits.max_vocab_size, limits.max_merges, limits.max_token_bytes};
  KILN_ASSIGN_OR_RETURN(tok->model_, BpeModel::FromJson(*model, bpe_limits));

  const Json& normalizer = tj.contains("normalizer") ? tj["normalizer"] : null_json;
  const Json& pre_tokenizer = tj.contains("pre_tokenizer") ? tj["pre_tokenizer"] : null_json;
  const Json& decoder = tj.contains("decoder") ? tj["decoder"] : null_json;
  KILN_ASSIGN_OR_RETURN(tok->normalizer_, NormalizerFromJson(normalizer, "normalizer", limits.regex));
  KILN_ASSIGN_OR_RETURN(tok->pre_tokenizer_,
                        PreTokenizerFromJson(pre_tokenizer, "pre_tokenizer", limits.regex));
  KILN_ASSIGN_OR_RETURN(tok->decoder_, DecoderFromJson(decoder, "decoder", limits.regex));

  KILN_ASSIGN_OR_RETURN(std::vector<AddedToken> added,
                        ParseAddedTokens(tj, limits.max_added_tokens));
  if (config != nullptr) {
    // transformers adds the named special tokens that are not added tokens yet.
    KILN_ASSIGN_OR_RETURN(std::vector<AddedToken> named, NamedSpecialTokens(tc));
    for (AddedToken& t : named) {
      bool present = false;
      for (const AddedToken& a : added) present = present || a.content == t.content;
      if (!present) added.push_back(std::move(t));
    }
  }
  KILN_ASSIGN_OR_RETURN(AddedVocabulary vocabulary,
                        AddedVocabulary::Build(std::move(added), *tok->model_,
                                               tok->normalizer_.get(), limits.max_vocab_size));
  tok->added_ = std::make_unique<AddedVocabulary>(std::move(vocabulary));

  // Sizes: distinct tokens (added tokens that are not model tokens count once).
  tok->id_bound_ = std::max<size_t>(tok->model_->id_bound(),
                                    static_cast<size_t>(tok->added_->max_id() + 1));
  tok->vocab_size_ = tok->model_->size();
  for (size_t id = tok->model_->id_bound(); id < tok->id_bound_; ++id) {
    if (tok->added_->FindById(static_cast<int32_t>(id)) != nullptr) ++tok->vocab_size_;
  }
  for (int32_t id = 0; id < static_cast<int32_t>(tok->model_->id_bound()); ++id) {
    // Added tokens inside the model's id range that fill a gap of the model vocab.
    if (tok->model_->IdToToken(id) == nullptr && tok->added_->FindById(id) != nullptr) {
      ++tok->vocab_size_;
    }
  }

  const Tokenizer* self = tok.get();
  auto token_exists = [self](int64_t id) {
    return id >= 0 && id <= INT32_MAX && self->IdToToken(static_cast<int32_t>(id)).has_value();
  };
  const Json& post = tj.contains("post_processor") ? tj["post_processor"] : null_json;
  KILN_ASSIGN_OR_RETURN(tok->post_processor_,
                        PostProcessorFromJson(post, "post_processor", token_exists));

  if (config != nullptr) {
    auto id_of = [&](const char* key) -> absl::StatusOr<std::optional<int32_t>> {
      KILN_ASSIGN_OR_RETURN(auto content, SpecialTokenContent(tc, key));
      if (!content.has_value()) return std::optional<int32_t>();
      return tok->TokenToId(*content);
    };
    KILN_ASSIGN_OR_RETURN(tok->bos_id_, id_of("bos_token"));
    KILN_ASSIGN_OR_RETURN(auto eos, id_of("eos_token"));
    if (eos.has_value()) tok->eos_ids_.push_back(*eos);
    KILN_ASSIGN_OR_RETURN(tok->pad_id_, id_of("pad_token"));
    KILN_ASSIGN_OR_RETURN(tok->unk_id_, id_of("unk_token"));
  }
  return tok;
}

absl::Status Tokenizer::EncodeText(std::string_view piece, bool at_origin,
                                   std::vector<int32_t>* ids) const {
  std::string normalized(piece);
  if (normalizer_ != nullptr) KILN_RETURN_IF_ERROR(normalizer_->Normalize(&normalized));
  if (normalized.empty()) return absl::OkStatus();
  std::vector<AddedVocabulary::Segment> segments;
  added_->Split(normalized, /*normalized_pass=*/true, split_special_tokens_, &segments);
  std::vector<PreSplit> splits;
  for (const auto& seg : segments) {
    if (seg.id >= 0) {
      ids->push_back(seg.id);
      continue;
    }
    if (seg.begin == seg.end) continue;
    splits.clear();
    splits.push_back({normalized.substr(seg.begin, seg.end - seg.begin), at_origin && seg.begin == 0});
    if (pre_tokenizer_ != nullptr) KILN_RETURN_IF_ERROR(pre_tokenizer_->PreTokenize(&splits));
    for (const PreSplit& s : splits) KILN_RETURN_IF_ERROR(model_->Tokenize(s.text, ids));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens) const {
  if (text.size() > limits_.max_input_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("text to encode is ", text.size(),
                                                   " bytes, over the limit of ",
                                                   limits_.max_input_bytes));
  }
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text to encode is not valid UTF-8");
  std::vector<int32_t> ids;
  std::vector<AddedVocabulary::Segment> segments;
  added_->Split(text, /*normalized_pass=*/false, split_special_tokens_, &segments);
  for (const auto& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
    } else if (seg.begin != seg.end) {
      KILN_RETURN_IF_ERROR(
          EncodeText(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, &ids));
    }
  }
  if (add_special_tokens && post_processor_ != nullptr) post_processor_->Process(&ids);
  return ids;
}

void Tokenizer::AppendTokens(absl::Span<const int32_t> ids, bool skip_special_tokens,
                             std::vector<std::string>* tokens) const {
  for (const int32_t id : ids) {
    if (const AddedToken* t = added_->FindById(id); t != nullptr) {
      if (skip_special_tokens && t->special) continue;
      tokens->push_back(t->content);
      continue;
    }
    const std::string* token = model_->IdToToken(id);
    if (token == nullptr) continue;  // tokenizers drops ids it does not know
    if (skip_special_tokens && added_->IsSpecialContent(*token)) continue;
    tokens->push_back(*token);
  }
}

absl::StatusOr<std::string> Tokenizer::DecodeTokens(std::vector<std::string> tokens) const {
  std::string text;
  if (decoder_ != nullptr) {
    KILN_RETURN_IF_ERROR(decoder_->DecodeChain(&tokens));
    for (const std::string& t : tokens) text += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) text.push_back(' ');
      text += tokens[i];
    }
  }
  if (clean_up_spaces_) text = CleanUpTokenizationSpaces(std::move(text));
  return text;
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  AppendTokens(ids, skip_special_tokens, &tokens);
  return DecodeTokens(std::move(tokens));
}

bool Tokenizer::decoder_has_byte_fallback() const {
  return decoder_ != nullptr && decoder_->HasByteFallback();
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* t = added_->FindById(id); t != nullptr) return t->content;
  if (const std::string* token = model_->IdToToken(id); token != nullptr) return *token;
  return std::nullopt;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (auto id = added_->TokenToId(token); id.has_value()) return id;
  return model_->TokenToId(token);
}

size_t Tokenizer::vocab_size() const { return vocab_size_; }
size_t Tokenizer::id_bound() const { return id_bound_; }

bool Tokenizer::IsSpecial(int32_t id) const {
  if (const AddedToken* t = added_->FindById(id); t != nullptr) return t->special;
  return false;
}

}  // namespace kiln::tokenizer
