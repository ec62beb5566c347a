#!/usr/bin/env python3
"""gRPC overhead (kilnd_null) and CPU scaling (kilnd) sweeps; standard library only.

  sweeps.py overhead --kilnd_null BIN --loadgen BIN [--concurrency 64 --output_len 2000]
  sweeps.py scaling  --kilnd BIN --loadgen BIN --python PY [--prompts 128,...,4096
                     --concurrencies 1,...,128]

Each writes bench/results/<stamp>-<kind>.{json,md} (scaling also two PNGs via gnuplot when
it is installed). Every point records the 1-minute load average next to its numbers.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from peers import Kilnd, loadgen, machine_info, write_results, make_model  # noqa: E402

EXCLUDE = "null-engine"


def overhead(a):
    start = machine_info()
    rows = []
    for mode, max_buffered in (("coalescing on", 16), ("coalescing off", 1)):
        server = Kilnd(a.kilnd_null, [f"--max_buffered={max_buffered}"])
        try:
            thr = loadgen(a.loadgen, server.port, "null", f"null {mode} c={a.concurrency}",
                          [f"--concurrency={a.concurrency}",
                           f"--num_requests={a.concurrency * 4}",
                           "--prompt_len=16", f"--output_len={a.output_len}", "--warmup=1",
                           f"--duration_s={a.duration_s}", "--grace_s=10",
                           f"--server_pid={server.pid}", f"--exclude_threads={EXCLUDE}"],
                          vocab_size=32000)
            lat = loadgen(a.loadgen, server.port, "null", f"null {mode} c=1 TTFT",
                          ["--concurrency=1", "--num_requests=300", "--prompt_len=16",
                           "--output_len=4", "--warmup=5", f"--duration_s={a.duration_s}",
                           f"--server_pid={server.pid}", f"--exclude_threads={EXCLUDE}"],
                          vocab_size=32000)
        finally:
            server.stop()
        rows.append({
            "mode": mode, "max_buffered": max_buffered, "concurrency": a.concurrency,
            "output_tok_s_wall": thr["output_throughput"],
            "output_tok_per_server_cpu_s": thr.get("server_cpu", {}).get("output_tokens_per_cpu_s", 0),
            "server_cpu_s": thr.get("server_cpu", {}).get("total_s", 0),
            "engine_cpu_s_excluded": thr.get("server_cpu", {}).get("excluded_s", 0),
            "tokens_per_message": thr["output_tokens"] / max(thr["messages"], 1),
            "itl_p50_ms": thr["itl_ms"]["p50"], "errors": thr["errors"],
            "ttft_c1_p50_ms": lat["ttft_ms"]["p50"], "ttft_c1_p99_ms": lat["ttft_ms"]["p99"],
            "load_avg": thr["load_avg_start"], "throughput_run": thr, "ttft_run": lat})
    result = {"benchmark": "grpc_overhead", "machine": start, "load_avg_end": list(os.getloadavg()),
              "command": a.command, "rows": rows,
              "target": {"output_tok_per_server_cpu_s": 50000}}
    lines = [f"# gRPC streaming overhead (kilnd_null) {time.strftime('%Y-%m-%d %H:%M:%S')}", "",
             f"- machine: {start.get('cpu_model', '?')}, nproc {start['nproc']}, load average "
             f"start {start['load_avg'][0]:.2f} / end {result['load_avg_end'][0]:.2f} "
             "(shared machine; loadgen and server share the same cores)",
             f"- commit {start['commit']}; command: `{a.command}`",
             "- tokens per server CPU-second = output tokens / (kilnd_null process CPU time "
             f"minus its '{EXCLUDE}' thread); target >= 50,000", "",
             "| mode | c | tok/s (wall) | tok / server CPU-s | tokens/msg | ITL p50 ms | "
             "TTFT c=1 p50 / p99 ms | errors | load avg |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['concurrency']} | {r['output_tok_s_wall']:.0f} | "
                     f"{r['output_tok_per_server_cpu_s']:.0f} | {r['tokens_per_message']:.2f} | "
                     f"{r['itl_p50_ms']:.3f} | {r['ttft_c1_p50_ms']:.3f} / {r['ttft_c1_p99_ms']:.3f} | "
                     f"{r['errors'] or 'none'} | {r['load_avg']:.2f} |")
    write_results(a.results, "overhead", result, "\n".join(lines) + "\n")


def scaling(a):
    start = machine_info()
    work = tempfile.mkdtemp(prefix="kiln-scaling-")
    root = os.path.join(work, "models")
    prompts = [int(x) for x in a.prompts.split(",") if x]
    concs = [int(x) for x in a.concurrencies.split(",") if x]
    model = json.loads(subprocess.run(
        [a.python, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers/peers.py"),
         "make-model", "--out", os.path.join(root, "llama100m")],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    server = Kilnd(a.kilnd, ["--metrics_listen=", f"--model_roots={root}", "--preload=llama100m",
                             f"--num_compute_threads={a.threads}"])
    prompt_rows, conc_rows = [], []
    try:
        # Every point draws its prompts from its own seed: loadgen runs with one seed share
        # their random token streams, so a 4096-token prompt would start with the 2048-token
        # point's prompt and hit kiln's prefix cache (the 2026-11-24 06:06 run did).
        seed = 1000
        first = True
        for p in prompts:
            seed += 1
            rep = loadgen(a.loadgen, server.port, "llama100m", f"prompt {p}",
                          ["--concurrency=1", f"--num_requests={a.repeats}", f"--prompt_len={p}",
                           f"--seed={seed}",
                           f"--output_len={a.output_len}", f"--warmup={1 if first else 0}",
                           "--duration_s=0", f"--grace_s={a.point_timeout_s}",
                           f"--timeout_s={a.point_timeout_s}"])
            first = False
            tpot = rep["tpot_ms"]["mean"]
            prompt_rows.append({"prompt_len": p, "ttft_ms_p50": rep["ttft_ms"]["p50"],
                                "decode_tok_s": 1000.0 / tpot if tpot else 0,
                                "prefill_tok_s": p / (rep["ttft_ms"]["p50"] / 1000.0)
                                if rep["ttft_ms"]["p50"] else 0,
                                "errors": rep["errors"], "cut_off": rep["cut_off"],
                                "load_avg": rep["load_avg_start"]})
        for c in concs:
            seed += 1
            rep = loadgen(a.loadgen, server.port, "llama100m", f"concurrency {c}",
                          [f"--concurrency={c}", f"--num_requests={c}", f"--seed={seed}",
                           f"--prompt_len={a.conc_prompt_len}", f"--output_len={a.output_len}",
                           "--warmup=0", "--duration_s=0", f"--grace_s={a.point_timeout_s}",
                           f"--timeout_s={a.point_timeout_s}"])
            conc_rows.append({"concurrency": c, "output_tok_s": rep["output_throughput"],
                              "ttft_ms_p50": rep["ttft_ms"]["p50"],
                              "ttft_ms_p99": rep["ttft_ms"]["p99"],
                              "tpot_ms_p50": rep["tpot_ms"]["p50"], "errors": rep["errors"],
                              "cut_off": rep["cut_off"], "load_avg": rep["load_avg_start"]})
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    plots = plot(a.results, stamp, prompt_rows, conc_rows)
    result = {"benchmark": "scaling", "machine": start, "load_avg_end": list(os.getloadavg()),
              "command": a.command, "model": model, "output_len": a.output_len,
              "prompt_sweep": prompt_rows, "concurrency_sweep": conc_rows, "plots": plots}
    lines = [f"# CPU scaling (kilnd, 100M Llama fp32) {time.strftime('%Y-%m-%d %H:%M:%S')}", "",
             f"- machine: {start.get('cpu_model', '?')}, nproc {start['nproc']}, load average "
             f"start {start['load_avg'][0]:.2f} / end {result['load_avg_end'][0]:.2f} (shared)",
             f"- commit {start['commit']}; command: `{a.command}`", "",
             "| prompt tokens | TTFT p50 ms | prefill tok/s | decode tok/s | errors | load avg |",
             "|---|---|---|---|---|---|"]
    for r in prompt_rows:
        lines.append(f"| {r['prompt_len']} | {r['ttft_ms_p50']:.1f} | {r['prefill_tok_s']:.1f} | "
                     f"{r['decode_tok_s']:.2f} | {r['errors'] or 'none'} | {r['load_avg']:.2f} |")
    lines += ["", f"| concurrency | output tok/s | TTFT p50 / p99 ms | TPOT p50 ms | errors | "
              "load avg |", "|---|---|---|---|---|---|"]
    for r in conc_rows:
        lines.append(f"| {r['concurrency']} | {r['output_tok_s']:.2f} | {r['ttft_ms_p50']:.0f} / "
                     f"{r['ttft_ms_p99']:.0f} | {r['tpot_ms_p50']:.1f} | {r['errors'] or 'none'} | "
                     f"{r['load_avg']:.2f} |")
    lines += [""] + [f"![{p}]({p})" for p in plots]
    write_results(a.results, "scaling", result, "\n".join(lines) + "\n", stamp=stamp)


def plot(results, stamp, prompt_rows, conc_rows):
    if shutil.which("gnuplot") is None:
        print("gnuplot not installed (apt-get install gnuplot-nox): no PNGs", file=sys.stderr)
        return []
    os.makedirs(results, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        pdat = os.path.join(tmp, "p.dat")
        cdat = os.path.join(tmp, "c.dat")
        with open(pdat, "w") as f:
            for r in prompt_rows:
                f.write(f"{r['prompt_len']} {r['ttft_ms_p50'] / 1000.0} {r['decode_tok_s']}\n")
        with open(cdat, "w") as f:
            for r in conc_rows:
                f.write(f"{r['concurrency']} {r['output_tok_s']} {r['ttft_ms_p50'] / 1000.0}\n")
        for name, dat, xlabel, y1, y2, t1, t2 in (
                (f"{stamp}-scaling-prompt.png", pdat, "prompt tokens", 2, 3, "TTFT (s)",
                 "decode tok/s (batch 1)"),
                (f"{stamp}-scaling-concurrency.png", cdat, "concurrent streams", 2, 3,
                 "output tok/s", "TTFT p50 (s)")):
            script = f"""
