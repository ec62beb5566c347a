// decode_gemv_bench: the GEMMs of one decode step of the peers benchmark's ~100M Llama
// (hidden 768, MLP 2048, 12/4 heads of 64, 16 layers: 112 weight matrices, 403 MB in fp32)
// on the CPU backend's kernels, against the machine's read bandwidth measured in the same run.
// Decode at small batch is bound by reading W, so GB/s of W read is the figure of merit.
//
// Variants, interleaved round by round (the machine is noisy; medians are reported):
//   openblas/sleep  ParallelSgemmNT (OpenBLAS sgemv/sgemm per slice) on a runner whose idle
//                   threads sleep at once (spin_us = 0): the kernels before this benchmark.
//   openblas/spin   the same GEMMs on the default runner, whose idle threads spin briefly.
//   smallm/spin     SmallMMatmul, what CpuBackend::Matmul runs for m <= kSmallM.
// plus the runner's For() round trip with and without spinning, and a 2-thread streaming
// read of a 400 MB buffer (the bandwidth ceiling).
//
//   decode_gemv_bench [--threads=2] [--rounds=7] [--reps=10] [--out=PREFIX]
// --out writes PREFIX.json (every figure) and PREFIX.md (the printed report).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <utility>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/loadgen/report.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/parallel.h"
#include "kernels/dtype.h"
#include "nlohmann/json.hpp"

namespace {

using kiln::kernels::DType;
using kiln::kernels::cpu::ParallelRunner;
using Clock = std::chrono::steady_clock;

struct Matrix {
  int64_t n, k;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
};

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) { return kiln::bench::Percentile(std::move(v), 50); }

// The report: printed, and kept for PREFIX.md.
std::string g_report;
template <typename... Args>
void Report(const char* fmt, Args... args) {
  char line[512];
  std::snprintf(line, sizeof line, fmt, args...);
  std::fputs(line, stdout);
  g_report += line;
}

