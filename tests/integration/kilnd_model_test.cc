// Load → generate → unload on the real kilnd with the tiny golden fixtures
// (tests/golden/fixtures, built by tools/fixtures from transformers): greedy tokens must equal
// transformers' generate(do_sample=False) output, through both a plain client and kilnctl.
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/integration/grpc_clients.h"
#include "tests/integration/kilnd_process.h"

namespace kiln::testing {
namespace {

using ::grpc::health::v1::HealthCheckResponse;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/";

struct GreedyRun {
  std::string prompt_text;
  std::vector<int> input_ids;
  std::vector<int> new_ids;
  std::string text;
  bool stopped_by_eos = false;
  int max_new_tokens = 0;
};

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream data;
  data << in.rdbuf();
  return nlohmann::json::parse(data.str(), nullptr, /*allow_exceptions=*/false);
}

// The first plain greedy run of `model` and its prompt text.
std::optional<GreedyRun> LoadGreedyRun(const std::string& model) {
  const nlohmann::json greedy = ReadJson(kFixtures + "reference/" + model + "/greedy.json");
  const nlohmann::json prompts = ReadJson(kFixtures + "reference/" + model + "/prompts.json");
  if (greedy.is_discarded() || prompts.is_discarded() || !greedy.contains("runs") ||
      !prompts.contains("prompts")) {
    return std::nullopt;
  }
  const nlohmann::json& run = greedy["runs"][0];
  GreedyRun out;
  for (const auto& p : prompts["prompts"]) {
    if (p.value("name", "") == run.value("prompt", "")) out.prompt_text = p.value("text", "");
  }
  for (const auto& id : run["input_ids"]) out.input_ids.push_back(id.get<int>());
  for (const auto& id : run["new_ids"]) out.new_ids.push_back(id.get<int>());
  out.text = run.value("text", "");
  out.stopped_by_eos = run.value("stopped_by_eos", false);
  out.max_new_tokens = run["params"].value("max_new_tokens", 0);
  return out;
}

class KilndModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<KilndProcess>> p =
        KilndProcess::Start({KilndPath(), {"--model_roots=" + kFixtures + "models"}});
    ASSERT_TRUE(p.ok()) << p.status();
    kilnd_ = *std::move(p);
    channel_ = Connect(kilnd_->grpc_address());
    stub_ = kiln::v1::Kiln::NewStub(channel_);
    std::optional<GreedyRun> run = LoadGreedyRun("llama_tiny");
    ASSERT_TRUE(run.has_value()) << "fixture reference/llama_tiny is unreadable";
    run_ = *run;
  }

  ProcessResult Kilnctl(std::vector<std::string> args) {
    args.insert(args.begin(), {KilnctlPath(), "--addr=" + kilnd_->grpc_address()});
    absl::StatusOr<ProcessResult> r = RunProcess(args, {"KILN_TOKEN="}, std::chrono::seconds(60));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }

  std::unique_ptr<KilndProcess> kilnd_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<kiln::v1::Kiln::Stub> stub_;
  GreedyRun run_;
};

