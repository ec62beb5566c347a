#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ (small, hand-picked inputs:
valid documents from the golden fixtures plus the hostile cases of reliability.md §7 A/B).
Files found by fuzzing (crash-*, regress-*) are added by hand and never rewritten here.
Run: python3 tests/fuzz/make_corpus.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(ROOT, "tests", "golden", "fixtures", "models")


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(model, name):
    with open(os.path.join(FIX, model, name), "rb") as f:
        return f.read()


# --- safetensors_header_fuzz: [size selector][header] (selector 4 -> 8 bytes, 6 -> 16) ---
t = "safetensors_header_fuzz"
put(t, "valid_two", bytes([6]) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
    b'"b":{"dtype":"F16","shape":[2,3],"data_offsets":[4,16]}}')
put(t, "valid_meta_padded", bytes([4]) + b'{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16",'
    b'"shape":[4],"data_offsets":[0,8]}}    ')
put(t, "scalar_and_empty", bytes([2]) + b'{"s":{"dtype":"U8","shape":[],"data_offsets":[0,1]},'
    b'"e":{"dtype":"F32","shape":[0,5],"data_offsets":[1,1]},"t":{"dtype":"I8","shape":[1],'
    b'"data_offsets":[1,2]}}')
put(t, "dup_key", bytes([4]) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
    b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}')
put(t, "overlap", bytes([4]) + b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
    b'"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}')
put(t, "hole", bytes([6]) + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
    b'"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}')
put(t, "shape_overflow", bytes([4]) + b'{"a":{"dtype":"F32","shape":[4294967296,4294967296,'
    b'4294967296],"data_offsets":[0,8]}}')
put(t, "offsets_float_neg_big", bytes([4]) + b'{"a":{"dtype":"F32","shape":[2],"data_offsets":'
    b'[0.0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[-1,18446744073709551616]}}')
put(t, "rank9", bytes([4]) + b'{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,8],"data_offsets":[0,8]}}')
put(t, "unknown_dtype_field", bytes([4]) + b'{"a":{"dtype":"F64X","shape":[1],"data_offsets":'
    b'[0,8],"extra":1}}')
put(t, "metadata_nested", bytes([0]) + b'{"__metadata__":{"k":{"n":1}}}')
put(t, "not_object_bom", bytes([0]) + b'\xef\xbb\xbf{}')
put(t, "tab_padding_nul", bytes([0]) + b'{}\t\x00')
put(t, "invalid_utf8_name", bytes([4]) + b'{"\xff\xfe":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}')
put(t, "deep", bytes([0]) + b'{"a":' + b'[' * 300 + b']' * 300 + b'}')
put(t, "trailing_bytes", bytes([9]) + b'{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}')

