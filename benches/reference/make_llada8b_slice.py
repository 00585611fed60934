#!/usr/bin/env python3
"""A random-weight slice of LLaDA-8B: its exact shapes (d_model 4096, 32 heads, SwiGLU 12288,
vocabulary 126464, untied head) with only N of its 32 blocks, in bf16.

LLaDA-8B itself is 16 GB of bf16 weights and this machine has no network, so its CPU speed is
measured on slices: the forward time of a 1-block and a 2-block slice gives the cost of one block
and of everything else (embedding, head), and 32 blocks are extrapolated from those
(benches/llada8b_cpu.sh does all of it). The weights are random: only the time means anything.

    python3 benches/reference/make_llada8b_slice.py --layers 1 --out ~/.cache/dlm-tui/llada8b-1
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "..", "..", "tests", "fixtures", "llada-tiny-gqa", "tokenizer.json")

# GSAI-ML/LLaDA-8B-Base config.json, with n_layers set by --layers.
CONFIG = {
    "architectures": ["LLaDAModelLM"],
    "model_type": "llada",
    "activation_type": "silu",
    "alibi": False,
    "attention_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "d_model": 4096,
    "embedding_size": 126464,
    "eos_token_id": 126081,
    "include_bias": False,
    "include_qkv_bias": False,
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "mask_token_id": 126336,
    "max_sequence_length": 4096,
    "mlp_hidden_size": 12288,
    "mlp_ratio": 4,
    "multi_query_attention": None,
    "n_heads": 32,
    "n_kv_heads": 32,
    "n_layers": 32,
    "rms_norm_eps": 1e-05,
    "rope": True,
    "rope_theta": 500000.0,
    "scale_logits": False,
    "vocab_size": 126464,
    "weight_tying": False,
}


def write_tokenizer(path, vocab_size):
    """The tiny fixture's byte-level BPE with its vocabulary padded to LLaDA-8B's size by
    placeholder entries no merge ever produces: the loader refuses a tokenizer far smaller than
    the model's output, and llama.cpp wants one token per embedding row."""
    with open(TOKENIZER) as f:
        tokenizer = json.load(f)
    vocab = tokenizer["model"]["vocab"]
    taken = set(vocab.values()) | {t["id"] for t in tokenizer["added_tokens"]}
    for i in range(vocab_size):
        if i not in taken:
            vocab[f"<|reserved_{i}|>"] = i
    with open(path, "w") as f:
        json.dump(tokenizer, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    config = dict(CONFIG, n_layers=args.layers)
    d, h, v = config["d_model"], config["mlp_hidden_size"], config["embedding_size"]
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to(torch.bfloat16)

    tensors = {
        "model.transformer.wte.weight": rand(v, d),
        "model.transformer.ln_f.weight": torch.ones(d, dtype=torch.bfloat16),
        "model.transformer.ff_out.weight": rand(v, d),
    }
    for i in range(args.layers):
        p = f"model.transformer.blocks.{i}."
        tensors[p + "attn_norm.weight"] = torch.ones(d, dtype=torch.bfloat16)
        tensors[p + "ff_norm.weight"] = torch.ones(d, dtype=torch.bfloat16)
        for name in ("q_proj", "k_proj", "v_proj", "attn_out"):
            tensors[p + name + ".weight"] = rand(d, d)
        tensors[p + "ff_proj.weight"] = rand(h, d)
        tensors[p + "up_proj.weight"] = rand(h, d)
        tensors[p + "ff_out.weight"] = rand(d, h)
    save_file(tensors, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_tokenizer(os.path.join(args.out, "tokenizer.json"), config["vocab_size"])
    print(f"wrote {args.out}: {sum(t.numel() for t in tensors.values()) / 1e9:.2f}B parameters")


if __name__ == "__main__":
    main()
