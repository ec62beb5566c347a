// CreateEngine: builds the engine the daemon serves with (models loaded from the configured
// roots, run on the backends this build has).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/engine_options.h"

namespace kiln::engine {

// INVALID_ARGUMENT for bad options (e.g. a model root that is not a directory).
absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(EngineOptions options);

}  // namespace kiln::engine