# --- checkpoint_index_fuzz: the index text ---
t = "checkpoint_index_fuzz"
put(t, "valid", json.dumps({"metadata": {"total_size": 8},
                            "weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}))
put(t, "dotdot", json.dumps({"weight_map": {"x": "../outside.safetensors", "y": "b.safetensors"}}))
put(t, "absolute", json.dumps({"weight_map": {"x": "/etc/passwd", "y": "b.safetensors"}}))
put(t, "symlink_escape", json.dumps({"weight_map": {"z": "out.safetensors", "x": "a.safetensors",
                                                    "y": "b.safetensors"}}))
put(t, "missing_shard", json.dumps({"weight_map": {"x": "c.safetensors"}}))
put(t, "tensor_missing", json.dumps({"weight_map": {"x": "a.safetensors", "q": "a.safetensors",
                                                    "y": "b.safetensors"}}))
put(t, "extra_tensor", json.dumps({"weight_map": {"x": "a.safetensors"}}))
put(t, "two_shards", json.dumps({"weight_map": {"x": "b.safetensors", "y": "b.safetensors"}}))
put(t, "case_collision", json.dumps({"weight_map": {"x": "a.safetensors", "y": "A.safetensors"}}))
put(t, "backslash_nul", '{"weight_map":{"x":"..\\\\a.safetensors","y":"b\\u0000.safetensors"}}')
put(t, "percent", json.dumps({"weight_map": {"x": "%2e%2e%2fa.safetensors"}}))
put(t, "fullwidth", json.dumps({"weight_map": {"x": "\uff0e\uff0e\uff0fa.safetensors"}}))
put(t, "not_object", '["a.safetensors"]')
put(t, "weight_map_types", '{"weight_map":{"x":1,"y":null},"metadata":[1]}')
put(t, "deep", '{"weight_map":' + '[' * 50 + ']' * 50 + '}')

# --- json_util_fuzz: [max depth byte][text] ---
t = "json_util_fuzz"
put(t, "object", bytes([63]) + b'{"a":1,"b":[1,2,3],"c":"4096","d":4096.0,"e":true,"f":null,"g":-3}')
put(t, "dup", bytes([63]) + b'{"a":1,"a":2}')
put(t, "deep_brackets_in_string", bytes([3]) + b'{"a":"[[[[[[[[[[","b":[[1]]}')
put(t, "too_deep", bytes([5]) + b'[[[[[[[[[[[[]]]]]]]]]]]]')
put(t, "bad_utf8", bytes([63]) + b'{"a":"\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80"}')
put(t, "escapes", bytes([63]) + b'{"\\u0000k":"\\ud800","n":1e400,"m":-0}')
put(t, "unbalanced", bytes([63]) + b']]]{{{')
put(t, "big_ints", bytes([63]) + b'{"a":18446744073709551615,"b":-9223372036854775808,"c":9223372036854775808}')

# --- model_name_fuzz: [revision length][revision][name] ---
t = "model_name_fuzz"
def name_case(fname, name, rev=b""):
    put(t, fname, bytes([len(rev)]) + rev + name.encode("utf-8", "surrogatepass"))
name_case("plain", "m")
name_case("org", "org/m")
name_case("dotdot", "../x")
name_case("abs", "/etc")
name_case("mid_dotdot", "a/../../b")
name_case("percent", "%2e%2e%2fx")
name_case("fullwidth", "\uff0e\uff0e\uff0fx")
name_case("nul", "m\x00x")
name_case("long", "a" * 4096)
name_case("double_dash", "a--b")
name_case("git", "x.git")
name_case("trailing_dot", "m.")
name_case("leading_dash", "-m")
name_case("case", "M")
name_case("symlink_out", "esc")
name_case("rev_hash", "org/m", b"0123456789abcdef0123456789abcdef01234567")
name_case("rev_traversal", "org/m", b"../../etc")
name_case("hub_like", "org/unknown", b"main")
name_case("five_parts", "a/b/c/d/e")

# --- model_config_fuzz / generation_config_fuzz / tokenizer_json_fuzz: fixtures + hostile ---
for m in sorted(os.listdir(FIX)):
    put("model_config_fuzz", m, fixture(m, "config.json"))
    if os.path.exists(os.path.join(FIX, m, "generation_config.json")):
        put("generation_config_fuzz", m, fixture(m, "generation_config.json"))
base = json.loads(fixture("llama_tiny", "config.json"))
def cfg(name, **kw):
    c = dict(base)
    for k, v in kw.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    put("model_config_fuzz", name, json.dumps(c))
cfg("string_size", hidden_size="4096")
cfg("zero_heads", num_attention_heads=0)
cfg("heads_not_divisor", num_attention_heads=7)
cfg("kv_not_divisor", num_key_value_heads=3)
cfg("huge_positions", max_position_embeddings=10**12)
cfg("rope_nan", rope_scaling={"type": "linear", "factor": float("nan")})
cfg("rope_unknown", rope_scaling={"rope_type": "weird", "factor": 2.0})
cfg("rope_negative", rope_scaling={"rope_type": "yarn", "factor": -2.0})
cfg("arch_unknown", architectures=["EvilForCausalLM"])
cfg("auto_map", auto_map={"AutoModelForCausalLM": "evil.Model"})
cfg("missing_vocab", vocab_size=None)
cfg("float_layers", num_hidden_layers=2.5)
cfg("huge_all", hidden_size=2**20, num_attention_heads=4096, num_hidden_layers=4096,
    num_key_value_heads=4096, intermediate_size=2**40, vocab_size=2**24)
cfg("head_dim_huge", head_dim=2**40)
cfg("layer_types_bad", layer_types=["sliding_attention"], sliding_window=-1)
put("model_config_fuzz", "deep", '{"a":' + '[' * 1000 + ']' * 1000 + '}')
put("model_config_fuzz", "dup_keys", '{"vocab_size":10,"vocab_size":20}')
g = "generation_config_fuzz"
put(g, "bad_values", '{"temperature":-1,"top_p":1.5,"top_k":-5,"max_new_tokens":0}')
put(g, "types", '{"temperature":"0.7","eos_token_id":[1,"2"],"do_sample":1}')
put(g, "nan", '{"temperature":NaN,"repetition_penalty":0}')
put(g, "huge", '{"eos_token_id":[18446744073709551615,-1],"max_length":1e300}')
put(g, "empty", '{}')
put(g, "null", '{"temperature":null,"eos_token_id":null}')
t = "tokenizer_json_fuzz"
for m in ("gpt2_tiny", "llama_tiny"):
    put(t, m, bytes([0]) + fixture(m, "tokenizer.json"))
tiny = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
put(t, "tiny_bpe", bytes([1]) + json.dumps(tiny).encode())
evil = json.loads(json.dumps(tiny))
evil["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a+)+$"},
                         "behavior": "Isolated", "invert": False}
put(t, "redos_split", bytes([1]) + json.dumps(evil).encode())
evil = json.loads(json.dumps(tiny))
evil["model"]["vocab"] = {"a": 0, "b": 0, "<0x-1>": 5, "<0xZZ>": 7}
evil["model"]["merges"] = ["a q", "x y"]
evil["added_tokens"] = [{"id": 99999999, "content": "<s>", "single_word": False,
                         "lstrip": False, "rstrip": False, "normalized": False, "special": True}]
put(t, "bad_vocab", bytes([2]) + json.dumps(evil).encode())
evil = json.loads(json.dumps(tiny))
evil["normalizer"] = {"type": "Replace", "pattern": {"Regex": "(?<=a)b"}, "content": "x"}
evil["decoder"] = {"type": "Replace", "pattern": {"String": ""}, "content": "yy"}
put(t, "lookbehind_empty_replace", bytes([1]) + json.dumps(evil).encode())
put(t, "deep", bytes([0]) + b'{"model":' + b'[' * 200 + b']' * 200 + b'}')

# --- tokenizer_encode_fuzz: [flags][text] ---
t = "tokenizer_encode_fuzz"
for i, text in enumerate(["Hello world", "  leading spaces\ttabs\n\nnewlines",
                          "\u4f60\u597d\U0001F600 caf\u00e9", "<|endoftext|>x<|endoftext|>",
                          "<s> </s> <unk>", "a" * 300 + "b", "\u180e\u00a0\u2028x"]):
    put(t, f"text{i}_gpt2", bytes([0]) + text.encode())
    put(t, f"text{i}_llama", bytes([3]) + text.encode())
put(t, "invalid_utf8", bytes([0]) + b"ab\xff\xc3(")
put(t, "nul", bytes([1]) + b"a\x00b")

# --- sampling_params_fuzz: structured bytes; a few seeds of each shape ---
t = "sampling_params_fuzz"
put(t, "zeros", bytes(64))
put(t, "ones", bytes([1] * 160))
put(t, "ff", bytes([0xff] * 160))
put(t, "mixed", bytes(range(256)))
put(t, "stops", bytes([7, 0, 0, 0, 0, 0, 0, 0] + [1, 4] * 20 + [3, 5, 120, 121, 122] * 10))

# --- detok_stop_fuzz: [flags][n stops][stops...][u16 ids] ---
t = "detok_stop_fuzz"
import random
rng = random.Random(10)
for i in range(8):
    flags = i
    stops = bytes([2, 1, ord(" "), 2, ord("e"), ord("r")])
    ids = b"".join(struct.pack("<H", rng.randrange(0, 300)) for _ in range(rng.randrange(5, 60)))
    put(t, f"random{i}", bytes([flags]) + stops + (bytes([rng.randrange(0, 8)]) if flags & 8 else b"") + ids)
# byte-fallback runs (<0xE4><0xBD><0xA0> is 3..258 in llama's vocab: ids 3 + byte)
put(t, "bytes_run", bytes([0, 0]) + b"".join(struct.pack("<H", 3 + b) for b in "\u4f60\U0001F600".encode()))
put(t, "bytes_cut", bytes([0, 0]) + b"".join(struct.pack("<H", 3 + b) for b in b"\xe4\xbd" * 40))
put(t, "out_of_range", bytes([1, 0]) + struct.pack("<HHHH", 65535, 1000, 1003, 2))
