#!/usr/bin/env python3
"""Old-against-new timing on a noisy machine: runs two dlm-tui binaries alternately.

    benches/paired.py OLD_BIN NEW_BIN N [--key forward_ms_median] -- bench ARGS...

Runs `BIN bench ARGS --json` N times for each binary, alternating which goes first, and prints
each binary's median of KEY and the median (and quartiles) of the per-pair ratios new/old. The
shared VM these numbers come from drifts by 10-30% over minutes; neighbouring runs drift
together, so the per-pair ratio is steadier than either median. Build the old binary from the
earlier commit (e.g. `git stash; cargo build --release; cp target/release/dlm-tui /tmp/old`).
"""
import argparse
import json
import statistics
import subprocess
import sys


def quantile(sorted_values, q):
    return sorted_values[int((len(sorted_values) - 1) * q)]


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser(description="old/new dlm-tui timings, alternated")
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("n", type=int)
    parser.add_argument("--key", default="forward_ms_median",
                        help="the JSON field to compare (e.g. generation_ms_median)")
    args = parser.parse_args(sys.argv[1:split])
    bench_args = sys.argv[split + 1:] + ["--json"]
    times = {"old": [], "new": []}
    ratios = []
    for i in range(args.n):
        pair = {}
        for which in (("old", "new") if i % 2 == 0 else ("new", "old")):
            binary = getattr(args, which)
            out = subprocess.run([binary] + bench_args, capture_output=True, text=True, check=True)
            pair[which] = json.loads(out.stdout)[args.key]
        for which, value in pair.items():
            times[which].append(value)
        ratios.append(pair["new"] / pair["old"])
    ratios.sort()
    print(json.dumps({
        "key": args.key,
        "pairs": args.n,
        "old_median": statistics.median(times["old"]),
        "new_median": statistics.median(times["new"]),
        "ratio_median": quantile(ratios, 0.5),
        "ratio_q1": quantile(ratios, 0.25),
        "ratio_q3": quantile(ratios, 0.75),
    }))


if __name__ == "__main__":
    main()
