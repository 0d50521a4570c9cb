#!/usr/bin/env bash
# One-GPU check, about 8 minutes: the throughput matrix (PyTorch with AMP + channels-last,
# Keras with mixed precision on the installed backend) and the `paper` preset for PyTorch
# resnet50 on a few LOPO folds with a short schedule. Prints a short table last.
# Usage: AGEZOO_FGNET_DIR=... bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
echo "keras backend: $($PY -c 'import keras; print(keras.config.backend())' 2>/dev/null)" | tee -a "$OUT/gpu.txt"

table="$OUT/table.txt"
: > "$table"
run() { timeout 150 "$PY" -m benchmarks.throughput --out "$OUT" "$@" 2>>"$OUT/stderr.log" | tail -1 | tee -a "$table"; }
for mode in train infer; do
  run --framework torch --model resnet50 --size 224 --batch 128 --mode "$mode" --precision bf16 --steps 20
  run --framework torch --model resnet50 --size 224 --batch 128 --mode "$mode" --precision fp32 --steps 10
  run --framework keras --model resnet34 --size 224 --batch 128 --mode "$mode" --precision fp16 --steps 20
  run --framework keras --model inception_v3 --size 299 --batch 64 --mode "$mode" --precision fp16 --steps 20
done

# The paper preset, PyTorch resnet50 only, 2 folds, a short schedule (ImageNet weights when
# the machine can download them; otherwise from scratch, as the result records).
cat > "$OUT/paper-short.yaml" <<'YAML'
name: paper-short
mode: finetune
data: {dataset: fgnet, size: 224}
protocol: {kind: lopo, val_fraction: 0.1}
train:
  optim: {name: sgd, lr: 0.01, momentum: 0.9, weight_decay: 0.0005, batch_size: 64, epochs: 6,
          schedule: step, step_size: 4, gamma: 0.1}
cells:
  - {framework: torch, model: resnet50, loss: mean_variance, weights: auto}
YAML
timeout 200 "$PY" -m benchmarks.run "$OUT/paper-short.yaml" --out "$OUT/paper-short" --folds 2 \
  2>>"$OUT/stderr.log" | tail -3

echo
echo "== agezoo GPU check =="
cat "$OUT/gpu.txt"
cat "$table"
grep -h '"fold_mae"' "$OUT"/paper-short/results/*/*.json 2>/dev/null | head -5
