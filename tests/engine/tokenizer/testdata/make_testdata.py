#!/usr/bin/env python3
"""Regenerates the tokenizer test data under tests/engine/tokenizer/testdata/.

Run with the reference stack (tokenizers 0.23.3, transformers 5.23):
    .venv-fixtures/bin/python tests/engine/tokenizer/testdata/make_testdata.py

For each family it trains a tiny BPE tokenizer with that family's real pipeline, writes
<family>/tokenizer.json + <family>/tokenizer_config.json, and records reference outputs in
<family>/reference.json:
  "raw":  tokenizers.Tokenizer.from_file(tokenizer.json)            -> kiln Tokenizer::FromJson
  "auto": transformers.AutoTokenizer.from_pretrained(<family dir>)  -> kiln Tokenizer::FromDirectory
Each holds, per corpus string, ids with and without special tokens, and decodes; plus decodes
of crafted id sequences (partial UTF-8 byte tokens, specials in the middle).
Everything is deterministic: running it twice gives identical files.
"""
import json
import os
import random

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_corpus():
    rng = random.Random(1234)
    words = ("the of and to in is was for that with as on by he it at from his an were are which this be "
             "or has had first one their its new after but who not they have her she two been other when "
             "there all during into school time may years more most only over city some world would where "
             "later up such used many can state about national out known university united then made "
             "hello world tokenizer token model language python return value function number").split()
    lines = []
    for _ in range(600):
        n = rng.randint(3, 14)
        s = " ".join(rng.choice(words) for _ in range(n))
        if rng.random() < 0.3:
            s = s.capitalize() + "."
        if rng.random() < 0.2:
            s += " " + str(rng.randint(0, 99999))
        if rng.random() < 0.1:
            s += "\n    return x + 1\n"
        lines.append(s)
    lines += ["I'm here, it's fine; we'll see what they've done.", "日本語のテキストです。", "中文文本。",
              "naïve café résumé", "def foo(x):\n\treturn x", "    indented\n\n", "1,000,000 3.14"] * 5
    return lines


def hard_strings(bos, eos, extra_special):
    s = [
        "", " ", "  ", "\n", "Hello world", " Hello world", "Hello  world", "hello\tworld\n",
        "line1\r\nline2\r\n\r\nline3", "\n\n\nx\n", "   leading and trailing   ",
        "1234567890 12 3.14159 1,000,000 2024-01-02", "I'm can't won't they'll we've she'd you're",
        "IT'S SHOUTING AND 'S 'T", "日本語のテキスト、中文文本。", "한국어 텍스트", "مرحبا بالعالم", "हिन्दी भाषा",
        "emoji 😀 family 👨\u200d👩\u200d👧\u200d👦 flag 🇫🇷 skin 👍🏽 coder 🧑🏻\u200d💻",
        "combining: e\u0301 a\u0308 n\u0303 vs \u00e9 \u00e4 \u00f1", "Ａｂｃ fullwidth １２３ ﬁ ligature",
        "\u00a0nbsp\u2009thin\u3000ideographic", "zero\u200bwidth\u200djoiner\ufeffbom",
        "tabs\t\t\tand spaces    mixed \t \n", "def foo(x):\n    return x**2  # comment\n",
        "naïve café résumé", "Ω≈ç√∫˜µ≤≥÷ ŉ İstanbul ǅ ß ẞ", "...!!!???,,, $$$ %%% ^^^ ~~~",
        "x" + " " * 20 + "y", "\u2028line sep\u2029para sep\u0085nel", "supercalifragilisticexpialidocious" * 4,
        "a" * 300, "the the the the the", "hello world tokenizer model", "\u0000nul\u0001ctl\u007f",
        "\U0001F600" * 5, "a\u0301\u0302\u0303\u0304 stacked", "\ud7ff\ue000\uffff end",
        f"{bos}special at start", f"text with {bos} and {eos} inside", f"{eos}", f"a{eos}b",
        f" {eos} ", f"{eos}{eos}", f"{extra_special} x {extra_special}y",
        f"<{eos}>", f"{eos[:-1]}",
        "word", "a word here", "sword words", "word_x x_word", "\u00e9word word2 2word", "<mask> x  <mask>",
        "[R]  y [R]", "Hello hello HELLO", "tokenizer model tokenizer  model", "wo wow two", "  <mask>",
        "\u0130I\u0131i \u03a3\u03c3\u03c2 \u212a", "a \u202f\u180e\r\u1680 b\u180e  \u180e", "'s's'S 'LL 'Ll", "x\u00ad\u034fy",
        mixed_text(),
    ]
    return s


