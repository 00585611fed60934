#!/usr/bin/env python3
"""dlm-tui against llama.cpp's llama-diffusion-cli on the same GGUF files: time per denoising
step over the same canvas, with the same number of threads, in alternating rounds (the machine
is shared and noisy, so each round runs both, one after the other, and the medians and the
median of the per-round ratios are reported).

A step of llama-diffusion-cli is one forward pass over the whole canvas (no cache) plus its
sampling, which it reports separately: its forward time is `time per step - sampling time per
step`. dlm-tui's figure is `dlm-tui bench --forward-only` over a canvas of the same length.

Build llama.cpp (CPU only) first:
    cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
    cmake --build build --target llama-diffusion-cli -j
Then:
    python3 benches/llama_cpp_compare.py --llama-cpp /path/to/llama.cpp/build/bin \\
        --length 128 --steps 8 --threads 2 --rounds 5 FILE.gguf [FILE.gguf ...]

GGUF files: `dlm-tui quantize DIR --to q8_0 --out FILE.gguf` (llama.cpp reads them), or llama.cpp's
own converter and llama-quantize.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_STEP = re.compile(r"time per step: ([0-9.]+)ms, sampling time per step: ([0-9.]+)ms")


def llama_cpp(bin_dir, gguf, length, steps, threads):
    env = dict(os.environ, LD_LIBRARY_PATH=bin_dir)
    cmd = [os.path.join(bin_dir, "llama-diffusion-cli"), "-m", gguf, "-p", "Once upon a time",
           "-n", str(length), "-ub", str(length), "-b", str(length), "-c", str(length),
           "--diffusion-steps", str(steps), "--diffusion-block-length", str(length),
           "--temp", "0", "-t", str(threads), "-tb", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace")
    text = out.stdout + out.stderr
    found = PER_STEP.search(text)
    if out.returncode != 0 or not found:
        sys.exit(f"llama-diffusion-cli failed ({out.returncode}):\n{text[-3000:]}")
    step, sampling = float(found.group(1)), float(found.group(2))
    return step - sampling, step


def dlm_tui(binary, gguf, length, threads, runs):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [binary, "bench", "--gguf", gguf,
           "--forward-only", "--length", str(length), "--runs", str(runs), "--warmup", "1",
           "--prompt", "Once upon a time", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"dlm-tui bench failed:\n{out.stderr[-3000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return report["forward_ms_median"], report["peak_rss_mb"]


def cpu():
    """The CPU's name, family and model (figures differ between CPU generations)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return "unknown"
    return f"{fields.get('model name', '?')} family {fields.get('cpu family', '?')} " \
        f"model {fields.get('model', '?')}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp's build/bin folder")
    ap.add_argument("--length", type=int, default=128, help="canvas length (prompt and masks)")
    ap.add_argument("--steps", type=int, default=8, help="llama.cpp's steps per run")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3, help="dlm-tui forward passes per round")
    ap.add_argument("--dlm-tui", help="a dlm-tui binary to time (default: this checkout's, built)")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    binary = args.dlm_tui
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "dlm-tui")
    for gguf in args.files:
        ours, theirs, theirs_step, ratios, rss = [], [], [], [], []
        for _ in range(args.rounds):
            forward, step = llama_cpp(args.llama_cpp, gguf, args.length, args.steps, args.threads)
            mine, peak = dlm_tui(binary, gguf, args.length, args.threads, args.runs)
            theirs.append(forward)
            theirs_step.append(step)
            ours.append(mine)
            rss.append(peak)
            ratios.append(mine / forward)
        print(json.dumps({
            "file": os.path.basename(gguf),
            "cpu": cpu(),
            "length": args.length,
            "threads": args.threads,
            "rounds": args.rounds,
            "llama_cpp_forward_ms_median": round(statistics.median(theirs), 2),
            "llama_cpp_step_ms_median": round(statistics.median(theirs_step), 2),
            "dlm_tui_forward_ms_median": round(statistics.median(ours), 2),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "dlm_tui_peak_rss_mb": round(max(rss), 1),
        }), flush=True)


if __name__ == "__main__":
    main()
