"""Regenerates the interoperability fixtures with the reference stack (safetensors 0.8,
transformers 5.23, torch):

    .venv-fixtures/bin/python tests/engine/io/testdata/make_testdata.py

- interop.safetensors: written by safetensors.torch.save_file (several dtypes, a 0-rank scalar,
  a zero-size tensor, __metadata__). Values are arange-based so the C++ test can check bytes.
- tiny_llama_sharded/: LlamaForCausalLM(...).save_pretrained(max_shard_size="4KB") in bfloat16:
  model.safetensors.index.json + shards, as transformers writes them.
It prints the facts the C++ tests assert (tensor counts, transformers' auto dtype).
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_utils import get_state_dict_dtype, load_state_dict

HERE = os.path.dirname(os.path.abspath(__file__))

tensors = {
    # Header order (by dtype alignment, then name) puts "b.f32" first; safe_open().keys() is
    # sorted, so transformers' first floating-point weight is "a.bf16" -> bfloat16.
    "a.bf16": torch.arange(4, dtype=torch.float32).to(torch.bfloat16),
    "b.f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
    "c.i64": torch.tensor(7, dtype=torch.int64),
    "d.empty": torch.zeros(0, 3, dtype=torch.float16),
    "e.u8": torch.arange(5, dtype=torch.uint8),
    "f.f16": torch.tensor([1.5, -2.0], dtype=torch.float16),
}
path = os.path.join(HERE, "interop.safetensors")
save_file(tensors, path, metadata={"format": "pt", "note": "kiln interop"})
print("interop auto dtype:", get_state_dict_dtype(load_state_dict(path, map_location="meta")))

out = os.path.join(HERE, "tiny_llama_sharded")
shutil.rmtree(out, ignore_errors=True)
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
model = LlamaForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained(out, max_shard_size="4KB")
index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
print("shards:", sorted(set(index["weight_map"].values())), "tensors:", len(index["weight_map"]))
for f in sorted(os.listdir(out)):
    print(f, os.path.getsize(os.path.join(out, f)))
