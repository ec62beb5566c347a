#include "engine/tokenizer/streaming_detokenizer.h"

#include <utility>

#include "engine/common/status_macros.h"
#include "engine/tokenizer/decoder.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer* tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer),
      skip_special_tokens_(skip_special_tokens),
      byte_fallback_(tokenizer->decoder_has_byte_fallback()) {}

bool StreamingDetokenizer::IsByteToken(const std::string& token) const {
  return byte_fallback_ && ParseByteToken(token).has_value();
}

absl::StatusOr<std::string> StreamingDetokenizer::DecodeRange(size_t begin, size_t end) const {
  return tokenizer_->DecodeTokens(
      std::vector<std::string>(tokens_.begin() + begin, tokens_.begin() + end));
}

absl::StatusOr<std::string> StreamingDetokenizer::EmitUpTo(size_t end, bool force) {
  KILN_ASSIGN_OR_RETURN(std::string text, DecodeRange(prefix_offset_, end));
  const bool extends = text.size() > prefix_text_.size() &&
                       text.compare(0, prefix_text_.size(), prefix_text_) == 0;
  const bool unfinished = text.size() >= kReplacementChar.size() &&
                          text.compare(text.size() - kReplacementChar.size(),
                                       kReplacementChar.size(), kReplacementChar) == 0;
  // Past the hold limit, tokens that added no text are let go too, to keep the window bounded.
  const bool stalled = force && text == prefix_text_;
  if (!stalled && (!extends || (unfinished && !force))) return std::string();
  std::string delta = stalled ? std::string() : text.substr(prefix_text_.size());
  // The window now starts at the old read offset; drop tokens before it so memory and work stay
  // proportional to the window.
  const size_t new_prefix = read_offset_;
  KILN_ASSIGN_OR_RETURN(prefix_text_, DecodeRange(new_prefix, end));
  tokens_.erase(tokens_.begin(), tokens_.begin() + new_prefix);
  prefix_offset_ = 0;
  read_offset_ = end - new_prefix;
  return delta;
}

absl::StatusOr<std::string> StreamingDetokenizer::Push(int32_t id) {
  const size_t before = tokens_.size();
  tokenizer_->AppendTokens({&id, 1}, skip_special_tokens_, &tokens_);
  if (tokens_.size() == before) return std::string();  // skipped or unknown id: no text
  // A byte-fallback run decodes all-or-nothing: wait until it is closed by another token.
  if (IsByteToken(tokens_.back()) && tokens_.size() - read_offset_ < kMaxHeldTokens) {
    return std::string();
  }
  const bool force = tokens_.size() - read_offset_ >= kMaxHeldTokens;
  return EmitUpTo(tokens_.size(), force);
}

absl::StatusOr<std::string> StreamingDetokenizer::Flush() {
  if (read_offset_ == tokens_.size()) return std::string();
  return EmitUpTo(tokens_.size(), /*force=*/true);
}

}  // namespace kiln::tokenizer
