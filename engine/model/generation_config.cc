#include "engine/model/generation_config.h"

#include "engine/common/status_macros.h"
#include "engine/io/path_util.h"
#include "engine/io/str_cat.h"

namespace kiln::engine {
namespace {

using nlohmann::json;

absl::StatusOr<std::optional<int64_t>> FirstId(const JsonFields& f, std::string_view key) {
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> ids, f.IntOrIntList(key));
  if (ids.empty()) return std::optional<int64_t>();
  if (ids.front() < 0) return f.Invalid(key, "token ids must be non-negative");
  return std::optional<int64_t>(ids.front());
}

absl::Status InRange(const JsonFields& f, std::string_view key, const std::optional<double>& v,
                     double lo, double hi, bool lo_open) {
  if (!v.has_value()) return absl::OkStatus();
  if ((lo_open ? !(*v > lo) : !(*v >= lo)) || *v > hi) {
    return f.Invalid(key, io_internal::Cat("must be in ", lo_open ? "(" : "[", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerationConfig> FromJson(const json& j, std::string_view file) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(io_internal::Cat(file, ": expected a JSON object"));
  }
  const JsonFields f(j, file);
  GenerationConfig g;
  KILN_ASSIGN_OR_RETURN(g.eos_token_ids, f.IntOrIntList("eos_token_id"));
  for (int64_t id : g.eos_token_ids) {
    if (id < 0) return f.Invalid("eos_token_id", "token ids must be non-negative");
  }
  KILN_ASSIGN_OR_RETURN(g.bos_token_id, FirstId(f, "bos_token_id"));
  KILN_ASSIGN_OR_RETURN(g.pad_token_id, FirstId(f, "pad_token_id"));
  KILN_ASSIGN_OR_RETURN(g.do_sample, f.OptionalBool("do_sample"));
  KILN_ASSIGN_OR_RETURN(g.temperature, f.OptionalNumber("temperature"));
  KILN_RETURN_IF_ERROR(InRange(f, "temperature", g.temperature, 0, 1e9, false));
  KILN_ASSIGN_OR_RETURN(g.top_k, f.OptionalInt("top_k"));
  if (g.top_k.has_value() && *g.top_k < 0) return f.Invalid("top_k", "must be >= 0");
  KILN_ASSIGN_OR_RETURN(g.top_p, f.OptionalNumber("top_p"));
  KILN_RETURN_IF_ERROR(InRange(f, "top_p", g.top_p, 0, 1, false));
  KILN_ASSIGN_OR_RETURN(g.min_p, f.OptionalNumber("min_p"));
  KILN_RETURN_IF_ERROR(InRange(f, "min_p", g.min_p, 0, 1, false));
  KILN_ASSIGN_OR_RETURN(g.repetition_penalty, f.OptionalNumber("repetition_penalty"));
  KILN_RETURN_IF_ERROR(InRange(f, "repetition_penalty", g.repetition_penalty, 0, 1e9, true));
  KILN_ASSIGN_OR_RETURN(g.max_new_tokens, f.OptionalPositiveInt("max_new_tokens"));
  KILN_ASSIGN_OR_RETURN(g.max_length, f.OptionalPositiveInt("max_length"));
  return g;
}

}  // namespace

absl::StatusOr<GenerationConfig> ParseGenerationConfig(std::string_view json_text,
                                                       std::string_view display_name,
                                                       const JsonLimits& limits) {
  KILN_ASSIGN_OR_RETURN(json j, ParseJson(json_text, display_name, limits));
  return FromJson(j, display_name);
}

absl::StatusOr<std::optional<GenerationConfig>> LoadGenerationConfig(
    const std::string& model_dir, const std::string& containment_root, const JsonLimits& limits) {
  constexpr std::string_view kName = "generation_config.json";
  absl::StatusOr<std::string> dir = RealPath(model_dir);
  if (!dir.ok()) return absl::NotFoundError("model directory not found");
  const std::string root = containment_root.empty() ? ContainmentRootFor(*dir) : containment_root;
  absl::StatusOr<std::string> path = ResolveFileInside(*dir, kName, root, "generation config");
  if (!path.ok()) {
    if (absl::IsNotFound(path.status())) return std::optional<GenerationConfig>();
    return path.status();
  }
  KILN_ASSIGN_OR_RETURN(json j, ReadJsonFile(*path, kName, limits));
  KILN_ASSIGN_OR_RETURN(GenerationConfig g, FromJson(j, kName));
  return std::optional<GenerationConfig>(std::move(g));
}

}  // namespace kiln::engine
