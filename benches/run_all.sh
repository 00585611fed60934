#!/usr/bin/env bash
# Runs the measurements quoted in BENCHMARKS.md and writes one JSON file per measurement to OUT.
#
#   benches/run_all.sh OUT [REF_DIR]
#
# REF_DIR holds LLaDA's configuration_llada.py and modeling_llada.py (see benches/reference/README.md);
# without it the PyTorch reference timings are skipped. The 58M benchmark model is built once into
# ~/.cache/dlm-tui/bench-model with the reference code. Run it on an idle machine: every number is a
# median of several runs, and ratios are only meaningful between numbers of the same run.
set -euo pipefail
out=${1:?usage: benches/run_all.sh OUT [REF_DIR]}
ref=${2:-}
threads=${THREADS:-$(nproc)}
mkdir -p "$out"
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/dlm-tui
bench_model=${BENCH_MODEL:-$HOME/.cache/dlm-tui/bench-model}

if [[ -n "$ref" && ! -f "$bench_model/config.json" ]]; then
    python3 benches/reference/llada_reference_bench.py make-model --ref-dir "$ref" --out "$bench_model"
fi

# Forward pass at batch 1: ours (each attention kernel) and the PyTorch reference, same threads.
for model in embedded bench; do
    dir_args=()
    ref_model=models/default
    if [[ $model == bench ]]; then
        [[ -f "$bench_model/config.json" ]] || continue
        dir_args=(--model-dir "$bench_model")
        ref_model=$bench_model
    fi
    for attention in auto tiled fused matmul; do
        for len in 128 256; do
            RAYON_NUM_THREADS=$threads "$bin" bench --forward-only "${dir_args[@]}" --dtype f32 \
                --attention "$attention" --length "$len" --runs 20 --warmup 3 --json \
                > "$out/forward-$model-$attention-$len.json"
        done
    done
    if [[ -n "$ref" ]]; then
        python3 benches/reference/llada_reference_bench.py time --ref-dir "$ref" --model-dir "$ref_model" \
            --lengths 128,256 --runs 20 --warmup 3 --threads "$threads" --json > "$out/reference-$model.json"
        # The same comparison in 5 alternating rounds: a ratio between neighbours in time.
        python3 benches/forward_rounds.py --bin "$bin" --ref-dir "$ref" "${dir_args[@]}" \
            --rounds 5 --runs 10 --threads "$threads" > "$out/forward-rounds-$model.json"
    fi
done

# Caching and parallel decoding against plain decoding on the embedded model: a canvas of 256
# tokens (the model's context: prompt + 236 generated), block 32, 20 story prompts, every setting
# timed in the same run as the one plain baseline.
settings=()
for spec in ${SETTINGS:-low-confidence:threshold=0.9:cache=dual low-confidence:threshold=0.7:cache=dual \
        low-confidence:threshold=0.5:cache=dual low-confidence:factor=1:cache=dual \
        low-confidence:threshold=0.7 low-confidence:cache=dual low-confidence:cache=prefix}; do
    settings+=(--setting "$spec")
done
"$bin" bench --against-plain --seeds 20 --length 236 --block-length 32 "${settings[@]}" --json \
    > "$out/against-plain.json"

# Generation at length 128 with the default schedule (the model card's latency figure).
"$bin" bench --length 128 --runs 3 --json > "$out/generate-128.json"
echo "wrote $out; tables: scripts/benchmarks_md.py $out"
