#!/usr/bin/env python3
"""Writes models/default/MODEL_CARD.md from the measurements (no number is typed by hand).

Inputs: models/default/training.json (written by `dlm-tui train`), the training record of the
models it was initialised from, oldest first (`--previous`, once per earlier stage, kept as
models/default/training-v1.json, training-v2.json, ...), eval reports
of this model and of the previous one on the same held-out split (`dlm-tui eval --json FILE`), a
bench report (`dlm-tui bench --json > FILE`) and the defaults measurement. Usage:

    scripts/model_card.py --eval eval.json --eval-before eval-v1.json --bench bench.json \
        --previous models/default/training-v1.json --previous models/default/training-v2.json \
        --defaults defaults.json
"""
import argparse
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "models", "default")


def bits(entry):
    """A log entry's held-out bound in bits per character."""
    return entry["val_nll_per_char"] / math.log(2)


def evals(log):
    return [e for e in log if e.get("val_nll_per_token") is not None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--pilot", action="append", default=[])
    ap.add_argument("--vocab-table", help="output of dlm-tui train --measure-vocab")
    ap.add_argument("--note", action="append", default=[], help="a sentence about the training sittings")
    ap.add_argument("--defaults", help="output of scripts/choose_defaults.py")
    ap.add_argument("--previous", action="append", default=[],
                    help="training.json of an earlier stage, oldest first (once per stage)")
    ap.add_argument("--eval-before", help="eval report of that model on this model's held-out split")
    ap.add_argument("--gpu-minutes", type=float, default=0.0)
    ap.add_argument("--train-tokens", type=int, help="tokens in the training split (train prints it)")
    ap.add_argument("--outlook", action="append", default=[], help="a paragraph after the quality table")
    args = ap.parse_args()
    training = json.load(open(os.path.join(MODEL, "training.json")))
    report = json.load(open(args.eval))
    bench = json.load(open(args.bench))
    config = json.load(open(os.path.join(MODEL, "config.json")))
    a = training["args"]
    last = training["log"][-1]
    hours = last["wall_s"] / 3600

    out = []
    w = out.append
    w("# dlm-tui default model\n")
    w("A small masked-diffusion language model in LLaDA's format, trained by `dlm-tui train` on the")
    w("TinyStories sample in `../shared/corpus/` and compiled into the `dlm-tui` binary so that the")
    w("playground works offline. It is a toy: it writes (and fills in) short children's stories.\n")
    w("Corpus licence: TinyStories (Eldan & Li, 2023), CDLA-Sharing-1.0; the text itself is not")
    w("redistributed here, only weights trained on it.\n")
    w("## Architecture\n")
    w(f"LLaDA `llama` block, {config['n_layers']} layers, d_model {config['d_model']}, {config['n_heads']} heads,")
    w(f"SwiGLU hidden {config['mlp_hidden_size']}, RMSNorm, rotary embeddings (theta {config['rope_theta']:g}),")
    w(f"bidirectional attention, tied input/output embeddings, context {config['max_sequence_length']} tokens,")
    w(f"{report['parameters']:,} parameters. Weights stored as f16 (`model.safetensors`).\n")
    w(f"Tokenizer: byte-level BPE with {config['vocab_size']} entries trained with the tokenizers crate on the")
    w("training split; `<|endoftext|>` (id 0) ends each story, `<|mdm_mask|>` (id 1) is the mask.")
    if args.vocab_table:
        w("The size was chosen by measurement in stage 1 (held-out characters per token on `tinystories.txt` against")
        w("the embedding's cost) and kept in the later stages, each of which continues from the one before:\n")
        w("```")
        w(open(args.vocab_table).read().rstrip())
        w("```")
        w("Past 2048 entries the text gets only a little shorter while the embedding table doubles.\n")
    w("## Training\n")
    prevs = [json.load(open(p)) for p in args.previous]
    prev_tokens = sum(p["tokens"] for p in prevs)
    prev_hours = sum(p["wall_s"] / 3600 for p in prevs)
    stage = len(prevs) + 1
    if prevs:
        w(f"{stage} stages, each reproducible on the CPU alone with the commands below (same commands, more hours")
        w(f"on a slower machine).\n")
        for k, (path, prev) in enumerate(zip(args.previous, prevs), start=1):
            pa = prev["args"]
            hours_k = prev["wall_s"] / 3600
            if k == 1:
                w(f"**Stage 1**: {prev['step']} steps on `{os.path.basename(pa['corpus'])}`,")
            else:
                w(f"**Stage {k}**: initialised from stage {k - 1}'s weights and tokenizer (`--init`), {prev['step']} steps on")
                w(f"`{os.path.basename(pa['corpus'])}`,")
            w(f"{prev['tokens']:,} tokens, {hours_k:.2f} h. Command: `{' '.join(prev['command'][1:])}`  ")
            for s_ in prev.get("resumed", []):
                w(f"resumed at step {s_['from_step']}: `{' '.join(s_['command'][1:])}`  ")
            w(f"Its record is `{os.path.basename(path)}` beside this card.\n")
        w(f"**Stage {stage}** (this model): initialised from stage {stage - 1}'s weights and tokenizer (`--init`), trained on")
        w(f"`{os.path.basename(a['corpus'])}`. Command: `{' '.join(training['command'][1:])}`  ")
    else:
        w(f"Command (first sitting): `{' '.join(training['command'][1:])}`  ")
    for s_ in training.get("resumed", []):
        w(f"resumed at step {s_['from_step']}: `{' '.join(s_['command'][1:])}`  ")
    for note in args.note:
        w(note + "  ")
    w("")
    w(f"Objective: LLaDA/MDLM masked diffusion, t ~ U({a['eps']}, 1) per sequence, each token masked with")
    w(f"probability t, cross-entropy on masked tokens, weighting `{a['weighting']}`. AdamW (beta 0.9/0.95,")
    w(f"weight decay {a['weight_decay']} on matrices), peak lr {a['lr']}, {a['warmup']} warm-up steps then cosine")
    w(f"to {a['min_lr_ratio']}x over {a['steps']} steps, gradient clipping {a['clip']}, batch {a['batch_size']} x {a['seq_len']} tokens.")
    w(f"Held-out split: the last {a['val_fraction']:.0%} of the stories of `{os.path.basename(a['corpus'])}`, never trained on")
    w("(the stage-1 corpus is the start of this one, so stage 1 never saw them either).\n")
    split_tokens = args.train_tokens
    epochs = f" ({last['tokens'] / split_tokens:.1f} epochs of the {split_tokens:,}-token training split)" if split_tokens else ""
    w(f"This stage: {last['step']} steps, {last['tokens']:,} tokens{epochs}, {hours:.2f} h of wall time.")
    w(f"In all: {prev_tokens + last['tokens']:,} tokens, **{prev_hours + hours:.2f} CPU hours** on 2-core machines")
    w(f"(training niced beside other work), **{args.gpu_minutes:g} GPU minutes** (no GPU machine was lent to these sessions).\n")
    if args.pilot:
        w("### Loss weighting: 1/t (ELBO) against uniform\n")
        w("Two runs identical but for the weighting, same data order and seed; held-out NLL bound")
        w("(always with the 1/t weighting, nats/token):\n")
        pilots = {name: json.load(open(os.path.expanduser(path))) for name, path in (p.split("=", 1) for p in args.pilot)}
        steps = sorted({e["step"] for p in pilots.values() for e in evals(p["log"])})
        w("| step | " + " | ".join(pilots) + " |")
        w("| --- |" + " --- |" * len(pilots))
        for st in steps:
            cells = []
            for p in pilots.values():
                v = [e["val_nll_per_token"] for e in evals(p["log"]) if e["step"] == st]
                cells.append(f"{v[0]:.4f}" if v else "")
            w(f"| {st} | " + " | ".join(cells) + " |")
        w("\nThe uniform weighting left the unigram plateau first and was kept.\n")
    w("### Learning curve\n")
    w("Held-out NLL bound on this model's held-out split, against all tokens seen (stage 1's included),")
    w("as training estimates it (48 windows, 4 mask levels each: comparable along the curve, not with")
    w("`dlm-tui eval`'s 8-level figures below), for every stage trained on this corpus:\n")
    w("| stage | step | tokens seen in all | held-out NLL bound (nats/token) | bits/char | train loss |")
    w("| --- | --- | --- | --- | --- | --- |")
    stages = prevs + [training]
    offset = 0
    curve = []
    for k, record in enumerate(stages, start=1):
        if os.path.basename(record["args"]["corpus"]) == os.path.basename(a["corpus"]):
            for e in evals(record["log"]):
                curve.append((k, e, offset + e["tokens"]))
        offset += record["tokens"]
    for k, e, seen in curve:
        w(f"| {k} | {e['step']} | {seen:,} | {e['val_nll_per_token']:.4f} | {bits(e):.4f} | {e['loss']:.4f} |")
    pts = [(prev_tokens + e["tokens"], bits(e)) for e in evals(training["log"])]
    if len(pts) >= 4:
        (t0, b0), (t1, b1) = pts[len(pts) // 2], pts[-1]
        w(f"\nOver the second half of this stage the bound fell {b0 - b1:.4f} bits/char while the tokens seen grew")
        w(f"{t1 / t0:.2f}x. The full loss curve (every step) is in `training.json`.\n")
    else:
        w("\nThe full loss curve (every step) is in `training.json`.\n")
    # The slope of the curve's later half against log2(tokens seen), all stages on this corpus:
    # what another doubling of the tokens would buy at this size if the curve kept its shape.
    # The best bound so far at each point, so a warm restart's bump at a stage's start (the
    # learning rate going up again) does not count as the curve rising.
    envelope, low = [], float("inf")
    for _, e, seen in curve:
        low = min(low, bits(e))
        envelope.append((seen, low))
    late = envelope[len(envelope) // 2:]
    if len(late) >= 4:
        xs = [math.log2(t) for t, _ in late]
        ys = [b for _, b in late]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        best = min(ys)
        w(f"Fitted over the later half of this table ({len(late)} evaluations, {late[0][0]:,} to {late[-1][0]:,} tokens;")
        w(f"the best bound so far at each), the bound falls **{-slope:.4f} bits/char per doubling** of the tokens seen.")
        if slope < 0 and best > 1.15:
            doublings = (best - 1.15) / -slope
            tok_per_h = last["tokens"] / max(hours, 1e-9)
            need = late[-1][0] * (2 ** doublings - 1)
            w(f"Held to that slope, the 1.15 target would take {doublings:.1f} more doublings, about {need / 1e6:,.0f} million more tokens:")
            w(f"{need / tok_per_h:,.0f} hours at this stage's {tok_per_h:,.0f} tokens per hour on this CPU, and the corpus")
            w("would be seen that many more times, where the curve flattens further. The next step is a wider model")
            w("trained on a GPU, not more epochs at this size.\n")
        else:
            w("")
    w("## Quality (`dlm-tui eval`)\n")
    if args.eval_before:
        before = json.load(open(args.eval_before))
        w(f"On the held-out split of `{os.path.basename(a['corpus'])}` (`dlm-tui eval --corpus ...`), the previous")
        w("model against this one:\n")
        w("| measure | previous model | this model | target (issue 15) |")
        w("| --- | --- | --- | --- |")
        w(f"| held-out NLL bound, bits/char | {before['heldout_bits_per_char']:.4f} | {report['heldout_bits_per_char']:.4f} | <= 1.15 |")
        w(f"| repeated word trigrams in 20 greedy samples | {before['repeated_trigrams']:.1%} | {report['repeated_trigrams']:.1%} | <= 15% |")
        w(f"| dictionary words in those samples | {before['word_rate']:.1%} | {report['word_rate']:.1%} | >= 99% |")
        if report.get("infill") and before.get("infill"):
            i0, i1 = before["infill"], report["infill"]
            w(f"| infilling, exact tokens (confidence order) | {i0['exact_rate']:.1%} | {i1['exact_rate']:.1%} | report, improve |")
            w(f"| infilling, exact tokens (left to right) | {i0['left_to_right_rate']:.1%} | {i1['left_to_right_rate']:.1%} | |")
            w(f"| infilling, unigram baseline | {i0['unigram_rate']:.1%} | {i1['unigram_rate']:.1%} | |")
        w("")
    for paragraph in args.outlook:
        w(paragraph + "\n")
    w(f"- Held-out NLL bound: **{report['heldout_nll_per_token']:.4f} nats/token** ({report['heldout_bits_per_char']:.4f} bits/char),")
    w(f"  against **{report['unigram_nll_per_token']:.4f} nats/token** for a unigram model fitted on the training split.")
    w(f"- Dictionary words (Debian `wamerican`): **{report['word_rate']:.1%}** of {report['words_checked']} words in 20")
    w("  samples of 64 tokens after story prompts (greedy, low-confidence, 64 steps, block 32, seeds 0-19).")
    w(f"- Repeated word trigrams: **{report['repeated_trigrams']:.1%}** of the trigrams of a sample (mean over those samples).")
    if report.get("infill"):
        i = report["infill"]
        w(f"- Infilling: {i['spans']} spans of {i['span']} tokens masked in {i['context']}-token held-out windows and filled")
        w(f"  greedily: **{i['exact_rate']:.1%}** of the original tokens come back exactly in confidence order,")
        w(f"  {i['left_to_right_rate']:.1%} when the same model fills left to right, {i['unigram_rate']:.1%} for the most frequent token.")
    w(f"- Forward pass at length 128: {report['step_ms_len128_median']:.1f} ms (median, `dlm-tui eval`).")
    w(f"- `dlm-tui bench --length {bench['length']} --steps {bench['steps']} --block-length {bench['block_length']}`: forward {bench['forward_ms_median']:.1f} ms,")
    w(f"  step {bench['step_ms_median']:.1f} ms (medians of {bench['runs']} runs), {bench['tokens_per_s']:.1f} tokens/s, peak RSS {bench['peak_rss_mb']:.0f} MiB.\n")
    w("Five samples (prompt, then the model's 64 tokens):\n")
    for s in report["samples"][:5]:
        w("> " + s.replace("\n", "\n> ") + "\n")
    w("## Default generation parameters\n")
    if args.defaults:
        d = json.load(open(args.defaults))
        w(f"Chosen by `scripts/choose_defaults.py`: each candidate generated {d['length']} tokens after each of the 20")
        w("story prompts (`dlm-tui bench --against-plain --seeds 20`), one step per token unless stated, greedy")
        w("unless stated. Word rate: Debian wamerican; log-likelihood: mean over samples of the output's")
        w("ELBO estimate under the model (nats/token, higher is better); repeats: share of word trigrams that")
        w("repeat within a sample. Rule: word rate at least 97%, then the fewest repeats; within one point of")
        w("that, the highest likelihood, then the fewest forward passes.\n")
        w("| setting | word rate | log-likelihood | repeats | forward passes | wall time (20 samples) |")
        w("| --- | --- | --- | --- | --- | --- |")
        for r in d["rows"]:
            mark = " **(chosen)**" if r["name"] == d["choice"] else ""
            w(f"| {r['name']}{mark} | {r['word_rate']:.1%} | {r['log_likelihood']:.3f} | {r['repeated_trigrams']:.1%} | {r['nfe']:.1f} | {r['wall_ms'] / 1e3:.1f} s |")
        chosen = next(r for r in d["rows"] if r["name"] == d["choice"])
        w(f"\nThe playground and `dlm-tui generate` start with length {d['length']} and {d['choice']} (`config.toml`,")
        w("`Settings::default` in `src/run/mod.rs`); spelled out as flags:\n")
        flags = []
        strategy, *overrides = chosen["spec"].split(":")
        flags += ["--strategy", strategy]
        for o in overrides:
            key, value = o.split("=", 1)
            flags += [f"--{key}", value]
        w("```sh")
        w(f"dlm-tui generate --prompt \"Once upon a time\" --length {d['length']} {' '.join(flags)}")
        w("```\n")
        if d.get("prompts") and chosen.get("samples"):
            w("What those defaults write: the first five of the measured samples (prompt, then the model's")
            w(f"{d['length']} tokens, seeds 0-4), as a user sees them in the playground:\n")
            for prompt, sample in list(zip(d["prompts"], chosen["samples"]))[:5]:
                w("> " + (prompt + sample).replace("\n", "\n> ") + "\n")
    open(os.path.join(MODEL, "MODEL_CARD.md"), "w").write("\n".join(out))


if __name__ == "__main__":
    main()
