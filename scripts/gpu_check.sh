#!/usr/bin/env bash
# GPU check of the CUDA build: golden tests on the GPU, CPU-vs-GPU generation, timings (JSON to $OUT).
# Run on a lent GPU machine from the repository root, with .gpucarry/ carried:
#   .gpucarry/gpu-bins.tar.xz  xz'd tar of dlm-tui and the four golden test binaries, built here with
#                              `cargo build/test --release --features cuda` (CUDA 13 pip toolchain,
#                              CUDA_COMPUTE_CAP=90) and stripped;
#   .gpucarry/check.sh         this script.
# Writes $OUT/results.tar (logs, generated texts, bench JSON); BENCHMARKS.md quotes it.
set -u
R=$OUT/r; mkdir -p $R
ROOT=$PWD
BIN=/tmp/dlm-gpu-bin
mkdir -p "$BIN" && tar xJf .gpucarry/gpu-bins.tar.xz -C "$BIN" || exit 1
LIBDIRS=$(find /opt/torch/.venv/lib /usr/local/cuda/ /usr/local/cuda-13*/ /usr/lib/x86_64-linux-gnu /usr/lib64 \
  \( -name 'libcublas.so.13' -o -name 'libcublasLt.so.13' -o -name 'libcurand.so.10' -o -name 'libcudart.so.13' \) 2>/dev/null \
  | xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="${LIBDIRS}${LD_LIBRARY_PATH:-}"
nvidia-smi -L; nproc; grep -m1 "model name" /proc/cpuinfo; grep -o -m1 -w avx2 /proc/cpuinfo
G=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -o -E 'H100|H200|A100|L40S' | tr A-Z a-z); G=${G:-gpu}
[ -e /work/main ] || { mkdir -p /work && ln -s "$ROOT" /work/main; }
D="$BIN/dlm-tui"
rc=0
for t in ${GOLDEN-golden_llada golden_dream golden_a2d golden_modernbert}; do
  echo "=== $t"; DLM_TUI_TEST_DEVICE=cuda timeout 120 "$BIN/$t" --test-threads=1 > $R/$t-cuda.log 2>&1 || rc=1; grep -E "^test |test result" $R/$t-cuda.log
done
for dev in cpu cuda; do
  timeout 60 "$D" generate --device $dev --prompt "Once upon a time" --length 64 --steps 64 --block-length 32 > $R/gen-$dev.txt 2>/dev/null; echo "generate $dev rc=$?"
done
cmp $R/gen-cpu.txt $R/gen-cuda.txt && echo "SAME TOKENS cpu vs cuda" || echo DIFFERENT
for c in prefix dual; do
  for dev in cpu cuda; do
    timeout 60 "$D" generate --device $dev --prompt "Once upon a time" --length 64 --steps 64 --block-length 32 --cache $c --threshold 0.9 > $R/gen-$c-$dev.txt 2>/dev/null; echo "generate --cache $c $dev rc=$?"
  done
  cmp $R/gen-$c-cpu.txt $R/gen-$c-cuda.txt && echo "SAME TOKENS cpu vs cuda with --cache $c" || echo "DIFFERENT with --cache $c"
done
for dev in cuda cpu; do
  timeout 60 "$D" bench --device $dev --forward-only --length 256 --warmup 3 --runs 20 --json > $R/$G-$dev-forward-256.json
  for c in none dual; do timeout 90 "$D" bench --device $dev --length 236 --block-length 32 --cache $c --warmup 1 --runs 3 --json > $R/$G-$dev-generate-236-$c.json; done
done
for a in tiled fused matmul; do
  timeout 60 "$D" bench --device cpu --attention $a --forward-only --length 256 --warmup 3 --runs 20 --json > $R/$G-cpu-forward-256-$a.json
done
for f in $R/$G-*.json; do echo "$(basename $f): $(grep -o -E '"(forward_ms_median|tokens_per_s|wall_ms_median)":[0-9.]+' $f | tr '\n' ' ')"; done
tar cf $OUT/results.tar -C $R . && rm -rf $R
exit $rc
