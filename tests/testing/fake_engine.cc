#include "tests/testing/fake_engine.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace kiln::testing {

FakeEngine::~FakeEngine() { Shutdown(); }

void FakeEngine::ScriptGenerate(GenerateScript script) {
  absl::MutexLock lock(&mu_);
  generate_script_ = std::move(script);
}
void FakeEngine::ScriptLoad(LoadScript script) {
  absl::MutexLock lock(&mu_);
  load_script_ = std::move(script);
}
void FakeEngine::SetUnloadResult(absl::StatusOr<engine::UnloadResult> result) {
  absl::MutexLock lock(&mu_);
  unload_result_ = std::move(result);
}
void FakeEngine::SetModels(std::vector<engine::ModelInfo> models) {
  absl::MutexLock lock(&mu_);
  models_ = std::move(models);
}
void FakeEngine::SetGetModelResult(absl::StatusOr<engine::ModelInfo> result) {
  absl::MutexLock lock(&mu_);
  get_model_ = std::move(result);
}
void FakeEngine::SetLoadAdapterResult(absl::StatusOr<engine::AdapterInfo> result) {
  absl::MutexLock lock(&mu_);
  load_adapter_ = std::move(result);
}
void FakeEngine::SetUnloadAdapterResult(absl::StatusOr<int64_t> result) {
  absl::MutexLock lock(&mu_);
  unload_adapter_ = std::move(result);
}
void FakeEngine::SetListAdaptersResult(absl::StatusOr<std::vector<engine::AdapterInfo>> result) {
  absl::MutexLock lock(&mu_);
  list_adapters_ = std::move(result);
}
void FakeEngine::SetTokenizeResult(absl::StatusOr<engine::TokenizeResult> result) {
  absl::MutexLock lock(&mu_);
  tokenize_ = std::move(result);
}
void FakeEngine::SetInfo(engine::EngineInfo info) {
  absl::MutexLock lock(&mu_);
  info_ = std::move(info);
}
void FakeEngine::set_hold_callbacks(bool hold) {
  absl::MutexLock lock(&mu_);
  hold_callbacks_ = hold;
}

void FakeEngine::ReleaseCallbacks() {
  std::vector<std::function<void()>> held;
  {
    absl::MutexLock lock(&mu_);
    held.swap(held_);
  }
  std::thread thread([&held] {
    for (auto& callback : held) callback();
  });
  thread.join();
}

void FakeEngine::NotifyModelState(const std::string& served_name, engine::ModelState state) {
  engine::ModelStateObserver observer;
  {
    absl::MutexLock lock(&mu_);
    observer = observer_;
  }
  std::thread thread([&] {
    if (observer) observer(served_name, state);
  });
  thread.join();
}

std::optional<FakeEngine::GenerateCall> FakeEngine::WaitForGenerate(size_t index,
                                                                    absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto arrived = [this, index]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return generate_calls_.size() > index;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout)) return std::nullopt;
  return generate_calls_[index];
}

std::optional<FakeEngine::LoadCall> FakeEngine::WaitForLoad(size_t index, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto arrived = [this, index]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return load_calls_.size() > index;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout)) return std::nullopt;
  return load_calls_[index];
}

size_t FakeEngine::num_generate_calls() const {
  absl::MutexLock lock(&mu_);
  return generate_calls_.size();
}
size_t FakeEngine::num_held_callbacks() const {
  absl::MutexLock lock(&mu_);
  return held_.size();
}
bool FakeEngine::WaitForHeldCallbacks(size_t n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto held = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&held), timeout);
}
int FakeEngine::num_unary_calls() const {
  absl::MutexLock lock(&mu_);
  return unary_calls_;
}
std::string FakeEngine::last_unary_args() const {
  absl::MutexLock lock(&mu_);
  return last_unary_args_;
}
bool FakeEngine::drain_begun() const {
  absl::MutexLock lock(&mu_);
  return drain_begun_;
}
bool FakeEngine::shut_down() const {
  absl::MutexLock lock(&mu_);
  return shut_down_;
}

