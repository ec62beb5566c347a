#include "engine/runtime/request.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace kiln::engine {
namespace {

absl::StatusOr<std::vector<int32_t>> PromptIds(const GenerateRequest& request,
                                               const RequestContext& context) {
  const EngineLimits& limits = *context.limits;
  if (request.prompt_text.has_value() == request.prompt_token_ids.has_value()) {
    return absl::InvalidArgumentError("prompt: exactly one of text or token_ids must be set");
  }
  std::vector<int32_t> ids;
  if (request.prompt_text.has_value()) {
    const std::string& text = *request.prompt_text;
    // Checked before tokenizing, so an oversized prompt costs nothing.
    if (static_cast<int64_t>(text.size()) > limits.max_prompt_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("prompt.text: ", text.size(),
                                                     " bytes exceeds max_prompt_bytes ",
                                                     limits.max_prompt_bytes));
    }
    if (text.empty()) return absl::InvalidArgumentError("prompt.text: must not be empty");
    KILN_ASSIGN_OR_RETURN(ids, context.tokenizer->Encode(text, /*add_special_tokens=*/true));
  } else {
    ids = *request.prompt_token_ids;
    if (static_cast<int64_t>(ids.size()) > limits.max_prompt_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("prompt.token_ids: ", ids.size(),
                                                     " tokens exceeds max_prompt_tokens ",
                                                     limits.max_prompt_tokens));
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= context.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("prompt.token_ids[", i, "]: ", ids[i],
                                                       " is outside the vocabulary [0, ",
                                                       context.vocab_size, ")"));
      }
    }
  }
  if (ids.empty()) return absl::InvalidArgumentError("prompt: tokenizes to no tokens");
  if (static_cast<int64_t>(ids.size()) > limits.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("prompt: ", ids.size(),
                                                   " tokens exceeds max_prompt_tokens ",
                                                   limits.max_prompt_tokens));
  }
  return ids;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Request>> BuildRequest(GenerateRequest request,
                                                      const RequestContext& context) {
  const EngineLimits& limits = *context.limits;
  KILN_ASSIGN_OR_RETURN(sample::ResolvedSampling sampling,
                        sample::ResolveSampling(request.sampling, *context.generation_defaults,
                                                context.vocab_size));
  KILN_ASSIGN_OR_RETURN(sample::ResolvedStopping stopping,
                        sample::ResolveStopping(request.stopping, limits, context.vocab_size,
                                                context.eos_token_ids));
  KILN_ASSIGN_OR_RETURN(sample::LogprobOptions logprobs,
                        sample::ResolveLogprobs(request.top_logprobs,
                                                request.return_token_logprob, limits));
  KILN_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, PromptIds(request, context));

  const int64_t total = static_cast<int64_t>(prompt.size()) + stopping.max_new_tokens;
  if (total > limits.max_total_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt tokens + max_new_tokens: ", prompt.size(), " + ", stopping.max_new_tokens,
        " = ", total, " exceeds max_total_tokens ", limits.max_total_tokens));
  }
  if (total > context.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt tokens + max_new_tokens: ", prompt.size(), " + ", stopping.max_new_tokens,
        " = ", total, " exceeds the model's max_seq_len ", context.max_seq_len));
  }

  auto r = std::make_unique<Request>();
  r->id = std::move(request.request_id);
  r->max_new_tokens = stopping.max_new_tokens;
  r->want_logprobs = logprobs.any();
  r->deadline = request.deadline;
  r->sampler.emplace(sampling, stopping, logprobs, context.vocab_size, prompt);
  r->stop_checker.emplace(std::move(stopping));
  r->detokenizer.emplace(context.tokenizer, request.skip_special_tokens);
  r->adapter = std::move(request.adapter);
  r->cache_salt = std::move(request.cache_salt);
  r->tokens = prompt;
  r->prompt_ids = std::move(prompt);
  r->submitted_at = absl::Now();
  return r;
}

}  // namespace kiln::engine
