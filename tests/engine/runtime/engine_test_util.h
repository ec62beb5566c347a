// Helpers shared by the engine runtime tests: drive an EventStream to its end through the
// ready callback (as the server's reactor does), load a model and wait.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/engine_factory.h"
#include "gtest/gtest.h"

namespace kiln::engine::testing {

// The golden fixtures: models/ (model root) and hub/ (a hub cache) under it.
inline const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures";

// A CPU engine serving the fixture models, with `limits`.
inline std::unique_ptr<Engine> MakeEngine(EngineLimits limits = {}) {
  EngineOptions options;
  options.model_roots = {kFixtures + "/models"};
  options.hub_cache = kFixtures + "/hub";
  options.limits = limits;
  options.num_compute_threads = 2;
  absl::StatusOr<std::unique_ptr<Engine>> engine = CreateEngine(std::move(options));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

struct Collected {
  std::string text;
  std::vector<int32_t> ids;
  std::optional<GenerateChunk::Finish> finish;
  absl::Status status;
};

// Calls `on_chunk` (may be empty) for every chunk, on the producer's or the caller's thread.
inline Collected Collect(const std::shared_ptr<GenerateStream>& stream,
                         std::function<void(const GenerateChunk&)> on_chunk = nullptr) {
  Collected c;
  absl::Notification done;
  std::function<void()> pump = [&] {
    while (true) {
      GenerateStream::Batch batch = stream->Drain();
      if (batch.empty()) return;
      for (GenerateChunk& chunk : batch.events) {
        if (on_chunk) on_chunk(chunk);
        c.text += chunk.text;
        c.ids.insert(c.ids.end(), chunk.token_ids.begin(), chunk.token_ids.end());
        if (chunk.finish) c.finish = chunk.finish;
      }
      if (batch.final_status.has_value()) {
        c.status = *batch.final_status;
        done.Notify();
        return;
      }
    }
  };
  stream->SetReadyCallback(pump);
  pump();
  done.WaitForNotification();
  return c;
}

// `progress_events` (may be null) counts the progress events before the end.
inline absl::Status LoadAndWait(Engine& engine, const LoadModelOptions& options, ModelInfo* info,
                                int* progress_events = nullptr) {
  std::shared_ptr<LoadStream> stream = engine.LoadModel(options);
  absl::Notification done;
  absl::Status status;
  std::function<void()> pump = [&] {
    while (true) {
      LoadStream::Batch batch = stream->Drain();
      if (batch.empty()) return;
      for (LoadEvent& e : batch.events) {
        if (auto* ready = std::get_if<ModelInfo>(&e); ready != nullptr) {
          if (info != nullptr) *info = *ready;
        } else if (progress_events != nullptr) {
          ++*progress_events;
        }
      }
      if (batch.final_status) {
        status = *batch.final_status;
        done.Notify();
        return;
      }
    }
  };
  stream->SetReadyCallback(pump);
  pump();
  done.WaitForNotification();
  return status;
}

}  // namespace kiln::engine::testing
