// lora_serving_bench: LoRA serving cost on the CPU engine (issue #6 benchmark). In one process:
// base-only throughput, the same with 1/8/32 distinct adapters in the batch (ratios against
// base-only), and cold attach latency of a small adapter (bench/lora/lora_bench.h). A benchmark,
// not a test (DESIGN.md §8): it prints ratios against the base-only run of the same process,
// with the machine's load average at start and end.
//
//   lora_serving_bench [--batch=32] [--max_new_tokens=64] [--prompt_tokens=16]
//                      [--adapters=1,8,32] [--rank=16] [--rounds=5] [--cold_samples=5]
//                      [--cold_rank=8] [--cold_new_tokens=4] [--threads=0]
//                      [--hidden=512] [--layers=8] [--heads=8] [--kv_heads=2] [--intermediate=1408]
//                      [--tokenizer_dir=<repo>/tests/golden/fixtures/models/llama_tiny]
//
// The model and adapters are written to a temp dir and removed at the end. Exit status 0 on
// success, 1 on a bad flag or any engine error (printed).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/lora/lora_bench.h"

namespace {

std::string ReadFirstLine(const char* path, const std::string& prefix) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (prefix.empty() || line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

std::string LoadAverage() {
  std::string l = ReadFirstLine("/proc/loadavg", "");
  return l.substr(0, l.find(' '));
}

// --name=<int>; false (with a message) when present but not an integer.
bool IntFlag(const std::string& arg, const std::string& name, int* value, bool* ok) {
  const std::string prefix = "--" + name + "=";
  if (arg.rfind(prefix, 0) != 0) return false;
  if (!absl::SimpleAtoi(arg.substr(prefix.size()), value)) {
    std::fprintf(stderr, "bad value for --%s: %s\n", name.c_str(), arg.c_str());
    *ok = false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  kiln::bench::LoraBenchOptions o;
  o.tokenizer_dir = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models/llama_tiny";
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help") {
      std::printf("see the header of bench/lora/main.cc\n");
      return 0;
    }
    if (IntFlag(a, "batch", &o.batch, &ok) || IntFlag(a, "max_new_tokens", &o.max_new_tokens, &ok) ||
        IntFlag(a, "prompt_tokens", &o.prompt_tokens, &ok) || IntFlag(a, "rank", &o.rank, &ok) ||
        IntFlag(a, "rounds", &o.rounds, &ok) || IntFlag(a, "cold_samples", &o.cold_samples, &ok) ||
        IntFlag(a, "cold_rank", &o.cold_rank, &ok) || IntFlag(a, "cold_new_tokens", &o.cold_new_tokens, &ok) ||
        IntFlag(a, "threads", &o.threads, &ok) || IntFlag(a, "hidden", &o.model.hidden, &ok) ||
        IntFlag(a, "layers", &o.model.layers, &ok) || IntFlag(a, "heads", &o.model.heads, &ok) ||
        IntFlag(a, "kv_heads", &o.model.kv_heads, &ok) || IntFlag(a, "intermediate", &o.model.intermediate, &ok)) {
      continue;
    }
    if (a.rfind("--adapters=", 0) == 0) {
      o.adapter_counts.clear();
      for (const auto& part : absl::StrSplit(a.substr(11), ',')) {
        int n = 0;
        if (!absl::SimpleAtoi(part, &n)) ok = false;
        o.adapter_counts.push_back(n);
      }
      if (o.adapter_counts.empty()) ok = false;
      continue;
    }
    if (a.rfind("--tokenizer_dir=", 0) == 0) {
      o.tokenizer_dir = a.substr(16);
      continue;
    }
    std::fprintf(stderr, "unknown flag %s (--help)\n", a.c_str());
    ok = false;
  }
  if (!ok) return 1;
  const std::string cpu = ReadFirstLine("/proc/cpuinfo", "model name");
  const std::string load_start = LoadAverage();
  absl::StatusOr<kiln::bench::LoraBenchReport> report = kiln::bench::RunLoraBench(o);
  if (!report.ok()) {
    std::fprintf(stderr, "lora_serving_bench: %s\n", report.status().ToString().c_str());
    return 1;
  }
  std::printf("machine: %s, nproc %u, load average (1 min) at start %s / end %s\n",
              cpu.empty() ? "unknown CPU" : cpu.substr(cpu.find(':') + 2).c_str(), std::thread::hardware_concurrency(),
              load_start.c_str(), LoadAverage().c_str());
  std::printf("%s", kiln::bench::FormatLoraReport(o, *report).c_str());
  return 0;
}
