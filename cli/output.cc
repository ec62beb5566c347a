#include "cli/output.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <sstream>
#include <vector>

#include <google/protobuf/util/json_util.h>

namespace kiln::cli {
namespace {

// A plain left-aligned text table; the last column is not padded.
std::string RenderTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += "\n";
  }
  return out;
}

std::string DTypeName(kiln::v1::DType dtype) {
  return ShortEnumName(kiln::v1::DType_Name(dtype), "DTYPE_");
}

std::string DeviceSummary(const kiln::v1::ModelInfo& m) {
  std::vector<std::string> devices;
  for (const auto& [module, device] : m.device_map()) {
    if (std::find(devices.begin(), devices.end(), device) == devices.end()) {
      devices.push_back(device);
    }
  }
  std::sort(devices.begin(), devices.end());
  std::string out;
  for (const std::string& d : devices) out += (out.empty() ? "" : ",") + d;
  return out.empty() ? "-" : out;
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::DO_NOT_USE: break;
  }
  return "CODE_" + std::to_string(static_cast<int>(code));
}

int ExitCodeFor(grpc::StatusCode code) {
  const int n = static_cast<int>(code);
  // Anything outside 0..16 would collide with the usage code or wrap in the shell's 8 bits.
  return n >= 0 && n <= 16 ? n : static_cast<int>(grpc::StatusCode::UNKNOWN);
}

std::string FormatError(const grpc::Status& status) {
  return "error: " + StatusCodeName(status.error_code()) + ": " + status.error_message();
}

std::string ToJsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) {
    // Only reachable for messages with Any fields of unknown types; kiln.v1 has none.
    return "{}";
  }
  return out;
}

std::string FormatBytes(int64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024 && bytes > -1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  int unit = 0;
  while ((value >= 1024.0 || value <= -1024.0) && unit < 5) {
    value /= 1024.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", value, kUnits[unit]);
  return buf;
}

std::string ShortEnumName(const std::string& full_name, const std::string& prefix) {
  std::string name = full_name.compare(0, prefix.size(), prefix) == 0
                         ? full_name.substr(prefix.size())
                         : full_name;
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string FormatModelTable(const kiln::v1::ListModelsResponse& models) {
  if (models.models().empty()) return "no models\n";
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "ARCHITECTURE", "DTYPE", "QUANT", "WEIGHTS", "DEVICES", "MODEL"}};
  for (const kiln::v1::ModelInfo& m : models.models()) {
    rows.push_back({m.served_name(),
                    ShortEnumName(kiln::v1::ModelState_Name(m.state()), "MODEL_STATE_"),
                    OrDash(m.architecture()), DTypeName(m.dtype()), OrDash(m.quantization()),
                    FormatBytes(m.weight_bytes()), DeviceSummary(m), m.model()});
  }
  return RenderTable(rows);
}

std::string FormatModelInfo(const kiln::v1::ModelInfo& m) {
  std::ostringstream out;
  out << "name:          " << m.served_name() << "\n"
      << "model:         " << m.model() << (m.revision().empty() ? "" : "@" + m.revision())
      << "\n"
      << "state:         " << ShortEnumName(kiln::v1::ModelState_Name(m.state()), "MODEL_STATE_")
      << (m.error().empty() ? "" : " (" + m.error() + ")") << "\n"
      << "architecture:  " << OrDash(m.architecture()) << "\n"
      << "dtype:         " << DTypeName(m.dtype()) << "\n"
      << "quantization:  " << OrDash(m.quantization()) << "\n"
      << "parameters:    " << m.num_parameters() << "\n"
      << "weights:       " << FormatBytes(m.weight_bytes()) << "\n"
      << "devices:       " << DeviceSummary(m) << "\n"
      << "max_seq_len:   " << m.max_seq_len() << "\n"
      << "kv cache:      " << FormatBytes(m.kv_cache_bytes()) << " (" << m.kv_num_blocks()
      << " blocks of " << m.kv_block_size_tokens() << " tokens)\n"
      << "pinned:        " << (m.pinned() ? "yes" : "no") << "\n"
      << "load time:     " << m.load_duration_ms() << " ms\n";
  return out.str();
}