TEST_F(KilndModelTest, PlainClientLoadGenerateUnload) {
  kiln::v1::LoadModelRequest load;
  load.set_model("llama_tiny");
  load.set_dtype(kiln::v1::DTYPE_FLOAT32);
  auto ctx = MakeContext("", std::chrono::seconds(60));
  auto reader = stub_->LoadModel(ctx.get(), load);
  kiln::v1::LoadModelEvent event;
  int progress_events = 0;
  std::optional<kiln::v1::ModelInfo> ready;
  while (reader->Read(&event)) {
    EXPECT_FALSE(ready.has_value()) << "ready must be the last event";
    if (event.has_progress()) ++progress_events;
    if (event.has_ready()) ready = event.ready();
  }
  const grpc::Status load_status = reader->Finish();
  ASSERT_TRUE(load_status.ok()) << load_status.error_message() << "\n" << kilnd_->Log();
  ASSERT_TRUE(ready.has_value());
  EXPECT_GT(progress_events, 0);
  EXPECT_EQ(ready->served_name(), "llama_tiny");
  EXPECT_EQ(ready->state(), kiln::v1::MODEL_STATE_READY);
  EXPECT_EQ(ready->architecture(), "LlamaForCausalLM");
  EXPECT_EQ(ready->dtype(), kiln::v1::DTYPE_FLOAT32);

  // Per-model health is published asynchronously (server/health.h queues updates), so it
  // may trail the ready event briefly: watch it until SERVING, within a bounded deadline.
  {
    grpc::health::v1::Health::Stub health(channel_);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("model/llama_tiny");
    auto wctx = MakeContext("", std::chrono::seconds(10));
    auto watch = health.Watch(wctx.get(), request);
    grpc::health::v1::HealthCheckResponse response;
    bool serving = false;
    while (!serving && watch->Read(&response)) {
      serving = response.status() == HealthCheckResponse::SERVING;
    }
    wctx->TryCancel();
    watch->Finish();
    EXPECT_TRUE(serving) << "model/llama_tiny never became SERVING";
  }

  // Token-id prompt and text prompt (tokenized server-side, special tokens added) must both
  // give transformers' greedy continuation.
  for (bool by_text : {false, true}) {
    kiln::v1::GenerateRequest request;
    request.set_model("llama_tiny");
    if (by_text) {
      request.set_text(run_.prompt_text);
    } else {
      request.mutable_token_ids()->mutable_ids()->Add(run_.input_ids.begin(), run_.input_ids.end());
    }
    request.mutable_sampling()->set_temperature(0);
    request.mutable_stopping()->set_max_new_tokens(run_.max_new_tokens);
    auto gctx = MakeContext("", std::chrono::seconds(60));
    auto stream = stub_->Generate(gctx.get(), request);
    kiln::v1::GenerateResponse response;
    std::vector<int> ids;
    kiln::v1::GenerateResponse last;
    while (stream->Read(&response)) {
      ids.insert(ids.end(), response.token_ids().begin(), response.token_ids().end());
      last = response;
    }
    const grpc::Status s = stream->Finish();
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_THAT(ids, ElementsAreArray(run_.new_ids)) << (by_text ? "text prompt" : "ids prompt");
    EXPECT_EQ(last.finish_reason(), run_.stopped_by_eos ? kiln::v1::FINISH_REASON_EOS
                                                        : kiln::v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(last.usage().prompt_tokens(), static_cast<int>(run_.input_ids.size()));
    EXPECT_EQ(last.usage().completion_tokens(), static_cast<int>(run_.new_ids.size()));
  }

  kiln::v1::UnloadModelRequest unload;
  unload.set_served_name("llama_tiny");
  kiln::v1::UnloadModelResponse unloaded;
  auto uctx = MakeContext();
  const grpc::Status u = stub_->UnloadModel(uctx.get(), unload, &unloaded);
  ASSERT_TRUE(u.ok()) << u.error_message();
  EXPECT_GT(unloaded.freed_bytes(), 0);

  kiln::v1::GenerateRequest after;
  after.set_model("llama_tiny");
  after.set_text("x");
  auto actx = MakeContext();
  auto stream = stub_->Generate(actx.get(), after);
  kiln::v1::GenerateResponse response;
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(KilndModelTest, KilnctlLoadGenerateTokenizeUnload) {
  ProcessResult r = Kilnctl({"load", "llama_tiny", "--served_name=tiny", "--dtype=float32"});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << kilnd_->Log();
  EXPECT_THAT(r.out, HasSubstr("name:          tiny\n"));
  EXPECT_THAT(r.out, HasSubstr("state:         ready\n"));
  // stderr is a pipe: one progress line per stage, no carriage returns or escapes.
  EXPECT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\r'), std::string::npos);
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);

  r = Kilnctl({"tokenize", "tiny", run_.prompt_text});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string expected_ids;
  for (int id : run_.input_ids) expected_ids += (expected_ids.empty() ? "" : " ") + std::to_string(id);
  EXPECT_EQ(r.out, expected_ids + "\n");

  const std::string max_new = "--max_new_tokens=" + std::to_string(run_.max_new_tokens);
  r = Kilnctl({"generate", "tiny", run_.prompt_text, "--temperature=0", max_new, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<int> ids;
  std::string json_text;
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  std::string finish;
  while (std::getline(lines, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << line;
    ++n;
    for (const auto& id : j.value("token_ids", nlohmann::json::array())) ids.push_back(id.get<int>());
    json_text += j.value("text", "");
    finish = j.value("finish_reason", "");
  }
  EXPECT_GT(n, 0);
  EXPECT_THAT(ids, ElementsAreArray(run_.new_ids));
  EXPECT_EQ(finish, run_.stopped_by_eos ? "FINISH_REASON_EOS" : "FINISH_REASON_LENGTH");

  // Text mode: stdout is exactly the streamed text (no newline added on a pipe), and the
  // summary goes to stderr.
  r = Kilnctl({"generate", "tiny", run_.prompt_text, "--temperature=0", max_new});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, json_text);
  EXPECT_EQ(r.out, run_.text) << "the streamed text must equal transformers' decode(new_ids)";
  EXPECT_THAT(r.err, StartsWith(std::string("[finish=") +
                                (run_.stopped_by_eos ? "eos" : "length") + " prompt_tokens=" +
                                std::to_string(run_.input_ids.size()) + " completion_tokens=" +
                                std::to_string(run_.new_ids.size())));

  r = Kilnctl({"models"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("tiny"));
  EXPECT_THAT(r.out, HasSubstr("ready"));
  EXPECT_THAT(r.out, HasSubstr("LlamaForCausalLM"));

  r = Kilnctl({"unload", "tiny"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("unloaded tiny: freed "));
  r = Kilnctl({"generate", "tiny", "x"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
}

// LoRA through the real daemon: adapters resolve under --adapter_roots, kilnctl loads one under
// a served name, a plain gRPC client generates with it (peft's greedy tokens,
// tests/golden/fixtures/lora/lora.json), lists it, and a request naming an unknown adapter ends
// with NOT_FOUND while the model keeps serving.
TEST(KilndAdapterTest, KilnctlLoadsAnAdapterAndAPlainClientGeneratesWithIt) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> p = KilndProcess::Start(
      {KilndPath(),
       {"--model_roots=" + kFixtures + "models", "--adapter_roots=" + kFixtures + "lora/adapters",
        "--preload=llama_tiny"}});
  ASSERT_TRUE(p.ok()) << p.status();
  std::unique_ptr<KilndProcess> kilnd = *std::move(p);
  {  // readiness ("" health) turns SERVING once the preload is done
    grpc::health::v1::Health::Stub health(Connect(kilnd->grpc_address()));
    grpc::health::v1::HealthCheckRequest request;
    auto wctx = MakeContext("", std::chrono::seconds(60));
    auto watch = health.Watch(wctx.get(), request);
    grpc::health::v1::HealthCheckResponse response;
    while (watch->Read(&response) && response.status() != HealthCheckResponse::SERVING) {
    }
    ASSERT_EQ(response.status(), HealthCheckResponse::SERVING) << kilnd->Log();
    wctx->TryCancel();
    watch->Finish();
  }
  const nlohmann::json lora = ReadJson(kFixtures + "lora/lora.json");
  ASSERT_FALSE(lora.is_discarded());
  const nlohmann::json& run = lora["adapters"]["llama_qv_r4"]["greedy"][0];  // margin 0.14

  auto kilnctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {KilnctlPath(), "--addr=" + kilnd->grpc_address()});
    absl::StatusOr<ProcessResult> r = RunProcess(args, {"KILN_TOKEN="}, std::chrono::seconds(60));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  };
  ProcessResult r = kilnctl({"adapters", "load", "llama_tiny", "llama_qv_r4", "--served_name=qv"});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << kilnd->Log();

  auto stub = kiln::v1::Kiln::NewStub(Connect(kilnd->grpc_address()));
  auto generate = [&](const std::string& adapter, std::vector<int>* ids) {
    kiln::v1::GenerateRequest request;
    request.set_model("llama_tiny");
    request.set_adapter(adapter);
    for (const auto& id : run["input_ids"]) request.mutable_token_ids()->add_ids(id.get<int>());
    request.mutable_sampling()->set_temperature(0);
    request.mutable_stopping()->set_max_new_tokens(16);
    request.mutable_stopping()->set_min_new_tokens(16);
    request.mutable_stopping()->set_ignore_eos(true);
    auto ctx = MakeContext("", std::chrono::seconds(60));
    auto reader = stub->Generate(ctx.get(), request);
    kiln::v1::GenerateResponse response;
    while (reader->Read(&response)) {
      for (int id : response.token_ids()) ids->push_back(id);
    }
    return reader->Finish();
  };
  std::vector<int> ids;
  grpc::Status status = generate("qv", &ids);
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << kilnd->Log();
  EXPECT_EQ(ids, run["new_ids"].get<std::vector<int>>());

  r = kilnctl({"adapters", "list", "--model=llama_tiny"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("qv"));
  EXPECT_THAT(r.out, HasSubstr("llama_qv_r4"));

  ids.clear();
  status = generate("not-an-adapter", &ids);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("not-an-adapter"));
  ids.clear();
  EXPECT_TRUE(generate("", &ids).ok());  // the base model keeps serving
  EXPECT_EQ(ids.size(), 16u);

  r = kilnctl({"adapters", "unload", "llama_tiny", "qv"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace kiln::testing
