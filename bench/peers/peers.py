#!/usr/bin/env python3
"""kiln vs peers on the same machine, same model, same workload, one run (issue 11).

Subcommands (run_peers.sh drives them; each prints JSON):
  make-model  --out DIR               ~100M-parameter Llama-shaped model, random weights (seeded),
                                      fp32 safetensors via save_pretrained, with the llama3_tiny
                                      fixture tokenizer (vocab 507, so the embedding is tiny and
                                      ~all parameters are in the decoder layers)
  hf          --model DIR ...         transformers generate timings (eager dynamic cache or
                                      static cache), batch 1 or batched
  kiln        --model_root R --name N kilnd + kiln_loadgen with the same workload
  compare     --kiln A.json --hf B.json ...   ratios
  all         everything above in one process; writes bench/results/<stamp>-peers.{json,md}

Greedy decoding, ignore-EOS / min_new_tokens = max_new_tokens, random token-id prompts, so
both sides produce exactly the same number of tokens.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_TOKENIZER = os.path.join(REPO, "tests/golden/fixtures/models/llama3_tiny")

# ~100.7M parameters: 16 layers x 6.29M (q/o 768x768, k/v 768x256, MLP 3 x 768x2048) + 0.8M
# embeddings (vocab 507, untied lm_head).
MODEL_SHAPE = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=16,
                   num_attention_heads=12, num_key_value_heads=4, head_dim=64)


def machine_info():
    info = {"nproc": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["load_avg"] = list(os.getloadavg())
    try:
        info["commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"],
                                        capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = "unknown"
    return info


def make_model(out, max_positions=4608, seed=0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    with open(os.path.join(FIXTURE_TOKENIZER, "config.json")) as f:
        fixture = json.load(f)
    cfg = LlamaConfig(vocab_size=fixture["vocab_size"], bos_token_id=fixture["bos_token_id"],
                      eos_token_id=fixture["eos_token_id"], max_position_embeddings=max_positions,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, rope_theta=500000.0,
                      **MODEL_SHAPE)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(FIXTURE_TOKENIZER, name), os.path.join(out, name))
    params = sum(p.numel() for p in model.parameters())
    return {"dir": out, "parameters": params, "vocab_size": cfg.vocab_size,
            "max_position_embeddings": max_positions, **MODEL_SHAPE}


ADAPTER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapters(model_dir, out_root, count, rank=16, seed=100):
    """Random PEFT LoRA adapters (rank `rank` on every linear of every layer) saved with
    save_pretrained as lora0..lora<count-1> under out_root; returns their names."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    names = []
    for i in range(count):
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=ADAPTER_TARGETS,
                         lora_dropout=0.0, task_type="CAUSAL_LM")
        model = get_peft_model(base, cfg)
        torch.manual_seed(seed + i)
        with torch.no_grad():  # PEFT initializes B to zero, which would be a no-op adapter
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.02)
        names.append(f"lora{i}")
        model.save_pretrained(os.path.join(out_root, names[-1]))
    return names


def hf_generate(model_dir, prompt_len, output_len, batch, cache, repeats, threads, seed=1,
                adapter_root="", adapters=()):
    """Times model.generate; returns end-to-end and decode-only output tokens/s. With
    adapters, the model is a PeftModel holding all of them and the batch's rows name them in
    turn (peft's mixed-adapter batches, `adapter_names`)."""
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, prompt_len), generator=g)
    mask = torch.ones_like(ids)
    kwargs = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
    if cache == "static":
        kwargs["cache_implementation"] = "static"
    if adapters:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, os.path.join(adapter_root, adapters[0]),
                                          adapter_name=adapters[0]).eval()
        for name in adapters[1:]:
            model.load_adapter(os.path.join(adapter_root, name), adapter_name=name)
        kwargs["adapter_names"] = [adapters[i % len(adapters)] for i in range(batch)]

    def run(n):
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n,
                                 min_new_tokens=n, **kwargs)
        dt = time.perf_counter() - t
        assert out.shape[1] == prompt_len + n, out.shape
        return dt

    run(2)  # warm-up (allocations, static cache setup)
    ttft = min(run(1) for _ in range(repeats))
    full = min(run(output_len) for _ in range(repeats))
    decode_s = max(full - ttft, 1e-9)
    engine = f"peft-{cache}" if adapters else f"transformers-{cache}"
    return {"engine": engine, "batch": batch, "prompt_len": prompt_len, "adapters": len(adapters),
            "output_len": output_len, "threads": threads, "repeats": repeats,
            "ttft_s": ttft, "total_s": full,
            "output_tok_s": batch * output_len / full,
            "decode_tok_s": batch * (output_len - 1) / decode_s,
            "load_avg": os.getloadavg()[0]}


