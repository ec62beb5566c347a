// What the soak compares at idle (criterion G3): per model the engine gauges from /metrics
// (running and waiting requests, KV blocks free and total), the gRPC calls in flight, the
// memory ledger of every device from GetServerInfo, and each model's state and KV size from
// ListModels. Read with plain RPCs and one HTTP scrape.
//
// Thread-safety: pure functions plus one-shot reads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace kiln::bench::soak {

struct ModelGauges {
  double running = -1;
  double waiting = -1;
  double kv_free = -1;
  double kv_total = -1;
};

struct DeviceLedger {
  int64_t weight_bytes = 0;
  int64_t kv_cache_bytes = 0;
  int64_t adapter_bytes = 0;
  int64_t workspace_bytes = 0;
};

struct ServerState {
  std::map<std::string, ModelGauges> gauges;       // by model
  double rpc_in_flight = -1;                       // kiln_rpc_in_flight, all methods
  std::map<std::string, DeviceLedger> devices;     // by device name
  std::map<std::string, std::string> model_state;  // by model: ModelState name
  std::map<std::string, int64_t> kv_num_blocks;    // by model
  // kiln_rpc_requests_total: finished RPCs by "method code" as the server counted them.
  std::map<std::string, double> rpc_codes;
};

// Reads the state: GetServerInfo and ListModels on `stub`, /metrics on 127.0.0.1:metrics_port.
absl::StatusOr<ServerState> ReadServerState(kiln::v1::Kiln::Stub* stub, int metrics_port,
                                            const std::vector<std::string>& models);

// Why `now` is not idle: requests running or waiting, KV blocks in use, RPCs in flight, a
// model not READY. Empty when idle.
std::vector<std::string> NotIdleReasons(const ServerState& now);
// How `now` differs from `baseline` in the ledger and the models' KV sizes. Empty when equal.
std::vector<std::string> LedgerDifferences(const ServerState& baseline, const ServerState& now);

nlohmann::json ToJson(const ServerState& s);

}  // namespace kiln::bench::soak