def mixed_text():
    rng = random.Random(99)
    pieces = ["the", " model", "日本", "😀", "\n", "  ", "\t", "123", "4567", "é", "e\u0301", "'s", "!?", "\r\n",
              " 👨\u200d👩\u200d👧", "Ω", "x", "_", "-", "(", ")", ".", ",", "\u00a0", "한", "ไ"]
    return "".join(rng.choice(pieces) for _ in range(700))


def train(pipeline_tok, specials, vocab_size, byte_level):
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [])
    pipeline_tok.train_from_iterator(training_corpus(), trainer=trainer)
    return json.loads(pipeline_tok.to_str())


def byte_level_family(name, pre_tok, normalizer, ignore_merges, specials, post):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    data = train(tok, specials, 600, byte_level=True)
    data["post_processor"] = post
    return data


def llama_family(legacy_normalizer):
    """SentencePiece-style BPE: <unk>,<s>,</s>, then 256 byte tokens in the model vocab."""
    tok = Tokenizer(models.BPE(byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
    if legacy_normalizer:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    data = train(tok, ["<unk>", "<s>", "</s>"] + byte_tokens, 700, byte_level=False)
    # Byte tokens belong to the model vocab, not the added vocabulary (as in Llama-2).
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    data["post_processor"] = json.loads(processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]).__getstate__())
    return data


def add_tokens(data, toks):
    """Adds added tokens through the tokenizers library so ids are what it assigns."""
    tok = Tokenizer.from_str(json.dumps(data))
    for t in toks:
        tok.add_tokens([AddedToken(t["content"], single_word=t.get("single_word", False),
                                   lstrip=t.get("lstrip", False), rstrip=t.get("rstrip", False),
                                   normalized=t.get("normalized", False), special=t.get("special", True))])
    data.clear()
    data.update(json.loads(tok.to_str()))


def families():
    out = {}
    # GPT-2: ByteLevel pre-tokenizer with its own regex, ByteLevel post-processor.
    d = byte_level_family("gpt2", pre_tokenizers.ByteLevel(add_prefix_space=False), None, False,
                          ["<|endoftext|>"], {"type": "ByteLevel", "add_prefix_space": False,
                                              "trim_offsets": True, "use_regex": True})
    add_tokens(d, [{"content": "<|pad|>"}])
    out["gpt2"] = (d, {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>",
                       "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "add_prefix_space": False,
                       "clean_up_tokenization_spaces": True, "model_max_length": 1024},
                   "<|endoftext|>", "<|endoftext|>", "<|pad|>")
    # GPT-2 pipeline plus added tokens exercising every flag, and add_prefix_space.
    d = byte_level_family("gpt2_added", pre_tokenizers.ByteLevel(add_prefix_space=True), None, False,
                          ["<|endoftext|>"], {"type": "ByteLevel", "add_prefix_space": True,
                                              "trim_offsets": True, "use_regex": True})
    add_tokens(d, [{"content": "<mask>", "lstrip": True, "special": True},
                   {"content": "[R]", "rstrip": True, "special": True},
                   {"content": "word", "single_word": True, "special": False},
                   {"content": "Hello", "normalized": True, "special": False},
                   {"content": "tokenizer model", "special": False},
                   {"content": "wo", "special": False}])
    out["gpt2_added"] = (d, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
                             "eos_token": "<|endoftext|>", "clean_up_tokenization_spaces": False},
                         "<mask>", "[R]", "word")
    # Llama-2 (legacy normalizer) and Mistral (Metaspace pre-tokenizer).
    d = llama_family(legacy_normalizer=True)
    add_tokens(d, [{"content": "<|im_start|>", "special": False}])
    out["llama2"] = (d, {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                         "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": False,
                         "clean_up_tokenization_spaces": False, "pad_token": None},
                     "<s>", "</s>", "<|im_start|>")
    d = llama_family(legacy_normalizer=False)
    out["mistral"] = (d, {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                          "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": True,
                          "clean_up_tokenization_spaces": False},
                      "<s>", "</s>", "<unk>")
    # Llama-3: Split + ByteLevel(use_regex=false), ignore_merges, BOS template.
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|eot_id|>"]
    d = byte_level_family(
        "llama3", pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]),
        None, True, specials, None)
    d["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        json.loads(processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
            special_tokens=[("<|begin_of_text|>", d["model"]["vocab"]["<|begin_of_text|>"])]).__getstate__())]}
    out["llama3"] = (d, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                         "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True,
                         "model_input_names": ["input_ids", "attention_mask"]},
                     "<|begin_of_text|>", "<|eot_id|>", "<|reserved_special_token_0|>")
    # Qwen2: NFC + Split + ByteLevel, no BOS.
    d = byte_level_family(
        "qwen2", pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)]),
        normalizers.NFC(), False, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False})
    out["qwen2"] = (d, {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
                        "pad_token": "<|endoftext|>", "unk_token": None, "errors": "replace",
                        "clean_up_tokenization_spaces": False, "split_special_tokens": False},
                    "<|im_start|>", "<|im_end|>", "<|endoftext|>")
    return out