std::string FormatAdapterTable(const kiln::v1::ListAdaptersResponse& adapters) {
  if (adapters.adapters().empty()) return "no adapters\n";
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "MODEL", "STATE", "RANK", "BYTES", "ACTIVE", "ADAPTER"}};
  for (const kiln::v1::AdapterInfo& a : adapters.adapters()) {
    rows.push_back({a.served_name(), a.model(),
                    ShortEnumName(kiln::v1::AdapterState_Name(a.state()), "ADAPTER_STATE_"),
                    std::to_string(a.rank()), FormatBytes(a.bytes()),
                    std::to_string(a.active_requests()), a.adapter()});
  }
  return RenderTable(rows);
}

std::string FormatAdapterInfo(const kiln::v1::AdapterInfo& a) {
  kiln::v1::ListAdaptersResponse one;
  *one.add_adapters() = a;
  return FormatAdapterTable(one);
}

std::string FormatServerInfo(const kiln::v1::ServerInfo& info) {
  std::ostringstream out;
  out << "version:       " << info.version() << " (" << OrDash(info.git_commit()) << ", "
      << OrDash(info.build_type()) << ")\n"
      << "cuda built:    " << (info.cuda_built() ? "yes" : "no") << "\n"
      << "uptime:        " << info.uptime_ms() / 1000 << " s\n"
      << "draining:      " << (info.draining() ? "yes" : "no") << "\n";
  std::string archs;
  for (const std::string& a : info.architectures()) archs += (archs.empty() ? "" : ", ") + a;
  out << "architectures: " << OrDash(archs) << "\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"DEVICE", "TOTAL", "FREE", "BUDGET", "WEIGHTS", "KV", "ADAPTERS", "DESCRIPTION"}};
  for (const kiln::v1::DeviceInfo& d : info.devices()) {
    rows.push_back({d.name(), FormatBytes(d.total_bytes()), FormatBytes(d.free_bytes()),
                    FormatBytes(d.budget_bytes()), FormatBytes(d.weight_bytes()),
                    FormatBytes(d.kv_cache_bytes()), FormatBytes(d.adapter_bytes()),
                    OrDash(d.description())});
  }
  out << RenderTable(rows);
  const kiln::v1::Limits& l = info.limits();
  out << "\nlimits: max_prompt_tokens=" << l.max_prompt_tokens()
      << " max_new_tokens=" << l.max_new_tokens() << " max_total_tokens=" << l.max_total_tokens()
      << " max_logprobs=" << l.max_logprobs()
      << " max_concurrent_streams=" << l.max_concurrent_streams()
      << " max_loaded_models=" << l.max_loaded_models() << "\n";
  return out.str();
}

std::string FormatTokenize(const kiln::v1::TokenizeResponse& response) {
  std::string out;
  for (int i = 0; i < response.token_ids_size(); ++i) {
    if (response.tokens_size() == response.token_ids_size()) {
      out += std::to_string(response.token_ids(i)) + "\t" + response.tokens(i) + "\n";
    } else {
      out += (i ? " " : "") + std::to_string(response.token_ids(i));
    }
  }
  if (response.tokens_size() != response.token_ids_size()) out += "\n";
  return out;
}

std::string FormatGenerateSummary(const kiln::v1::GenerateResponse& last) {
  std::ostringstream out;
  out << "[finish=" << ShortEnumName(kiln::v1::FinishReason_Name(last.finish_reason()),
                                     "FINISH_REASON_");
  if (!last.matched_stop().empty()) out << " stop=\"" << last.matched_stop() << "\"";
  out << " prompt_tokens=" << last.usage().prompt_tokens()
      << " completion_tokens=" << last.usage().completion_tokens()
      << " cached_prompt_tokens=" << last.usage().cached_prompt_tokens()
      << " ttft_ms=" << last.timing().time_to_first_token_ms()
      << " total_ms=" << last.timing().total_ms() << "]";
  return out.str();
}

}  // namespace kiln::cli
