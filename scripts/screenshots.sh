#!/usr/bin/env bash
# Makes screenshots/*.png from the real app: drives the release binary in tmux, captures the
# pane with colours (capture-pane -e) and renders each capture with scripts/ansi_to_png.py.
# Needs tmux, python3 with Pillow, and fonts-dejavu-core. Rerun it whenever the views change:
#   cargo build --release && scripts/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The renderer's own dependency (scripts/ansi_to_png.py): Pillow, from PyPI if missing.
if ! python3 -c 'import PIL' 2>/dev/null; then
    echo "screenshots.sh: installing Pillow for scripts/ansi_to_png.py (pip install Pillow)" >&2
    python3 -m pip install --quiet Pillow || {
        echo "screenshots.sh: could not install Pillow; run: python3 -m pip install Pillow" >&2
        exit 1
    }
fi
command -v tmux >/dev/null || { echo "screenshots.sh: needs tmux (apt-get install tmux)" >&2; exit 1; }
bin="$PWD/target/release/dlm-tui"
out="$PWD/screenshots"
home="$(mktemp -d)"
session="dlm-shots-$$"
mkdir -p "$out"
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$home"' EXIT

tmux new-session -d -s "$session" -x 120 -y 36 "cd $home && HOME=$home COLORTERM=truecolor XDG_CONFIG_HOME= XDG_DATA_HOME= $bin"
sleep 2
keys() { tmux send-keys -t "$session" "$@"; sleep 0.3; }
shot() {
    sleep "${2:-0.5}"
    tmux capture-pane -e -p -t "$session" > "$home/$1.ansi"
    python3 scripts/ansi_to_png.py "$home/$1.ansi" "$out/$1.png"
    echo "screenshots/$1.png"
}

tmux send-keys -t "$session" -l "Once upon a time, there was a little girl named Lily. She loved to play in the park with her dog."
sleep 0.3
for _ in $(seq 1 61); do keys Left; done
for _ in $(seq 1 6); do keys S-Left; done
keys C-k
shot editor
# A slow, visible run: many steps over a long generation region.
keys F5
shot live-running 0.4
sleep 4
shot live-done
keys C-PPage; keys NPage; keys NPage; keys NPage
shot scrubbed
keys C-NPage
keys F2
shot confidence
keys F2
shot commit-order
keys F2
keys F7
keys F5
sleep 6
shot compare
keys C-d
shot charts
keys C-d
keys F1
shot help
keys Escape
sleep 0.3
# The token inspector on a single lane, part way through a run.
keys F7
keys F5
sleep 1.2
keys Tab; keys Tab
keys Space
keys i
keys Right; keys Right
shot inspector
keys Escape
sleep 0.3
keys C-q
sleep 1
# A saved trace replayed without a model, paused part way with the inspector open.
"$bin" generate --prompt "Once upon a time, there was a little girl named Lily." --length 64 --json --inspect > "$home/run.jsonl"
tmux kill-session -t "$session" 2>/dev/null || true
tmux new-session -d -s "$session" -x 120 -y 36 "cd $home && HOME=$home COLORTERM=truecolor XDG_CONFIG_HOME= XDG_DATA_HOME= $bin replay run.jsonl"
sleep 2.4
keys Space
keys i
shot replay
# ReMDM's loop masking committed tokens again: a saved run replayed at the step that remasked
# the most (those tokens are struck through).
"$bin" generate --prompt "Once upon a time, there was a little girl named Lily." --length 64 \
    --remdm loop --temperature 1 --top-p 0.9 --block-length 1024 --seed 1 --json --inspect \
    > "$home/remdm.jsonl"
step=$(python3 -c '
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if "\"step\"" in l]
steps = [s for s in steps if s.get("type") == "step"]
print(max(steps, key=lambda s: (len(s.get("remasked", [])), -s["step"]))["step"])' "$home/remdm.jsonl")
tmux kill-session -t "$session" 2>/dev/null || true
tmux new-session -d -s "$session" -x 120 -y 36 "cd $home && HOME=$home COLORTERM=truecolor XDG_CONFIG_HOME= XDG_DATA_HOME= $bin replay remdm.jsonl"
sleep 1.5
keys Space
keys C-PPage
for _ in $(seq 1 "$step"); do tmux send-keys -t "$session" Right; sleep 0.05; done
shot remdm
# A block-diffusion model (the SDAR test fixture: random weights, so its text is noise) part way
# through a run: the block view (cached blocks, the one being denoised, those to go), the block
# between the │ marks, and the lane's tokens per forward pass and cached extent in its stats.
tmux kill-session -t "$session" 2>/dev/null || true
tmux new-session -d -s "$session" -x 120 -y 36 "cd $home && HOME=$home COLORTERM=truecolor XDG_CONFIG_HOME= XDG_DATA_HOME= $bin --no-session --model-dir $PWD/tests/fixtures/sdar-tiny"
sleep 2
tmux send-keys -t "$session" -l "Once upon a time, there was a little girl named Lily."
sleep 0.3
keys F5
shot block-diffusion 1.2
