#include "engine/tokenizer/post_processor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace kiln::tokenizer {
namespace {

// A template is a list of items: a run of special-token ids, or the input sequence (-1 marker).
class TemplateProcessor : public PostProcessor {
 public:
  explicit TemplateProcessor(std::vector<std::vector<int32_t>> items) : items_(std::move(items)) {}
  void Process(std::vector<int32_t>* ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids->size() + 4);
    for (const auto& item : items_) {
      if (item.empty()) {
        out.insert(out.end(), ids->begin(), ids->end());
      } else {
        out.insert(out.end(), item.begin(), item.end());
      }
    }
    *ids = std::move(out);
  }

 private:
  std::vector<std::vector<int32_t>> items_;  // empty item = the sequence
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> parts)
      : parts_(std::move(parts)) {}
  void Process(std::vector<int32_t>* ids) const override {
    for (const auto& p : parts_) p->Process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

absl::StatusOr<int32_t> CheckedId(const Json& v, absl::string_view path,
                                  const std::function<bool(int64_t)>& token_exists) {
  if (!v.is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " must be an integer token id"));
  }
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id > INT32_MAX || !token_exists(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is ", id, ", which is not a token of this tokenizer"));
  }
  return static_cast<int32_t>(id);
}

absl::StatusOr<std::unique_ptr<PostProcessor>> TemplateFromJson(
    const Json& j, const std::string& path, const std::function<bool(int64_t)>& token_exists) {
  const Json* single = Member(j, "single");
  if (single == nullptr || !single->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".single must be an array"));
  }
  const Json* specials = Member(j, "special_tokens");
  std::vector<std::vector<int32_t>> items;
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& item = (*single)[i];
    const std::string ipath = absl::StrCat(path, ".single[", i, "]");
    if (Member(item, "Sequence") != nullptr) {
      items.emplace_back();
      continue;
    }
    const Json* sp = Member(item, "SpecialToken");
    if (sp == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(ipath, " must be Sequence or SpecialToken"));
    }
    KILN_ASSIGN_OR_RETURN(const std::string name, GetString(*sp, "id", ipath, ""));
    const Json* entry = specials == nullptr ? nullptr : Member(*specials, name);
    const Json* ids = entry == nullptr ? nullptr : Member(*entry, "ids");
    if (ids == nullptr || !ids->is_array() || ids->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(ipath, ": special token '", name, "' has no ids in special_tokens"));
    }
    std::vector<int32_t> run;
    for (size_t k = 0; k < ids->size(); ++k) {
      KILN_ASSIGN_OR_RETURN(
          const int32_t id,
          CheckedId((*ids)[k], absl::StrCat(path, ".special_tokens['", name, "'].ids[", k, "]"),
                    token_exists));
      run.push_back(id);
    }
    items.push_back(std::move(run));
  }
  return std::make_unique<TemplateProcessor>(std::move(items));
}

// BertProcessing / RobertaProcessing: "cls": [token, id], "sep": [token, id] -> cls $A sep.
absl::StatusOr<std::unique_ptr<PostProcessor>> ClsSepFromJson(
    const Json& j, const std::string& path, const std::function<bool(int64_t)>& token_exists) {
  std::vector<std::vector<int32_t>> items;
  for (const char* key : {"cls", "sep"}) {
    const Json* pair = Member(j, key);
    if (pair == nullptr || !pair->is_array() || pair->size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".", key, " must be [token, id]"));
    }
    KILN_ASSIGN_OR_RETURN(const int32_t id,
                          CheckedId((*pair)[1], absl::StrCat(path, ".", key, "[1]"), token_exists));
    if (items.size() == 1) items.emplace_back();  // the sequence sits between cls and sep
    items.push_back({id});
  }
  return std::make_unique<TemplateProcessor>(std::move(items));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> PostProcessorFromJson(
    const Json& j, std::string path, const std::function<bool(int64_t)>& token_exists) {
  if (j.is_null()) return std::unique_ptr<PostProcessor>();
  KILN_ASSIGN_OR_RETURN(const std::string type, GetType(j, path));
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>();
  if (type == "TemplateProcessing") return TemplateFromJson(j, path, token_exists);
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    return ClsSepFromJson(j, path, token_exists);
  }
  if (type == "Sequence") {
    const Json* list = Member(j, "processors");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".processors must be an array"));
    }
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      KILN_ASSIGN_OR_RETURN(auto part,
                            PostProcessorFromJson((*list)[i],
                                                  absl::StrCat(path, ".processors[", i, "]"),
                                                  token_exists));
      if (part != nullptr) parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceProcessor>(std::move(parts));
  }
  return absl::UnimplementedError(
      absl::StrCat(path, ": post_processor type '", type, "' is not supported"));
}

}  // namespace kiln::tokenizer
