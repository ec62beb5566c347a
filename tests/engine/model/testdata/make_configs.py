"""Regenerates the config.json fixtures with the reference stack (transformers 5.23):

    .venv-fixtures/bin/python tests/engine/model/testdata/make_configs.py

Each <name>/config.json is exactly what save_pretrained writes; model_config_test.cc parses them
and checks the values below.
"""
import os

from transformers import GenerationConfig, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = {
    # Llama 3 style: GQA, llama3 rope scaling, tied embeddings, attention bias off.
    "llama": LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16384,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192},
                         rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=1,
                         eos_token_id=[2, 3], rms_norm_eps=1e-5),
    "mistral": MistralConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             sliding_window=32, head_dim=32),
    "qwen2": Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True,
                         sliding_window=16, max_window_layers=1,
                         rope_scaling={"type": "yarn", "factor": 4.0,
                                       "original_max_position_embeddings": 8192},
                         max_position_embeddings=32768, eos_token_id=5),
    "gpt2": GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                       scale_attn_by_inverse_layer_idx=True),
}

for name, cfg in CONFIGS.items():
    cfg.save_pretrained(os.path.join(HERE, name))

GenerationConfig(eos_token_id=[2, 7], bos_token_id=1, pad_token_id=0, do_sample=True,
                 temperature=0.6, top_k=20, top_p=0.9, min_p=0.05, repetition_penalty=1.1,
                 max_new_tokens=256).save_pretrained(os.path.join(HERE, "llama"))
