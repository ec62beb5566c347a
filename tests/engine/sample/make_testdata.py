#!/usr/bin/env python3
"""Reference outputs for kiln's logits pipeline, from transformers' own LogitsProcessors.

Run with the reference stack (torch 2.15, transformers 5.23):
    .venv-fixtures/bin/python tests/engine/sample/make_testdata.py

For many parameter combinations it draws seeded random logits, builds the processor list with
transformers' `GenerationMixin._get_logits_processor` (so both the classes and generate()'s
ORDER come from transformers: RepetitionPenalty, MinNewTokensLength, then Temperature, TopK,
TopP, MinP when sampling), applies it to input_ids = prompt + generated, and records the
processed logits. Presence/frequency penalties are not in transformers: they are applied with
vLLM's formula (logits -= frequency * count; logits -= presence * (count > 0), generated tokens
only) right after the repetition penalty, which is where kiln applies them.

Writes testdata/pipeline_cases.json (parameters, offsets) and testdata/pipeline_cases.f32
(little-endian float32: each case's input logits then expected logits; -inf stays -inf).

Cases whose top_p / min_p decision lies within 1e-5 of its threshold are redrawn: torch's
float32 softmax and kiln's double sums may round differently there. So are cases where the
top_p boundary cuts through exactly tied logits: torch.sort is unstable and which tie
transformers keeps depends on the vector length (kiln keeps the lower ids, documented).
"""

import json
import math
import os
import warnings

import numpy as np
import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import MinPLogitsWarper, TopPLogitsWarper

warnings.filterwarnings("ignore")
torch.manual_seed(0)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "testdata")
MARGIN = 1e-5

# Any causal LM gives access to generate()'s processor assembly; weights are irrelevant.
MODEL = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=2))


def f32(x):
    return float(np.float32(x))


class PresenceFrequencyPenalty:
    """vLLM's apply_penalties (frequency, then presence) over generated tokens."""

    def __init__(self, prompt_len, presence, frequency):
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids, scores):
        gen = input_ids[0, self.prompt_len:]
        counts = torch.bincount(gen, minlength=scores.shape[-1]).to(torch.float32)[None, :]
        scores = scores - torch.tensor(self.frequency, dtype=torch.float32) * counts
        scores = scores - torch.tensor(self.presence, dtype=torch.float32) * (counts > 0).float()
        return scores


def processors(p, prompt_len):
    gc = GenerationConfig(do_sample=not p["greedy"], temperature=p["temperature"],
                          top_k=p["top_k"], top_p=p["top_p"],
                          min_p=p["min_p"] if p["min_p"] > 0 else None,
                          repetition_penalty=p["repetition_penalty"],
                          min_new_tokens=p["min_new_tokens"])
    gc.update(**gc._get_default_generation_params(), defaults_only=True)
    gc._eos_token_tensor = torch.tensor(p["suppressed_ids"]) if p["suppressed_ids"] else None
    procs = list(MODEL._get_logits_processor(gc, input_ids_seq_length=prompt_len, device="cpu",
                                             model_kwargs={}))
    if p["presence_penalty"] != 0 or p["frequency_penalty"] != 0:
        names = [type(x).__name__ for x in procs]
        at = names.index("RepetitionPenaltyLogitsProcessor") + 1 if (
            "RepetitionPenaltyLogitsProcessor" in names) else 0
        procs.insert(at, PresenceFrequencyPenalty(prompt_len, p["presence_penalty"],
                                                  p["frequency_penalty"]))
    return procs


def top_p_margin_ok(scores, top_p):
    s = scores.astype(np.float64)
    finite = np.isfinite(s)
    ids = np.nonzero(finite)[0]
    vals = s[ids]
    order = np.lexsort((ids, -vals))  # descending value, ascending id
    vals, ids = vals[order], ids[order]
    w = np.exp(vals - vals[0])
    bottom = np.cumsum(w[::-1])[::-1] / w.sum()  # mass at or after each rank
    thr = 1.0 - top_p
    if len(bottom) > 1 and np.min(np.abs(bottom[1:] - thr)) < MARGIN:
        return False
    cut = next((r for r in range(1, len(bottom)) if bottom[r] <= thr), None)
    if cut is not None and vals[cut - 1] == vals[cut]:
        return False  # the boundary splits exact ties
    return True


def min_p_margin_ok(scores, min_p):
    s = scores.astype(np.float64)
    s = s[np.isfinite(s)]
    ratio = np.exp(s - s.max())
    return np.min(np.abs(ratio - min_p)) >= MARGIN * max(min_p, 1e-3)


def run(p, logits, prompt, generated):
    """Returns the expected logits, or None when a decision is too close to call."""
    input_ids = torch.tensor([prompt + generated], dtype=torch.long)
    scores = torch.tensor(logits, dtype=torch.float32)[None, :]
    names = []
    for proc in processors(p, len(prompt)):
        names.append(type(proc).__name__)
        if isinstance(proc, TopPLogitsWarper) and not top_p_margin_ok(scores[0].numpy(),
                                                                       proc.top_p):
            return None, names
        if isinstance(proc, MinPLogitsWarper) and not min_p_margin_ok(scores[0].numpy(),
                                                                       proc.min_p):
            return None, names
        scores = proc(input_ids, scores)
    return scores[0].numpy().astype(np.float32), names