set terminal pngcairo size 900,540 noenhanced
set output '{os.path.join(results, name)}'
set logscale x 2
set xlabel '{xlabel}'
set ylabel '{t1}'
set y2label '{t2}'
set ytics nomirror
set y2tics
set grid
set key top left
set title 'kiln CPU scaling, 100M Llama fp32 ({stamp})'
plot '{dat}' using 1:{y1} with linespoints axes x1y1 title '{t1}', \\
     '{dat}' using 1:{y2} with linespoints axes x1y2 title '{t2}'
"""
            r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
            if r.returncode == 0:
                out.append(name)
            else:
                print("gnuplot failed: " + r.stderr, file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["overhead", "scaling"])
    ap.add_argument("--kilnd", default="")
    ap.add_argument("--kilnd_null", default="")
    ap.add_argument("--loadgen", default="")
    ap.add_argument("--python", default=sys.executable, help="python with torch (scaling)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--output_len", type=int, default=0)
    ap.add_argument("--duration_s", type=float, default=20)
    ap.add_argument("--prompts", default="128,256,512,1024,2048,4096")
    ap.add_argument("--concurrencies", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--conc_prompt_len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--point_timeout_s", type=float, default=600)
    ap.add_argument("--results", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--command", default="")
    a = ap.parse_args()
    if a.cmd == "overhead":
        a.output_len = a.output_len or 2000
        overhead(a)
    else:
        a.output_len = a.output_len or 16
        scaling(a)


if __name__ == "__main__":
    main()
