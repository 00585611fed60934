#!/usr/bin/env python3
"""Renders the tables of BENCHMARKS.md from the JSON files benches/run_all.sh writes (no number typed by hand).

    scripts/benchmarks_md.py OUT > /tmp/tables.md
"""
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    out = sys.argv[1]
    w = print
    w("### Forward pass at batch 1 (f32), ours against LLaDA's PyTorch modeling code\n")
    w("| model | parameters | tokens | dlm-tui median (min) | PyTorch median (min) | ratio |")
    w("| --- | --- | --- | --- | --- | --- |")
    for model in ("embedded", "bench"):
        ref_path = os.path.join(out, f"reference-{model}.json")
        if not os.path.exists(ref_path):
            continue
        ref = {r["length"]: r for r in load(ref_path)["results"]}
        for length in (128, 256):
            ours = load(os.path.join(out, f"forward-{model}-auto-{length}.json"))
            r = ref[length]
            w(f"| {ours['model']} | {ours['parameters'] / 1e6:.1f}M | {length} | "
              f"{ours['forward_ms_median']:.1f} ms ({ours['forward_ms_min']:.1f}) | "
              f"{r['forward_ms_median']:.1f} ms ({r['forward_ms_min']:.1f}) | "
              f"{ours['forward_ms_median'] / r['forward_ms_median']:.2f}x |")
    rounds = [(m, os.path.join(out, f"forward-rounds-{m}.json")) for m in ("embedded", "bench")]
    rounds = [(m, load(p)) for m, p in rounds if os.path.exists(p)]
    if rounds:
        w("\n### The same, in alternating rounds (`benches/forward_rounds.py`)\n")
        w("Five rounds, each timing dlm-tui and then PyTorch (or the other way round) at both lengths,"
          " medians of 10 runs after 3 warm-ups; the ratio is taken within each round.\n")
        w("| model | tokens | dlm-tui median | PyTorch median | ratio per round | median ratio |")
        w("| --- | --- | --- | --- | --- | --- |")
        for model, r in rounds:
            for entry in r["lengths"]:
                per_round = ", ".join(f"{x['ratio']:.2f}" for x in entry["rounds"])
                w(f"| {model} | {entry['length']} | {entry['ours_ms_median']:.1f} ms | "
                  f"{entry['reference_ms_median']:.1f} ms | {per_round} | **{entry['ratio_median']:.2f}x** |")
    w("\n### Attention kernel (dlm-tui, same run)\n")
    w("| model | tokens | auto | tiled (ours) | fused (candle flash_attn) | matmul + softmax |")
    w("| --- | --- | --- | --- | --- | --- |")
    for model in ("embedded", "bench"):
        for length in (128, 256):
            cells = []
            for kernel in ("auto", "tiled", "fused", "matmul"):
                path = os.path.join(out, f"forward-{model}-{kernel}-{length}.json")
                cells.append(f"{load(path)['forward_ms_median']:.1f} ms" if os.path.exists(path) else "")
            if any(cells):
                w(f"| {model} | {length} | " + " | ".join(cells) + " |")
    path = os.path.join(out, "against-plain.json")
    if os.path.exists(path):
        r = load(path)
        p = r["plain"]
        w(f"\n### Caching and parallel decoding against plain decoding ({r['model']})\n")
        w(f"Generation length {r['length']} after each of {r['seeds']} story prompts (canvas up to 256"
          f" tokens, the model's context), block {r['block_length']}, greedy. Plain: uniform schedule, one"
          f" step per token, no cache: {p['wall_ms_total'] / 1e3:.1f} s for all prompts, English-word rate"
          f" {p['word_rate']:.1%}, mean log-likelihood {p['mean_log_likelihood']:.3f} nats/token, repeated"
          f" trigrams {p['repeated_trigrams']:.1%}. Every setting was timed in the same run.\n")
        w("| setting | wall time | speed-up | steps | forward passes | FLOPs saved | token agreement"
          " | word rate (ratio) | log-likelihood (ratio) | repeats |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for t in r["tested"]:
            w(f"| `{t['name']}` | {t['wall_ms_total'] / 1e3:.1f} s | **{t['speedup']:.2f}x** | {t['steps_mean']:.1f} | "
              f"{t['nfe_mean']:.1f} | {t['flops_saved']:.1%} | {t['token_agreement']:.1%} | "
              f"{t['word_rate']:.1%} ({t['word_rate_ratio']:.3f}) | "
              f"{t['mean_log_likelihood']:.3f} ({t['likelihood_ratio']:.3f}) | {t['repeated_trigrams']:.1%} |")
    gen = os.path.join(out, "generate-128.json")
    if os.path.exists(gen):
        g = load(gen)
        w(f"\n### Generation at length 128 ({g['model']}, {g['steps']} steps, block {g['block_length']})\n")
        w(f"forward {g['forward_ms_median']:.1f} ms, step {g['step_ms_median']:.1f} ms (medians of {g['runs']} runs),"
          f" {g['tokens_per_s']:.1f} tokens/s, peak RSS {g['peak_rss_mb']:.0f} MiB.")


if __name__ == "__main__":
    main()
