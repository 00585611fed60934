#!/usr/bin/env python3
"""One ModernBERT forward pass with transformers' ModernBertForMaskedLM, timed like dlm-tui's.

    PYTHON benches/reference/modernbert_bench.py --model-dir DIR [--length 128] [--runs 7] [--warmup 2] \
        [--threads 2] [--rounds 3 --bin target/release/dlm-tui]

Loads DIR (config.json + model.safetensors, e.g. ~/.cache/dlm-tui/modernbert-base-shape) in f32
with transformers' default attention, and times a batch-1 forward (full logits) over a fixed
random canvas of --length ids: --warmup untimed passes, then the median of --runs. With --bin it
runs --rounds alternating rounds of `BIN bench --forward-only` (same length, runs and threads) and
this timing, and takes the ratio within each round, as benches/forward_rounds.py does for LLaDA.
Prints JSON. ModernBERT needs transformers >= 4.48 (the LLaDA reference pins 4.46.3), so PYTHON is
a separate environment: `python3 -m venv --system-site-packages /tmp/venv-mb &&
/tmp/venv-mb/bin/pip install "transformers==4.57.1"`, then `/tmp/venv-mb/bin/python`.
"""
import argparse
import json
import os
import statistics
import subprocess
import time


def reference(args):
    import torch
    from transformers import AutoModelForMaskedLM

    torch.set_num_threads(args.threads)
    model = AutoModelForMaskedLM.from_pretrained(args.model_dir, torch_dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(args.length)
    ids = torch.randint(0, model.config.vocab_size, (1, args.length), generator=generator)
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            model(input_ids=ids).logits
            if i >= args.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), model.config._attn_implementation


def ours(args):
    cmd = [args.bin, "bench", "--forward-only", "--dtype", "f32", "--length", str(args.length),
           "--runs", str(args.runs), "--warmup", str(args.warmup), "--json",
           "--model-dir", args.model_dir]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)["forward_ms_median"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--bin", help="dlm-tui binary: alternate rounds with it")
    args = parser.parse_args()
    if not args.bin:
        ms, attention = reference(args)
        print(json.dumps({"length": args.length, "threads": args.threads, "attention": attention,
                          "forward_ms_median": ms}))
        return
    rounds = []
    for i in range(args.rounds):
        if i % 2 == 0:
            mine = ours(args)
            theirs, attention = reference(args)
        else:
            theirs, attention = reference(args)
            mine = ours(args)
        rounds.append({"ours_ms": mine, "reference_ms": theirs, "ratio": mine / theirs})
    print(json.dumps({"model_dir": args.model_dir, "length": args.length, "threads": args.threads,
                      "attention": attention, "rounds": rounds,
                      "ratio_median": statistics.median(r["ratio"] for r in rounds)}))


if __name__ == "__main__":
    main()
