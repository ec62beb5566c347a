#include "bench/soak/server_state.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "tests/integration/grpc_clients.h"

namespace kiln::bench::soak {
namespace {

double Gauge(const kiln::testing::PromExposition& m, const std::string& name, const std::string& model) {
  if (kiln::testing::CountSamples(m, name, {{"model", model}}) == 0) return -1;
  return kiln::testing::SumSamples(m, name, {{"model", model}});
}

}  // namespace

absl::StatusOr<ServerState> ReadServerState(kiln::v1::Kiln::Stub* stub, int metrics_port,
                                            const std::vector<std::string>& models) {
  ServerState s;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    kiln::v1::ServerInfo info;
    grpc::Status st = stub->GetServerInfo(&ctx, {}, &info);
    if (!st.ok()) return absl::UnavailableError("GetServerInfo: " + st.error_message());
    for (const kiln::v1::DeviceInfo& d : info.devices()) {
      s.devices[d.name()] = {d.weight_bytes(), d.kv_cache_bytes(), d.adapter_bytes(), d.workspace_bytes()};
    }
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    kiln::v1::ListModelsResponse resp;
    grpc::Status st = stub->ListModels(&ctx, {}, &resp);
    if (!st.ok()) return absl::UnavailableError("ListModels: " + st.error_message());
    for (const kiln::v1::ModelInfo& m : resp.models()) {
      s.model_state[m.served_name()] = kiln::v1::ModelState_Name(m.state());
      s.kv_num_blocks[m.served_name()] = m.kv_num_blocks();
    }
  }
  if (metrics_port > 0) {
    absl::StatusOr<kiln::testing::PromExposition> m = kiln::testing::ScrapeMetrics(metrics_port);
    if (!m.ok()) return m.status();
    s.rpc_in_flight = kiln::testing::SumSamples(*m, "kiln_rpc_in_flight");
    for (const kiln::testing::PromSample& sample : m->samples) {
      if (sample.name != "kiln_rpc_requests_total") continue;
      auto method = sample.labels.find("method");
      auto code = sample.labels.find("code");
      if (method == sample.labels.end() || code == sample.labels.end()) continue;
      s.rpc_codes[method->second + " " + code->second] += sample.value;
    }
    for (const std::string& model : models) {
      s.gauges[model] = {Gauge(*m, "kiln_requests_running", model), Gauge(*m, "kiln_requests_waiting", model),
                         Gauge(*m, "kiln_kv_blocks_free", model), Gauge(*m, "kiln_kv_blocks_total", model)};
    }
  }
  return s;
}

std::vector<std::string> NotIdleReasons(const ServerState& s) {
  std::vector<std::string> out;
  for (const auto& [model, g] : s.gauges) {
    if (g.running != 0 || g.waiting != 0) {
      out.push_back(absl::StrCat(model, ": ", g.running, " running / ", g.waiting, " waiting requests"));
    }
    if (g.kv_total <= 0 || g.kv_free != g.kv_total) {
      out.push_back(absl::StrCat(model, ": KV blocks free ", g.kv_free, " of ", g.kv_total));
    }
  }
  if (s.rpc_in_flight > 0) out.push_back(absl::StrCat("kiln_rpc_in_flight = ", s.rpc_in_flight));
  for (const auto& [model, state] : s.model_state) {
    if (state != "MODEL_STATE_READY") out.push_back(absl::StrCat(model, ": ", state));
  }
  return out;
}

std::vector<std::string> LedgerDifferences(const ServerState& base, const ServerState& now) {
  std::vector<std::string> out;
  auto diff = [&out](const std::string& what, int64_t b, int64_t n) {
    if (b != n) out.push_back(absl::StrCat(what, ": baseline ", b, ", now ", n, " (", n - b, ")"));
  };
  for (const auto& [name, b] : base.devices) {
    auto it = now.devices.find(name);
    if (it == now.devices.end()) {
      out.push_back("device " + name + " vanished");
      continue;
    }
    diff("device " + name + " weight_bytes", b.weight_bytes, it->second.weight_bytes);
    diff("device " + name + " kv_cache_bytes", b.kv_cache_bytes, it->second.kv_cache_bytes);
    diff("device " + name + " adapter_bytes", b.adapter_bytes, it->second.adapter_bytes);
    diff("device " + name + " workspace_bytes", b.workspace_bytes, it->second.workspace_bytes);
  }
  for (const auto& [model, blocks] : base.kv_num_blocks) {
    auto it = now.kv_num_blocks.find(model);
    diff("model " + model + " kv_num_blocks", blocks, it == now.kv_num_blocks.end() ? -1 : it->second);
  }
  return out;
}

nlohmann::json ToJson(const ServerState& s) {
  nlohmann::json j;
  for (const auto& [model, g] : s.gauges) {
    j["models"][model] = {{"running", g.running}, {"waiting", g.waiting}, {"kv_blocks_free", g.kv_free},
                          {"kv_blocks_total", g.kv_total}, {"state", s.model_state.count(model) ? s.model_state.at(model) : ""},
                          {"kv_num_blocks", s.kv_num_blocks.count(model) ? s.kv_num_blocks.at(model) : -1}};
  }
  for (const auto& [name, d] : s.devices) {
    j["devices"][name] = {{"weight_bytes", d.weight_bytes}, {"kv_cache_bytes", d.kv_cache_bytes},
                          {"adapter_bytes", d.adapter_bytes}, {"workspace_bytes", d.workspace_bytes}};
  }
  j["rpc_in_flight"] = s.rpc_in_flight;
  for (const auto& [key, n] : s.rpc_codes) j["server_rpc_codes"][key] = n;
  return j;
}

}  // namespace kiln::bench::soak