// Seconds per call of fn, best kept honest by running it `reps` times after one warm-up.
double TimePerCall(int reps, const std::function<void()>& fn) {
  fn();
  const auto t0 = Clock::now();
  for (int r = 0; r < reps; ++r) fn();
  return Seconds(t0) / reps;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, rounds = 7, reps = 10;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    const std::string flag = a.substr(0, eq), value = eq == std::string::npos ? "" : a.substr(eq + 1);
    if (flag == "--threads") {
      threads = std::atoi(value.c_str());
    } else if (flag == "--rounds") {
      rounds = std::atoi(value.c_str());
    } else if (flag == "--reps") {
      reps = std::atoi(value.c_str());
    } else if (flag == "--out") {
      out = value;
    } else {
      std::fprintf(stderr, "usage: %s [--threads=2] [--rounds=7] [--reps=10] [--out=PREFIX]\n", argv[0]);
      return 2;
    }
  }
  threads = std::max(1, threads);
  rounds = std::max(1, rounds);
  reps = std::max(1, reps);
  openblas_set_num_threads(1);  // as CpuBackend does

  // The 100M model's layer: q, k, v, o, gate, up, down.
  const std::vector<std::pair<int64_t, int64_t>> layer = {
      {768, 768}, {256, 768}, {256, 768}, {768, 768}, {2048, 768}, {2048, 768}, {768, 2048}};
  std::vector<Matrix> mats;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-0.02f, 0.02f);
  double bytes_f32 = 0;
  for (int l = 0; l < 16; ++l) {
    for (auto [n, k] : layer) {
      Matrix m{n, k, std::vector<float>(static_cast<size_t>(n * k)), {}};
      for (float& v : m.f32) v = u(rng);
      m.bf16.resize(m.f32.size());
      kiln::kernels::cpu::FromFloat(m.f32.data(), DType::kBF16, m.bf16.data(),
                                    static_cast<int64_t>(m.f32.size()));
      bytes_f32 += 4.0 * static_cast<double>(n * k);
      mats.push_back(std::move(m));
    }
  }
  constexpr int64_t kMaxM = kiln::kernels::cpu::kSmallM, kBatch = 32;
  std::vector<float> x(static_cast<size_t>(kBatch * 2048)), y(static_cast<size_t>(kBatch * 2048));
  for (float& v : x) v = u(rng) * 50;

  ParallelRunner sleepy(threads, 0), spinning(threads);

  // One decode step's GEMMs for m tokens.
  auto openblas_step = [&](ParallelRunner& r, int64_t m) {
    for (const Matrix& w : mats) {
      kiln::kernels::cpu::ParallelSgemmNT(r, m, w.n, w.k, 1.0f, x.data(), w.k, w.f32.data(), w.k,
                                          0.0f, y.data(), w.n);
    }
  };
  auto smallm_step = [&](ParallelRunner& r, int64_t m, DType dt) {
    for (const Matrix& w : mats) {
      const void* p = dt == DType::kF32 ? static_cast<const void*>(w.f32.data()) : w.bf16.data();
      kiln::kernels::cpu::SmallMMatmul(r, x.data(), m, w.k, p, dt, w.n, y.data());
    }
  };

  // The ceiling: every thread streams its part of a 400 MB buffer.
  std::vector<float> big(size_t{100} << 20, 1.0f);
  auto read_all = [&] {
    std::vector<std::thread> ts;
    std::vector<double> sums(static_cast<size_t>(threads));
    const size_t part = big.size() / static_cast<size_t>(threads);
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        const float* p = big.data() + part * static_cast<size_t>(t);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (size_t i = 0; i + 8 <= part; i += 8) {
          s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3];
          s4 += p[i + 4]; s5 += p[i + 5]; s6 += p[i + 6]; s7 += p[i + 7];
        }
        sums[static_cast<size_t>(t)] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
      });
    }
    for (auto& t : ts) t.join();
    if (sums[0] < 0) std::puts("");  // keeps the sums alive
  };

  struct Row {
    std::string name;
    int64_t m;
    DType dt;
    std::function<void()> fn;
    std::vector<double> s;
  };
  std::vector<Row> rows;
  for (int64_t m : {int64_t{1}, kMaxM}) {
    rows.push_back({"openblas/sleep", m, DType::kF32, [&, m] { openblas_step(sleepy, m); }, {}});
    rows.push_back({"openblas/spin", m, DType::kF32, [&, m] { openblas_step(spinning, m); }, {}});
    rows.push_back({"smallm/spin", m, DType::kF32, [&, m] { smallm_step(spinning, m, DType::kF32); }, {}});
    // bf16 weights halve the bytes: the ratio shows what a bf16 checkpoint gains.
    rows.push_back({"smallm/spin", m, DType::kBF16, [&, m] { smallm_step(spinning, m, DType::kBF16); }, {}});
  }
  // Batch-32 decode: compute-bound, so its figure is GFLOP/s (in the JSON and the last column).
  rows.push_back({"openblas/sleep", kBatch, DType::kF32, [&] { openblas_step(sleepy, kBatch); }, {}});
  rows.push_back({"openblas/spin", kBatch, DType::kF32, [&] { openblas_step(spinning, kBatch); }, {}});
  std::vector<double> read_s, trip_sleep, trip_spin;
  volatile int sink = 0;
  auto round_trip = [&](ParallelRunner& r) {
    return TimePerCall(2000, [&] { r.For(128, 64, [&](int64_t, int64_t, int) { sink = sink + 1; }); });
  };

  const double load0 = kiln::bench::ReadLoadAverage();
  for (int round = 0; round < rounds; ++round) {
    read_s.push_back(TimePerCall(3, read_all));
    trip_sleep.push_back(round_trip(sleepy));
    trip_spin.push_back(round_trip(spinning));
    for (Row& r : rows) r.s.push_back(TimePerCall(reps, r.fn));
  }
  const double load1 = kiln::bench::ReadLoadAverage();

  const double read_gbs = 4.0 * static_cast<double>(big.size()) / Median(read_s) / 1e9;
  nlohmann::json j;
  j["threads"] = threads;
  j["rounds"] = rounds;
  j["reps"] = reps;
  j["load_average"] = {load0, load1};
  j["weights_mb_f32"] = bytes_f32 / 1e6;
  j["read_bandwidth_gbs"] = read_gbs;
  j["for_round_trip_us"] = {{"sleep", Median(trip_sleep) * 1e6}, {"spin", Median(trip_spin) * 1e6}};
  Report("decode_gemv_bench: %d threads, %d rounds x %d reps, load %.2f -> %.2f\n", threads,
         rounds, reps, load0, load1);
  Report("read bandwidth (2-thread stream of 400 MB): %.1f GB/s\n", read_gbs);
  Report("For() round trip: %.2f us sleeping, %.2f us spinning\n\n", Median(trip_sleep) * 1e6,
         Median(trip_spin) * 1e6);
  Report("| kernel | m | W dtype | ms per step | W GB/s | %% of read bw | vs openblas/sleep | GFLOP/s |\n");
  Report("|---|---|---|---|---|---|---|---|\n");
  double base = 0;
  for (const Row& r : rows) {
    const double s = Median(r.s);
    if (r.name == "openblas/sleep") base = s;
    const double bytes = bytes_f32 * (r.dt == DType::kF32 ? 1.0 : 0.5);
    const double gbs = bytes / s / 1e9;
    const char* dt = r.dt == DType::kF32 ? "f32" : "bf16";
    const double gflops = 2.0 * static_cast<double>(r.m) * (bytes_f32 / 4) / s / 1e9;
    Report("| %s | %lld | %s | %.2f | %.1f | %.0f%% | %.2fx | %.1f |\n", r.name.c_str(),
           static_cast<long long>(r.m), dt, s * 1e3, gbs, 100 * gbs / read_gbs, base / s, gflops);
    j["rows"].push_back({{"kernel", r.name}, {"m", r.m}, {"dtype", dt}, {"ms_per_step", s * 1e3},
                         {"w_gbs", gbs}, {"speedup_vs_openblas_sleep", base / s},
                         {"gflops", gflops}});
  }
  if (!out.empty()) {
    std::ofstream json(out + ".json"), md(out + ".md");
    json << j.dump(2) << "\n";
    md << "# decode_gemv_bench\n\n```\n" << g_report << "```\n";
    if (!json || !md) {
      std::fprintf(stderr, "cannot write %s.{json,md}\n", out.c_str());
      return 1;
    }
  }
  return 0;
}