def decode_id_cases(ids_of, vocab_size, rng):
    """Id sequences whose decode exercises partial UTF-8 and specials in the middle."""
    cases = []
    for text in ["😀 ok", "日本語", "é", "👨\u200d👩\u200d👧"]:
        ids = ids_of(text)
        for cut in range(1, len(ids) + 1):
            cases.append(ids[:cut])
        cases.append(ids[1:])
    for _ in range(20):
        cases.append([rng.randrange(vocab_size) for _ in range(rng.randint(1, 12))])
    return cases


def component_variants(fams):
    """Small pipelines around the trained vocabs, one component setting each."""
    gpt2 = "gpt2"
    llama = "mistral"
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}

    def with_(base, **kw):
        # Stored as overrides of <base>/tokenizer.json: top-level keys, or "model_<key>".
        return {"base": base, "overrides": kw}

    def split(pattern, behavior, invert=False):
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": pattern, "behavior": behavior, "invert": invert}, bl]}

    def meta(scheme, split_):
        return {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split_}

    v = {
        "split_removed": with_(gpt2, pre_tokenizer=split({"Regex": r"\s+"}, "Removed")),
        "split_merged_previous": with_(gpt2, pre_tokenizer=split({"Regex": r"[,.!?]"}, "MergedWithPrevious")),
        "split_merged_next": with_(gpt2, pre_tokenizer=split({"String": " "}, "MergedWithNext")),
        "split_contiguous": with_(gpt2, pre_tokenizer=split({"Regex": r"\p{N}"}, "Contiguous")),
        "split_invert": with_(gpt2, pre_tokenizer=split({"Regex": r"\p{L}+"}, "Isolated", True)),
        "split_empty_matches": with_(gpt2, pre_tokenizer=split({"Regex": r"o*"}, "Isolated")),
        "split_lookbehind": with_(gpt2, pre_tokenizer=split({"Regex": r"(?<=e)\s"}, "Isolated")),
        "digits_individual": with_(gpt2, pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, bl]}),
        "digits_contiguous": with_(gpt2, pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": False}, bl]}),
        "nfkc_lowercase": with_(gpt2, normalizer={"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"}]}),
        "nfd_strip_accents": with_(gpt2, normalizer={"type": "Sequence", "normalizers": [
            {"type": "NFD"}, {"type": "StripAccents"}]}),
        "nfkd": with_(gpt2, normalizer={"type": "NFKD"}),
        "strip_replace_regex_prepend": with_(gpt2, normalizer={"type": "Sequence", "normalizers": [
            {"type": "Strip", "strip_left": True, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
            {"type": "Prepend", "prepend": "»"}]}),
        "bytelevel_prefix_space": with_(gpt2, pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True,
                                                             "trim_offsets": True, "use_regex": True}),
        "ignore_merges": with_(gpt2, model_ignore_merges=True),
        "no_decoder": with_(gpt2, decoder=None),
        "template_bos_eos": with_(gpt2, post_processor={
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "<|pad|>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]},
                               "<|pad|>": {"id": "<|pad|>", "ids": [600], "tokens": ["<|pad|>"]}}}),
        "roberta_processing": with_(gpt2, post_processor={
            "type": "RobertaProcessing", "sep": ["<|pad|>", 600], "cls": ["<|endoftext|>", 0],
            "trim_offsets": True, "add_prefix_space": False}),
        "metaspace_always_split": with_(llama, pre_tokenizer=meta("always", True),
                                        decoder=meta("always", True)),
        "metaspace_first_split": with_(llama, pre_tokenizer=meta("first", True),
                                       decoder=meta("first", True)),
        "metaspace_never_nosplit": with_(llama, pre_tokenizer=meta("never", False),
                                         decoder=meta("never", False)),
        "metaspace_legacy_fields": with_(llama, pre_tokenizer={"type": "Metaspace", "replacement": "▁",
                                                               "add_prefix_space": True},
                                         decoder={"type": "Metaspace", "replacement": "▁",
                                                  "add_prefix_space": True}),
        "unk_fused": with_(llama, model_byte_fallback=False, model_fuse_unk=True),
        "unk_not_fused": with_(llama, model_byte_fallback=False, model_fuse_unk=False),
        "strip_decoder": with_(llama, decoder={"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Strip", "content": " ", "start": 2, "stop": 0}]}),
    }
    return v


