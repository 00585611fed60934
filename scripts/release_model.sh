#!/usr/bin/env bash
# Makes a trained model folder the embedded default model and regenerates everything measured
# from it: the previous model's eval on the same held-out split, the new model's eval, a bench
# run, the defaults table (scripts/choose_defaults.py) and the model card (scripts/model_card.py).
# The quality bars in tests/model_quality.rs and the screenshots (scripts/screenshots.sh) are
# updated after it, by hand and by script.
#
#   scripts/release_model.sh ~/.cache/dlm-tui/v2-model ../shared/corpus/tinystories-4m.txt
#
# Reports go to $OUT (default target/model-release/). Set GPU_MINUTES if part of the training ran
# on a GPU, TRAIN_TOKENS to the training split's token count that `dlm-tui train` printed, and
# OUTLOOK to a paragraph on what the figures mean (printed after the quality table).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1
CORPUS=$2
OUT=${OUT:-target/model-release}
BIN=target/release/dlm-tui
mkdir -p "$OUT"

cargo build --release
# The model being replaced, measured on the new held-out split, and its training record.
if [ ! -f "$OUT/eval-before.json" ]; then
    nice "$BIN" eval --model-dir models/default --corpus "$CORPUS" --json "$OUT/eval-before.json"
fi
# The record of the model being replaced is kept as the next training-vN.json (stage N), unless it
# is already kept (a re-run of this script) or is the record being released.
if ! cmp -s models/default/training.json "$MODEL/training.json"; then
    kept=no
    for f in models/default/training-v*.json; do
        [ -f "$f" ] && cmp -s "$f" models/default/training.json && kept=yes
    done
    if [ $kept = no ]; then
        n=$(ls models/default/training-v*.json 2>/dev/null | wc -l)
        cp models/default/training.json "models/default/training-v$((n + 1)).json"
    fi
fi
# The tokenizer is kept from stage 1: keep the measurement that chose its size.
if [ ! -f "$OUT/vocab.txt" ]; then
    sed -n '/^vocab  held-out/,/^```/p' models/default/MODEL_CARD.md | sed '$d' > "$OUT/vocab.txt"
fi

cp "$MODEL"/model.safetensors "$MODEL"/config.json "$MODEL"/tokenizer.json "$MODEL"/training.json \
    models/default/
cargo build --release
nice "$BIN" eval --corpus "$CORPUS" --json "$OUT/eval.json"
nice "$BIN" bench --length 128 --steps 128 --block-length 32 --warmup 1 --runs 3 --json > "$OUT/bench.json"
python3 scripts/choose_defaults.py --bin "$BIN" --out "$OUT/defaults.json"
python3 scripts/model_card.py --eval "$OUT/eval.json" --eval-before "$OUT/eval-before.json" \
    --bench "$OUT/bench.json" $(ls models/default/training-v*.json | sort -V | sed 's/^/--previous /') \
    --defaults "$OUT/defaults.json" --gpu-minutes "${GPU_MINUTES:-0}" --vocab-table "$OUT/vocab.txt" \
    ${TRAIN_TOKENS:+--train-tokens "$TRAIN_TOKENS"} ${OUTLOOK:+--outlook "$OUTLOOK"}
echo "model card: models/default/MODEL_CARD.md; reports in $OUT"