def draw_params(rng, kind, vocab):
    p = dict(greedy=False, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
             repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
             min_new_tokens=0, suppressed_ids=[])
    choice = lambda xs: xs[int(rng.integers(len(xs)))]
    if kind == "greedy":
        p["greedy"] = True
        p["repetition_penalty"] = choice([1.0, 1.3, 0.7, 2.5])
        p["presence_penalty"] = choice([0.0, 0.5, -1.0])
        p["frequency_penalty"] = choice([0.0, 0.3, -0.4, 2.0])
    elif kind == "temperature":
        p["temperature"] = choice([0.05, 0.5, 0.7, 1.7, 3.3, 100.0])
    elif kind == "top_k":
        p["top_k"] = choice([1, 2, 5, 40, vocab - 1])
    elif kind == "top_p":
        p["top_p"] = choice([0.05, 0.3, 0.5, 0.9, 0.95, 0.999])
    elif kind == "min_p":
        p["min_p"] = choice([0.01, 0.05, 0.2, 0.5, 1.0])
    elif kind == "min_new_tokens":
        p["min_new_tokens"] = choice([1, 3, 8])
        p["repetition_penalty"] = choice([1.0, 1.2])
    elif kind in ("combo", "ties", "large"):
        p["temperature"] = choice([0.6, 0.8, 1.0, 1.3])
        p["top_k"] = choice([0, 3, 10, 50])
        p["top_p"] = choice([1.0, 0.8, 0.9, 0.95])
        p["min_p"] = choice([0.0, 0.02, 0.1])
        p["repetition_penalty"] = choice([1.0, 1.1, 1.5])
        p["presence_penalty"] = choice([0.0, 0.4])
        p["frequency_penalty"] = choice([0.0, 0.25])
        p["min_new_tokens"] = choice([0, 0, 2, 5])
        if kind == "large":
            p["top_k"] = 0
            p["top_p"] = choice([0.9, 0.95])
    if p["min_new_tokens"] > 0 or rng.random() < 0.3:
        p["suppressed_ids"] = sorted(set(int(x) for x in rng.integers(0, vocab, 2)))
    # Parameters travel as float32, as they do in kiln's API.
    for key in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                "frequency_penalty"):
        p[key] = f32(p[key])
    return p


def draw_logits(rng, kind, vocab):
    if kind == "ties":
        return (rng.integers(-4, 5, vocab) / 2.0).astype(np.float32)
    scale = float(rng.choice([0.5, 2.0, 5.0]))
    x = (rng.standard_normal(vocab) * scale).astype(np.float32)
    if rng.random() < 0.2:
        x[rng.integers(0, vocab)] = -np.inf  # a masked vocabulary row
    return x


def main():
    rng = np.random.default_rng(20240611)
    plan = ([("greedy", 12), ("temperature", 8), ("top_k", 10), ("top_p", 14), ("min_p", 10),
             ("min_new_tokens", 8), ("combo", 40), ("ties", 12), ("large", 3)])
    cases, blob, offset = [], [], 0
    for kind, count in plan:
        made = 0
        while made < count:
            vocab = 4096 if kind == "large" else int(rng.choice([7, 32, 100, 257]))
            p = draw_params(rng, kind, vocab)
            prompt = [int(x) for x in rng.integers(0, vocab, int(rng.integers(1, 8)))]
            generated = [int(x) for x in rng.integers(0, vocab, int(rng.integers(0, 10)))]
            for _ in range(200):
                logits = draw_logits(rng, kind, vocab)
                expected, names = run(p, logits, prompt, generated)
                if expected is not None:
                    break
            else:
                continue  # this parameter set keeps landing on a threshold; draw another
            if not np.isfinite(expected).any():
                continue
            cases.append(dict(name=f"{kind}_{made}", vocab=vocab, prompt=prompt,
                              generated=generated, offset=offset, pipeline=names, **p))
            blob.append(logits.astype("<f4"))
            blob.append(expected.astype("<f4"))
            offset += 2 * vocab
            made += 1
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "pipeline_cases.f32"), "wb") as f:
        f.write(np.concatenate(blob).tobytes())
    meta = dict(generator="tests/engine/sample/make_testdata.py",
                torch=torch.__version__, transformers=__import__("transformers").__version__,
                cases=cases)
    with open(os.path.join(OUT_DIR, "pipeline_cases.json"), "w") as f:
        head = {k: v for k, v in meta.items() if k != "cases"}
        f.write(json.dumps(head)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c) for c in cases))
        f.write("\n]}\n")
    print(f"{len(cases)} cases, {offset * 4} bytes of logits")


if __name__ == "__main__":
    main()
