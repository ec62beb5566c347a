#include "engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/unicode.h"

namespace kiln::tokenizer {
namespace {

// One JIT stack per thread, grown up to 8 MiB: the default 32 KiB machine-stack area is too
// small for long inputs on patterns with alternations, and a shared stack is not thread-safe.
class ThreadJitStack {
 public:
  ThreadJitStack() : stack_(pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr)) {}
  ~ThreadJitStack() {
    if (stack_ != nullptr) pcre2_jit_stack_free(stack_);
  }
  pcre2_jit_stack* get() const { return stack_; }

 private:
  pcre2_jit_stack* stack_;
};

pcre2_jit_stack* JitStackForThisThread() {
  thread_local ThreadJitStack stack;
  return stack.get();
}

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return std::string(reinterpret_cast<const char*>(buf));
}

// Oniguruma's (and Rust's) \s is the White_Space property; PCRE2's UCP \s also matches U+180E
// (MONGOLIAN VOWEL SEPARATOR, no longer a space since Unicode 6.3). Spell \s out so both agree.
// \S inside a character class is left alone (no flat spelling exists; no real pattern uses it).
std::string TranslatePattern(std::string_view pattern) {
  constexpr std::string_view kSpaces = "\\x{9}-\\x{d}\\x{85}\\p{Z}";
  std::string out;
  out.reserve(pattern.size() + 16);
  bool in_class = false;
  size_t class_start = 0;  // index in `pattern` just after '[' or '[^'
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      if (e == 's') {
        out += in_class ? std::string(kSpaces) : "[" + std::string(kSpaces) + "]";
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(kSpaces) + "]";
      } else {
        out.push_back(c);
        out.push_back(e);
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = i + 1;
      if (class_start < pattern.size() && pattern[class_start] == '^') ++class_start;
    } else if (in_class && c == ']' && i != class_start) {
      in_class = false;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

struct Regex::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;
  bool jit = false;
  ~Impl() {
    if (context != nullptr) pcre2_match_context_free(context);
    if (code != nullptr) pcre2_code_free(code);
  }
};

Regex::~Regex() = default;

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(std::string_view pattern, std::string owner,
                                                      RegexLimits limits) {
  if (!IsValidUtf8(pattern)) {
    return absl::InvalidArgumentError(absl::StrCat(owner, ": regex pattern is not valid UTF-8"));
  }
  std::unique_ptr<Regex> re(new Regex());
  re->impl_ = std::make_unique<Impl>();
  re->pattern_ = std::string(pattern);
  re->owner_ = std::move(owner);
  int error = 0;
  PCRE2_SIZE offset = 0;
  const std::string translated = TranslatePattern(pattern);
  re->impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                  PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (re->impl_->code == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(re->owner_, ": regex '", ToAbsl(pattern),
                                                   "' does not compile at offset ", offset, ": ",
                                                   Pcre2Message(error)));
  }
  re->impl_->jit = pcre2_jit_compile(re->impl_->code, PCRE2_JIT_COMPLETE) == 0;
  re->impl_->context = pcre2_match_context_create(nullptr);
  if (re->impl_->context == nullptr) return absl::ResourceExhaustedError("pcre2 context");
  pcre2_set_match_limit(re->impl_->context, limits.match_limit);
  pcre2_set_depth_limit(re->impl_->context, limits.depth_limit);
  return re;
}

absl::Status Regex::FindAll(std::string_view text,
                            std::vector<std::pair<size_t, size_t>>* out) const {
  // A per-call copy of the match context: the JIT stack assignment is per thread.
  pcre2_match_context* ctx = pcre2_match_context_copy(impl_->context);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  if (md == nullptr || ctx == nullptr) {
    if (md != nullptr) pcre2_match_data_free(md);
    if (ctx != nullptr) pcre2_match_context_free(ctx);
    return absl::ResourceExhaustedError("pcre2 match data");
  }
  if (impl_->jit) pcre2_jit_stack_assign(ctx, nullptr, JitStackForThisThread());
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  bool have_last = false;
  size_t last_end = 0;
  absl::Status status;
  while (start <= text.size()) {
    const int rc = pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      const bool limit = rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
                         rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT;
      status = absl::InvalidArgumentError(absl::StrCat(
          owner_, ": regex '", pattern_, "' ",
          limit ? "exceeded its matching budget" : "failed", " on a ", text.size(),
          "-byte input (", Pcre2Message(rc), ")"));
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t s = ov[0];
    const size_t e = ov[1];
    if (s == e && have_last && last_end == e) {
      // Empty match right after the previous one: step one character and search again.
      if (start >= text.size()) break;
      start += std::min(Utf8SequenceLength(static_cast<unsigned char>(text[start])),
                        text.size() - start);
      continue;
    }
    out->emplace_back(s, e);
    have_last = true;
    last_end = e;
    start = e;
  }
  pcre2_match_data_free(md);
  pcre2_match_context_free(ctx);
  return status;
}

}  // namespace kiln::tokenizer