class Kilnd:
    """A kilnd-like daemon (kilnd or kilnd_null) on loopback; stopped with SIGTERM."""

    def __init__(self, binary, flags=()):
        self.dir = tempfile.mkdtemp(prefix="kiln-bench-")
        self.ready = os.path.join(self.dir, "ready.json")
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", f"--ready_file={self.ready}", *flags],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not os.path.exists(self.ready):  # an external process: poll with a deadline
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("daemon did not start: " + self.tail())
            time.sleep(0.1)
        with open(self.ready) as f:
            r = json.load(f)
        self.port, self.pid = r["grpc_port"], r["pid"]

    def tail(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-2000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def loadgen(binary, port, name, label, extra, vocab_size=507):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [binary, f"--target=127.0.0.1:{port}", f"--model={name}", f"--label={label}",
           f"--json_out={out}", "--wait_ready_s=300", f"--vocab_size={vocab_size}", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(r.stdout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr}")
    with open(out) as f:
        report = json.load(f)
    os.unlink(out)
    report["command"] = " ".join(cmd).replace(REPO + os.sep, "")  # no machine paths in results
    return report


def kiln_workload(kilnd, lg, model_root, name, prompt_len, output_len, batch, threads,
                  adapter_root="", adapters=()):
    """With adapters, requests name them with equal weights (the loadgen's --adapters mix);
    the loadgen's warm-up requests attach them before the measured window."""
    flags = ["--metrics_listen=", f"--model_roots={model_root}", f"--preload={name}",
             f"--num_compute_threads={threads}"]
    extra = []
    if adapters:
        flags.append(f"--adapter_roots={adapter_root}")
        extra = ["--adapters=" + ",".join(f"{a}=1" for a in adapters)]
    server = Kilnd(kilnd, flags)
    try:
        rep = loadgen(lg, server.port, name, f"kiln c={batch}",
                      [f"--concurrency={batch}", f"--num_requests={batch * (2 if batch == 1 else 1)}",
                       f"--prompt_len={prompt_len}", f"--output_len={output_len}",
                       f"--warmup={max(1, len(adapters))}", "--duration_s=0", "--grace_s=900",
                       "--timeout_s=900", f"--server_pid={server.pid}", *extra])
    finally:
        server.stop()
    engine = "kiln+lora" if adapters else "kiln"
    if rep["errors"]:  # a failed request is a failed point, never a throughput figure
        return {"engine": engine, "batch": batch, "error": f"kiln errors {rep['errors']}",
                "loadgen": rep}
    return {"engine": engine, "batch": batch,
            "prompt_len": prompt_len, "output_len": output_len, "adapters": len(adapters),
            "output_tok_s": rep["output_throughput"],
            "decode_tok_s": batch * 1000.0 / rep["tpot_ms"]["mean"] if rep["tpot_ms"]["mean"] else 0,
            "ttft_s": rep["ttft_ms"]["p50"] / 1000.0, "errors": rep["errors"],
            "load_avg": rep["load_avg_start"], "loadgen": rep}


def ratio(a, b):
    return round(a / b, 3) if b else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make-model", "hf", "all"])
    ap.add_argument("--out", default="")
    ap.add_argument("--model", default="")
    ap.add_argument("--prompt_len", type=int, default=128)
    ap.add_argument("--output_len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--batched", type=int, default=32, help="the batched point (all)")
    ap.add_argument("--batched_output_len", type=int, default=32)
    ap.add_argument("--cache", default="dynamic", choices=["dynamic", "static"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--adapters", type=int, default=4,
                    help="LoRA adapters mixed in the batched adapter point (0: no adapter points)")
    ap.add_argument("--adapter_rank", type=int, default=16)
    ap.add_argument("--kilnd", default="")
    ap.add_argument("--loadgen", default="")
    ap.add_argument("--results", default=os.path.join(REPO, "bench/results"))
    ap.add_argument("--command", default="", help="the command line recorded in the results")
    a = ap.parse_args()

    if a.cmd == "make-model":
        print(json.dumps(make_model(a.out)))
        return
    if a.cmd == "hf":
        print(json.dumps(hf_generate(a.model, a.prompt_len, a.output_len, a.batch, a.cache,
                                     a.repeats, a.threads)))
        return

    # all: one run, same machine, interleaved so load drifts hit both sides alike.
    start = machine_info()
    work = tempfile.mkdtemp(prefix="kiln-peers-")
    root = os.path.join(work, "models")
    model = make_model(os.path.join(root, "llama100m"))
    rows = []
    for batch, out_len in ((1, a.output_len), (a.batched, a.batched_output_len)):
        rows.append(kiln_workload(a.kilnd, a.loadgen, root, "llama100m", a.prompt_len, out_len,
                                  batch, a.threads))
        for cache in ("dynamic", "static"):
            try:
                rows.append(hf_generate(model["dir"], a.prompt_len, out_len, batch, cache,
                                        a.repeats, a.threads))
            except Exception as e:  # a peer failing is a result, not a crash of the run
                rows.append({"engine": f"transformers-{cache}", "batch": batch,
                             "error": repr(e)[:300]})
    # LoRA: kiln serving PEFT adapters against peft on the same base, batch 1 with one adapter
    # and the batched point with --adapters distinct adapters mixed in every batch.
    adapter_root = os.path.join(work, "adapters")
    if a.adapters > 0:
        names = make_adapters(model["dir"], adapter_root, a.adapters, a.adapter_rank)
        for batch, out_len, used in ((1, a.output_len, names[:1]),
                                     (a.batched, a.batched_output_len, names)):
            rows.append(kiln_workload(a.kilnd, a.loadgen, root, "llama100m", a.prompt_len,
                                      out_len, batch, a.threads, adapter_root, used))
            try:
                rows.append(hf_generate(model["dir"], a.prompt_len, out_len, batch, "dynamic",
                                        a.repeats, a.threads, adapter_root=adapter_root,
                                        adapters=used))
            except Exception as e:  # a peer failing is a result, not a crash of the run
                rows.append({"engine": "peft-dynamic", "batch": batch, "error": repr(e)[:300]})
    shutil.rmtree(work, ignore_errors=True)

    def get(engine, batch, key):
        for r in rows:
            if r.get("engine") == engine and r.get("batch") == batch and key in r:
                return r[key]
        return 0.0

    best_batched = max(get("transformers-dynamic", a.batched, "output_tok_s"),
                       get("transformers-static", a.batched, "output_tok_s"))
    ratios = {
        "bs1_decode_kiln_over_hf_eager": ratio(get("kiln", 1, "decode_tok_s"),
                                               get("transformers-dynamic", 1, "decode_tok_s")),
        "bs1_e2e_kiln_over_hf_eager": ratio(get("kiln", 1, "output_tok_s"),
                                            get("transformers-dynamic", 1, "output_tok_s")),
        "bs1_decode_kiln_over_hf_static": ratio(get("kiln", 1, "decode_tok_s"),
                                                get("transformers-static", 1, "decode_tok_s")),
        f"c{a.batched}_kiln_over_hf_best_batched": ratio(get("kiln", a.batched, "output_tok_s"),
                                                         best_batched),
        f"c{a.batched}_decode_kiln_over_hf_best_batched": ratio(
            get("kiln", a.batched, "decode_tok_s"),
            max(get("transformers-dynamic", a.batched, "decode_tok_s"),
                get("transformers-static", a.batched, "decode_tok_s"))),
    }
    if a.adapters > 0:
        ratios["bs1_lora_decode_kiln_over_peft"] = ratio(get("kiln+lora", 1, "decode_tok_s"),
                                                         get("peft-dynamic", 1, "decode_tok_s"))
        ratios[f"c{a.batched}_lora{a.adapters}_kiln_over_peft"] = ratio(
            get("kiln+lora", a.batched, "output_tok_s"), get("peft-dynamic", a.batched, "output_tok_s"))
    targets = {"bs1_decode_kiln_over_hf_eager": 2.0,
               f"c{a.batched}_kiln_over_hf_best_batched": 5.0}
    kv = subprocess.run([a.kilnd, "--version"], capture_output=True, text=True)
    # The binary as a path inside the checkout: results are committed, machine paths are not.
    binary = os.path.relpath(a.kilnd, REPO) if os.path.abspath(a.kilnd).startswith(REPO + os.sep) \
        else os.path.basename(a.kilnd)
    start["kilnd"] = f"{binary}: {(kv.stdout or kv.stderr).strip()}"
    result = {"benchmark": "peers", "machine": start, "load_avg_end": list(os.getloadavg()),
              "command": a.command, "model": model, "rows": rows, "ratios": ratios,
              "adapter_rank": a.adapter_rank if a.adapters > 0 else None,
              "targets": targets,
              "llama_cpp": "skipped: Debian 12 has no llama.cpp/ggml package (apt-cache policy "
                           "llama.cpp: no candidate)"}
    write_results(a.results, "peers", result, peers_markdown(result, a.batched))


def peers_markdown(r, batched):
    m = r["machine"]
    lines = [f"# peers run ({time.strftime('%Y-%m-%d %H:%M:%S')})", "",
             f"- machine: {m.get('cpu_model', '?')}, nproc {m['nproc']}, load average at start "
             f"{m['load_avg'][0]:.2f} / end {r['load_avg_end'][0]:.2f} "
             "(**shared machine: other engineers compiling**)",
             f"- commit {m['commit']}; command: `{r['command']}`",
             f"- kilnd binary: {m.get('kilnd', '?')}",
             f"- model: Llama-shaped, {r['model']['parameters'] / 1e6:.1f}M parameters, fp32, "
             f"random weights, vocab {r['model']['vocab_size']}", "",
             *([f"- LoRA rows: random PEFT adapters of rank {r['adapter_rank']} on q/k/v/o and "
                "the MLP of every layer; batch 1 uses one adapter, the batched point mixes all of "
                "them in every batch (kiln: the loadgen's equal-weight mix; peft: "
                "`adapter_names`, rows in turn)"] if r.get("adapter_rank") else []), "",
             "| engine | batch | adapters | prompt→out | output tok/s (e2e) | decode tok/s | TTFT s | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        if "error" in row:
            lines.append(f"| {row['engine']} | {row['batch']} | | – | error: {row['error']} | | | |")
            continue
        lines.append(f"| {row['engine']} | {row['batch']} | {row.get('adapters', 0)} "
                     f"| {row['prompt_len']}→{row['output_len']} "
                     f"| {row['output_tok_s']:.1f} | {row['decode_tok_s']:.1f} | "
                     f"{row['ttft_s']:.3f} | {row['load_avg']:.2f} |")
    lines += ["", "| ratio | value | target |", "|---|---|---|"]
    for k, v in r["ratios"].items():
        lines.append(f"| {k} | {v} | {r['targets'].get(k, '')} |")
    lines += ["", f"llama.cpp: {r['llama_cpp']}", ""]
    return "\n".join(lines)


def write_results(results_dir, kind, result, markdown, stamp=None):
    os.makedirs(results_dir, exist_ok=True)
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(results_dir, f"{stamp}-{kind}")
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=2)
    with open(base + ".md", "w") as f:
        f.write(markdown)
    print(markdown)
    print(f"wrote {base}.json and {base}.md")
    update_latest(results_dir)


def summary_rows(results_dir, kinds):
    """The issue-11 targets against the newest runs."""
    def load(kind):
        if kind not in kinds:
            return None
        with open(os.path.join(results_dir, kinds[kind][:-3] + ".json")) as f:
            return json.load(f)
    rows = ["## Summary against the issue-11 targets", "",
            "| metric | value | target | run (load avg at start, nproc) |", "|---|---|---|---|"]
    peers_r = load("peers")
    if peers_r:
        tag = f"{kinds['peers']} ({peers_r['machine']['load_avg'][0]:.1f}, {peers_r['machine']['nproc']})"
        for k, v in peers_r["ratios"].items():
            rows.append(f"| {k} | {v} | {peers_r['targets'].get(k, '–')} | {tag} |")
    over = load("overhead")
    if over:
        tag = f"{kinds['overhead']} ({over['machine']['load_avg'][0]:.1f}, {over['machine']['nproc']})"
        for r in over["rows"]:
            rows.append(f"| streamed tokens per server CPU-s, {r['mode']} | "
                        f"{r['output_tok_per_server_cpu_s']:.0f} | 50000 | {tag} |")
            rows.append(f"| added TTFT p50 (c=1), {r['mode']} | {r['ttft_c1_p50_ms']:.3f} ms | – | {tag} |")
    return rows + [""]


def update_latest(results_dir):
    """LATEST.md: the newest result of each kind, inlined, with links to the files."""
    kinds = {}
    for name in sorted(os.listdir(results_dir)):
        if name.endswith(".md") and name != "LATEST.md" and "-" in name:
            kinds[name[:-3].rsplit("-", 1)[1]] = name  # sorted: the last one is the newest
    parts = ["# Latest benchmark results", "",
             "Generated by the bench drivers; each section is the newest run of that benchmark. "
             "Numbers taken on a shared, loaded machine are labelled with the load average.", ""]
    parts += summary_rows(results_dir, kinds)
    for kind in ("peers", "overhead", "scaling"):
        if kind not in kinds:
            continue
        with open(os.path.join(results_dir, kinds[kind])) as f:
            body = f.read().replace("\n# ", "\n### ", 1)
        if body.startswith("# "):
            body = "##" + body[1:]
        parts += [f"[{kinds[kind]}]({kinds[kind]}) · [json]({kinds[kind][:-3]}.json)", "", body, ""]
    others = [n for n in sorted(os.listdir(results_dir))
              if n.endswith(".md") and n != "LATEST.md"
              and n not in [kinds.get(k) for k in ("peers", "overhead", "scaling")]]
    if others:
        parts += ["## Other results in this folder", ""] + [f"- [{n}]({n})" for n in others]
    with open(os.path.join(results_dir, "LATEST.md"), "w") as f:
        f.write("\n".join(parts))


if __name__ == "__main__":
    main()
