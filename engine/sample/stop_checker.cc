#include "engine/sample/stop_checker.h"

#include <algorithm>
#include <utility>

#include "engine/sample/utf8.h"

namespace kiln::engine::sample {
namespace {

// The length of the longest proper prefix of `stop` that `text` ends with.
size_t HeldSuffixLength(std::string_view text, std::string_view stop) {
  const size_t longest = std::min(text.size(), stop.size() - 1);
  for (size_t k = longest; k > 0; --k) {
    if (text[text.size() - k] == stop[0] && text.substr(text.size() - k) == stop.substr(0, k)) {
      return k;
    }
  }
  return 0;
}

}  // namespace

StopChecker::StopChecker(ResolvedStopping stopping) : stopping_(std::move(stopping)) {
  for (const std::string& s : stopping_.stop) max_stop_bytes_ = std::max(max_stop_bytes_, s.size());
}

bool StopChecker::IsEos(int32_t token_id) const {
  return std::binary_search(stopping_.eos_token_ids.begin(), stopping_.eos_token_ids.end(),
                            token_id);
}

bool StopChecker::IsStopToken(int32_t token_id) const {
  return std::binary_search(stopping_.stop_token_ids.begin(), stopping_.stop_token_ids.end(),
                            token_id);
}

void StopChecker::Release(std::string* out) {
  size_t hold = 0;
  for (const std::string& s : stopping_.stop) {
    hold = std::max(hold, HeldSuffixLength(pending_, s));
  }
  const std::string_view candidate = std::string_view(pending_).substr(0, pending_.size() - hold);
  const size_t emit = CompleteUtf8PrefixLength(candidate);
  AppendSanitizedUtf8(candidate.substr(0, emit), out);
  pending_.erase(0, emit);
}

std::string StopChecker::Flush() {
  std::string out;
  AppendSanitizedUtf8(pending_, &out);
  pending_.clear();
  return out;
}

bool StopChecker::StopsOn(int32_t token_id) const {
  return !finish_.has_value() && num_generated_ + 1 > stopping_.min_new_tokens &&
         (IsEos(token_id) || IsStopToken(token_id));
}

StopUpdate StopChecker::Append(int32_t token_id, std::string_view text_delta) {
  StopUpdate update;
  if (finish_.has_value()) {
    update.finish = finish_;
    return update;
  }
  ++num_generated_;
  const bool may_stop = num_generated_ > stopping_.min_new_tokens;

  if (may_stop && (IsEos(token_id) || IsStopToken(token_id))) {
    // eos wins when an id is both: the model ended, the request did not have to stop it.
    if (IsEos(token_id)) {
      finish_ = FinishReason::kEos;
    } else {
      finish_ = FinishReason::kStop;
      update.matched_stop_token_id = token_id;
    }
    update.finish = finish_;
    pending_.append(text_delta);  // what the detokenizer held for earlier tokens
    update.text = Flush();
    return update;
  }

  pending_.append(text_delta);
  if (!may_stop || stopping_.stop.empty()) {
    // No stop string can match yet: only incomplete characters are held.
    const size_t emit = CompleteUtf8PrefixLength(pending_);
    AppendSanitizedUtf8(std::string_view(pending_).substr(0, emit), &update.text);
    pending_.erase(0, emit);
  } else {
    // Earlier text held no complete match, so any match ends inside the new delta; the first
    // occurrence of each stop string is its earliest-ending one.
    size_t best_start = std::string::npos;
    size_t best_end = std::string::npos;
    const std::string* best = nullptr;
    for (const std::string& s : stopping_.stop) {
      const size_t pos = pending_.find(s);
      if (pos == std::string::npos) continue;
      const size_t end = pos + s.size();
      if (best == nullptr || end < best_end || (end == best_end && pos < best_start)) {
        best = &s;
        best_start = pos;
        best_end = end;
      }
    }
    if (best != nullptr) {
      AppendSanitizedUtf8(std::string_view(pending_).substr(0, best_start), &update.text);
      pending_.clear();
      finish_ = FinishReason::kStop;
      update.finish = finish_;
      update.matched_stop = *best;
      return update;
    }
    Release(&update.text);
  }

  if (num_generated_ >= stopping_.max_new_tokens) {
    update.text += Flush();
    finish_ = FinishReason::kLength;
    update.finish = finish_;
  }
  return update;
}

}  // namespace kiln::engine::sample
