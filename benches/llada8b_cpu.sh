#!/usr/bin/env bash
# How fast LLaDA-8B runs on this CPU, measured on random-weight slices of its exact shape
# (benches/reference/make_llada8b_slice.py): forward passes of a 1-block and a 2-block slice give
# the cost of one block and of the rest (embedding, 126k-row head); 32 blocks are extrapolated.
#   benches/llada8b_cpu.sh [LENGTH] [OUT_JSON]
# Needs python3 with torch and safetensors, ~6 GB of disk under ~/.cache/dlm-tui and ~8 GB of RAM.
set -euo pipefail
cd "$(dirname "$0")/.."
length=${1:-128}
out=${2:-/dev/stdout}
cache=${HOME}/.cache/dlm-tui
cargo build --release --quiet
for n in 1 2; do
  [ -f "$cache/llada8b-$n/model.safetensors" ] ||
    python3 benches/reference/make_llada8b_slice.py --layers "$n" --out "$cache/llada8b-$n"
done
run() {
  ./target/release/dlm-tui bench --forward-only --model-dir "$cache/llada8b-$1" --dtype bf16 \
    --length "$length" --runs "${RUNS:-3}" --warmup 1 --json
}
one=$(run 1)
two=$(run 2)
python3 - "$one" "$two" "$length" > "$out" <<'PY'
import json, sys
one, two, length = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
block = two["forward_ms_median"] - one["forward_ms_median"]
rest = one["forward_ms_median"] - block
full = rest + 32 * block
print(json.dumps({
    "length": length, "dtype": "bf16", "threads": one["threads"],
    "slice_1_block_ms": one["forward_ms_median"], "slice_2_blocks_ms": two["forward_ms_median"],
    "per_block_ms": round(block, 1), "embedding_and_head_ms": round(rest, 1),
    "llada_8b_forward_s": round(full / 1000, 1),
    "seconds_per_token_one_step_per_token": round(full / 1000, 1),
    "weights_gib": round(8.02e9 * 2 / 2**30, 1),
}, indent=1))
PY