def main():
    rng = random.Random(7)
    fams = families()
    texts = [t for t in hard_strings("<s>", "</s>", "<|endoftext|>") if len(t) < 120]
    comps = []
    for name, variant in component_variants(fams).items():
        tj = json.loads(json.dumps(fams[variant["base"]][0]))
        for k, val in variant["overrides"].items():
            if k.startswith("model_"):
                tj["model"][k[len("model_"):]] = val
            else:
                tj[k] = val
        tok = Tokenizer.from_str(json.dumps(tj))
        cases = []
        for t in texts:
            ids = tok.encode(t).ids
            cases.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
        comps.append({"name": name, "base": variant["base"], "overrides": variant["overrides"],
                      "cases": cases})
    with open(os.path.join(HERE, "components.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": texts, "variants": comps}, f, ensure_ascii=False, separators=(",", ":"),
                  sort_keys=True)
    for name, (data, config, bos, eos, extra) in fams.items():
        d = os.path.join(HERE, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=None, separators=(",", ":"), sort_keys=False)
        config = dict(config)
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=2, sort_keys=True)
        raw = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        auto = transformers.AutoTokenizer.from_pretrained(d)
        texts = hard_strings(bos, eos, extra)
        ref = {"texts": texts, "vocab_size": raw.get_vocab_size(True), "auto_vocab_size": len(auto),
               "auto_class": type(auto).__name__,
               "auto_bos_id": auto.bos_token_id, "auto_eos_id": auto.eos_token_id}
        for label, enc, dec in [
                ("raw", lambda t, sp: raw.encode(t, add_special_tokens=sp).ids,
                 lambda ids, skip: raw.decode(ids, skip_special_tokens=skip)),
                ("auto", lambda t, sp: auto(t, add_special_tokens=sp)["input_ids"],
                 lambda ids, skip: auto.decode(ids, skip_special_tokens=skip))]:
            cases = []
            for t in texts:
                ids = enc(t, True)
                ids_ns = enc(t, False)
                cases.append({"ids": ids, "ids_no_special": ids_ns, "decoded": dec(ids, False),
                              "decoded_skip": dec(ids, True)})
            id_cases = decode_id_cases(lambda t: enc(t, False), ref["vocab_size"], random.Random(11))
            ref[label] = {"cases": cases, "decode_cases": [
                {"ids": ids, "decoded": dec(ids, False), "decoded_skip": dec(ids, True)} for ids in id_cases]}
        with open(os.path.join(d, "reference.json"), "w", encoding="utf-8") as f:
            json.dump(ref, f, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        print(name, type(auto).__name__, os.path.getsize(os.path.join(d, "tokenizer.json")), "bytes")


if __name__ == "__main__":
    main()