void FakeEngine::RunOrHold(std::function<void()> callback) {
  {
    absl::MutexLock lock(&mu_);
    if (hold_callbacks_) {
      held_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

void FakeEngine::RecordUnary(std::string args) {
  absl::MutexLock lock(&mu_);
  ++unary_calls_;
  last_unary_args_ = std::move(args);
}

std::shared_ptr<engine::LoadStream> FakeEngine::LoadModel(const engine::LoadModelOptions& options) {
  auto stream = std::make_shared<engine::LoadStream>();
  LoadScript script;
  {
    absl::MutexLock lock(&mu_);
    load_calls_.push_back({options, stream});
    script = load_script_;
  }
  for (engine::LoadEvent& event : script.events) stream->Push(std::move(event));
  if (script.finish.has_value()) stream->Finish(*script.finish);
  return stream;
}

void FakeEngine::UnloadModel(const std::string& served_name, bool drain,
                             std::function<void(absl::StatusOr<engine::UnloadResult>)> done) {
  RecordUnary(absl::StrCat("UnloadModel ", served_name, " drain=", drain));
  absl::StatusOr<engine::UnloadResult> result;
  {
    absl::MutexLock lock(&mu_);
    result = unload_result_;
  }
  RunOrHold([done = std::move(done), result] { done(result); });
}

std::vector<engine::ModelInfo> FakeEngine::ListModels() {
  RecordUnary("ListModels");
  absl::MutexLock lock(&mu_);
  return models_;
}

absl::StatusOr<engine::ModelInfo> FakeEngine::GetModel(const std::string& served_name) {
  RecordUnary(absl::StrCat("GetModel ", served_name));
  absl::MutexLock lock(&mu_);
  return get_model_;
}

void FakeEngine::LoadAdapter(const engine::LoadAdapterOptions& options,
                             std::function<void(absl::StatusOr<engine::AdapterInfo>)> done) {
  RecordUnary(absl::StrCat("LoadAdapter ", options.model, " ", options.adapter, " pin=",
                           options.pin));
  absl::StatusOr<engine::AdapterInfo> result;
  {
    absl::MutexLock lock(&mu_);
    result = load_adapter_;
  }
  RunOrHold([done = std::move(done), result] { done(result); });
}

void FakeEngine::UnloadAdapter(const std::string& model, const std::string& served_name,
                               bool force, std::function<void(absl::StatusOr<int64_t>)> done) {
  RecordUnary(absl::StrCat("UnloadAdapter ", model, " ", served_name, " force=", force));
  absl::StatusOr<int64_t> result;
  {
    absl::MutexLock lock(&mu_);
    result = unload_adapter_;
  }
  RunOrHold([done = std::move(done), result] { done(result); });
}

absl::StatusOr<std::vector<engine::AdapterInfo>> FakeEngine::ListAdapters(
    const std::string& model) {
  RecordUnary(absl::StrCat("ListAdapters ", model));
  absl::MutexLock lock(&mu_);
  return list_adapters_;
}

absl::StatusOr<std::shared_ptr<engine::GenerateStream>> FakeEngine::Generate(
    engine::GenerateRequest request) {
  GenerateScript script;
  auto stream = std::make_shared<engine::GenerateStream>();
  {
    absl::MutexLock lock(&mu_);
    script = generate_script_;
    generate_calls_.push_back({request, script.submit_status.ok() ? stream : nullptr});
  }
  if (!script.submit_status.ok()) return script.submit_status;
  for (engine::GenerateChunk& chunk : script.chunks) stream->Push(std::move(chunk));
  if (script.finish.has_value()) stream->Finish(*script.finish);
  return stream;
}

absl::StatusOr<engine::TokenizeResult> FakeEngine::Tokenize(const std::string& model,
                                                            const std::string& text,
                                                            bool add_special_tokens) {
  RecordUnary(absl::StrCat("Tokenize ", model, " ", text, " special=", add_special_tokens));
  absl::MutexLock lock(&mu_);
  return tokenize_;
}

engine::EngineInfo FakeEngine::GetInfo() {
  absl::MutexLock lock(&mu_);
  return info_;
}

void FakeEngine::SetModelStateObserver(engine::ModelStateObserver observer) {
  absl::MutexLock lock(&mu_);
  observer_ = std::move(observer);
}

void FakeEngine::BeginDrain() {
  absl::MutexLock lock(&mu_);
  drain_begun_ = true;
}

int FakeEngine::InFlightRequests() {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const GenerateCall& call : generate_calls_) {
    if (call.stream && !call.stream->finished()) ++n;
  }
  return n;
}

void FakeEngine::Shutdown() {
  std::vector<GenerateCall> generate;
  std::vector<LoadCall> load;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    generate = generate_calls_;
    load = load_calls_;
  }
  for (GenerateCall& call : generate) {
    if (call.stream) call.stream->Finish(absl::UnavailableError("engine shut down"));
  }
  for (LoadCall& call : load) call.stream->Finish(absl::UnavailableError("engine shut down"));
}

}  // namespace kiln::testing
