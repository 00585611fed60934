#!/usr/bin/env python3
"""Ours against the PyTorch reference in alternating rounds, for a ratio that survives the drift.

    benches/forward_rounds.py --bin target/release/dlm-tui --ref-dir REF [--model-dir DIR] \
        [--rounds 5] [--runs 10] [--lengths 128,256] [--threads 2] > OUT.json

Each round times one forward pass at batch 1 (median of --runs after 3 warm-ups) with dlm-tui and
then with LLaDA's PyTorch modeling code, at every length, alternating which goes first. On the
shared VM the same command drifts by 10-30% over minutes, so a ratio of two medians taken minutes
apart can be off by as much; the ratio within a round compares neighbours. Prints JSON: per
length, every round's two medians and their ratio, and the median ratio over the rounds. Without
--model-dir the embedded model runs (the reference reads models/default).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def ours(args, length):
    cmd = [args.bin, "bench", "--forward-only", "--dtype", "f32", "--length", str(length),
           "--runs", str(args.runs), "--warmup", "3", "--json"]
    if args.model_dir:
        cmd += ["--model-dir", args.model_dir]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)["forward_ms_median"]


def reference(args, lengths):
    cmd = [sys.executable, os.path.join(HERE, "reference", "llada_reference_bench.py"), "time",
           "--ref-dir", args.ref_dir, "--model-dir", args.model_dir or "models/default",
           "--lengths", ",".join(map(str, lengths)), "--runs", str(args.runs), "--warmup", "3",
           "--threads", str(args.threads), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return {r["length"]: r["forward_ms_median"] for r in json.loads(out.stdout)["results"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--ref-dir", required=True)
    parser.add_argument("--model-dir")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lengths", default="128,256")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    rounds = {length: [] for length in lengths}
    for i in range(args.rounds):
        if i % 2 == 0:
            mine = {length: ours(args, length) for length in lengths}
            theirs = reference(args, lengths)
        else:
            theirs = reference(args, lengths)
            mine = {length: ours(args, length) for length in lengths}
        for length in lengths:
            rounds[length].append({"ours_ms": mine[length], "reference_ms": theirs[length],
                                   "ratio": mine[length] / theirs[length]})
    model = args.model_dir or "models/default"
    print(json.dumps({
        "model_dir": model,
        "threads": args.threads,
        "runs_per_round": args.runs,
        "lengths": [{
            "length": length,
            "rounds": rounds[length],
            "ours_ms_median": statistics.median(r["ours_ms"] for r in rounds[length]),
            "reference_ms_median": statistics.median(r["reference_ms"] for r in rounds[length]),
            "ratio_median": statistics.median(r["ratio"] for r in rounds[length]),
            "ratio_min": min(r["ratio"] for r in rounds[length]),
            "ratio_max": max(r["ratio"] for r in rounds[length]),
        } for length in lengths],
    }))


if __name__ == "__main__":
    main()
