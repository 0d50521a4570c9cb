#!/usr/bin/env bash
# The GPU check: throughput (bare model vs the project's pipeline) of PyTorch with AMP (bf16)
# and channels-last, and of Keras 3 on JAX with mixed precision, for the design-card models at
# their paper sizes (ResNet-50 @224, ResNet-34 @224, InceptionV3 @299) and MobileNetV2 @224;
# then a short `paper`-preset run (PyTorch ResNet-50, Keras ResNet-34) on a few FG-NET LOPO folds.
#
# Runs on the GPU machine's image from the repository root, with its own `python3` (3.12,
# torch 2.11, JAX, no TensorFlow or Keras): Keras comes from the wheels `make gpu-bundle` put in
# gpu-bundle/, installed into a temporary folder, and FG-NET from gpu-bundle/fgnet unless
# AGEZOO_FGNET_DIR is set. Every step has its own timeout, and steps are skipped once the
# budget (GPU_CHECK_BUDGET seconds, default 450) is spent, so a hung step cannot eat the rest.
# Writes at most 4 files into $OUT: summary.txt, steps.log, results.tgz (all JSON and logs) and
# env.txt.
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh         # on the GPU machine (8 min at most)
#   GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh       # the CPU dry run: small sizes, ~6 min
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=${GPU_CHECK_DRY:-0}
PY=${PY:-python3}
OUT=${OUT:-runs/gpu-check}
BUDGET=${GPU_CHECK_BUDGET:-$([ "${GPU_CHECK_DRY:-0}" = 1 ] && echo 900 || echo 450)}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT" "$WORK/logs" "$WORK/json"
: >"$OUT/steps.log"
: >"$OUT/summary.txt"

export PYTHONPATH="$PWD"
export AGEZOO_CACHE="$WORK/cache"
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
export TF_CPP_MIN_LOG_LEVEL=3
# JAX compiles every weight initialiser and step anew in each process; its persistent cache
# lets the later steps reuse them (Keras ResNet-34 built in 1.6 s instead of 10 s on a CPU).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$WORK/jax-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
if [ -z "${AGEZOO_FGNET_DIR:-}" ] && [ -d gpu-bundle/fgnet/images ]; then
  export AGEZOO_FGNET_DIR="$PWD/gpu-bundle/fgnet"
fi
if ! "$PY" -c "import keras" 2>/dev/null; then
  # Wheels for another Python fail to install and are skipped; the import check below decides.
  for wheel in gpu-bundle/wheels/*.whl; do
    "$PY" -m pip install --quiet --no-index --no-deps --target "$WORK/site" "$wheel" \
      >>"$WORK/logs/pip.log" 2>&1 || true
  done
  export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi

{
  echo "date: $(date -u +%FT%TZ)"
  command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" - <<'PYEOF'
import platform
print("python", platform.python_version())
for name in ("torch", "torchvision", "jax", "keras", "numpy", "cv2"):
    try:
        module = __import__(name)
        print(name, module.__version__)
    except Exception as exc:  # report, do not stop the check
        print(name, "unavailable:", type(exc).__name__, exc)
try:
    import keras
    print("keras backend:", keras.config.backend())
except Exception:
    pass
try:
    import torch
    print("torch cuda:", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception:
    pass
PYEOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

STEPS_LOG=$OUT/steps.log SUMMARY=$OUT/summary.txt  # a lane writes its own, merged after it
step() {  # step NAME TIMEOUT_S COMMAND...: runs it unless the budget is spent, logs rc and time
  local name=$1 limit=$2
  shift 2
  if [ "$SECONDS" -ge "$BUDGET" ]; then
    printf '%-36s skipped (budget of %ss spent)\n' "$name" "$BUDGET" | tee -a "$STEPS_LOG"
    return 0
  fi
  local left=$((BUDGET - SECONDS))
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
  local rc=$?
  printf '%-36s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$STEPS_LOG"
  # The throughput line and its flag's reasons (indented lines after it), if any.
  grep -hE "^(torch|keras) .*img/s|^    suspect: " "$WORK/logs/$name.log" >>"$SUMMARY"
}

# Throughput repeats: at least WARMUP warm-up repeats, more until the timing settles (compiles
# excluded), then REPEATS timed ones (benchmarks/throughput.py).
if [ "$DRY" = 1 ]; then  # every step once, small, yet large enough that a CPU's figures mean something
  S224=64 S299=75 B=8 STEPS=6 WARMUP=2 REPEATS=3 EPOCHS=1 FOLDS=1 MAXSTEPS=1 LIMIT=150
  KERAS_SIZE=32 LOPO_SIZE=32  # Keras on JAX builds, compiles and runs slowly on a CPU
else
  S224=224 S299=299 B=128 STEPS=20 WARMUP=2 REPEATS=3 EPOCHS=6 FOLDS=3 MAXSTEPS=0 LIMIT=110
  KERAS_SIZE=$S224 LOPO_SIZE=$S224
fi

PIN=
bench() {  # bench FRAMEWORK MODEL SIZE PRECISION MODE [BATCH] [STEPS]
  # On a CPU, XLA takes 20-40 s to compile each Keras training step, two per step (bare and
  # pipeline); the dry run trains one Keras model (ResNet-34) and runs the others for inference.
  if [ "$DRY" = 1 ] && [ "$1" = keras ] && [ "$5" = train ] && [ "$2" != resnet34 ]; then
    printf '%-36s skipped (dry run: one Keras training step is enough)\n' "$1-$2-$3px-$5-$4" |
      tee -a "$STEPS_LOG"
    return 0
  fi
  step "$1-$2-$3px-$5-$4" "$LIMIT" $PIN "$PY" -m benchmarks.throughput --framework "$1" \
    --model "$2" --size "$3" --precision "$4" --mode "$5" --batch "${6:-$B}" --steps "${7:-$STEPS}" \
    --warmup "$WARMUP" --repeats "$REPEATS" --out "$WORK/json"
}
lane() {  # lane FRAMEWORK: its throughput steps, training then inference
  for mode in train infer; do
    # In the dry run, every repeat lasts about a second or more on a CPU (shorter ones spread
    # 25-40 %): inference takes twice the batches of training, the fast models 3x (training)
    # and 10x (inference).
    local steps=$STEPS fast=$STEPS
    if [ "$DRY" = 1 ]; then
      steps=$([ "$mode" = infer ] && echo $((STEPS * 2)) || echo "$STEPS")
      fast=$([ "$mode" = infer ] && echo $((STEPS * 10)) || echo $((STEPS * 3)))
    fi
    if [ "$1" = torch ]; then
      bench torch resnet50 "$S224" bf16 "$mode" "$B" "$steps"
      bench torch mobilenet_v2 "$S224" bf16 "$mode" "$B" "$fast"
    else
      bench keras resnet34 "$KERAS_SIZE" bf16 "$mode" "$B" "$steps"
      bench keras inception_v3 "$S299" bf16 "$mode" $((B / 2 > 1 ? B / 2 : 2)) "$fast"
      bench keras mobilenet_v2 "$KERAS_SIZE" bf16 "$mode" "$B" "$fast"
    fi
  done
}
# The dry run times each framework on a core of its own, the two side by side: small batches on
# two shared cores spread 10-30 % from one repeat to the next (a pipeline / bare ratio came out
# 0.70 and 0.97 in two runs of one cell; pinned, 0.97-1.01 with spreads of 2-10 %), and the
# lanes halve its time. PyTorch and XLA size their thread pools from the CPUs a process may
# use. The bare and pipeline repeats of a cell take turns, so what the other lane costs meets
# both alike. The GPU run is one lane, not pinned.
CORES=()
if [ "$DRY" = 1 ] && command -v taskset >/dev/null; then
  read -ra CORES <<<"$("$PY" -c 'import os; print(*sorted(os.sched_getaffinity(0))[:2])')"
fi
if [ "${#CORES[@]}" -ge 2 ]; then
  for i in 0 1; do
    fw=$([ "$i" = 0 ] && echo torch || echo keras)
    (PIN="taskset -c ${CORES[$i]}" STEPS_LOG=$WORK/$fw.steps SUMMARY=$WORK/$fw.summary
      : >"$STEPS_LOG"
      : >"$SUMMARY"
      lane "$fw") &
  done
  wait
  cat "$WORK/torch.steps" "$WORK/keras.steps" >>"$OUT/steps.log"
  cat "$WORK/torch.summary" "$WORK/keras.summary" >>"$OUT/summary.txt"
else
  [ "${#CORES[@]}" = 1 ] && PIN="taskset -c ${CORES[0]}"
  lane torch
  lane keras
fi

# The paper preset's recipe on a few LOPO folds, short schedule; no ImageNet weights can be had
# offline, so both train from scratch (recorded as pretrained: false).
cat >"$WORK/paper-short.yaml" <<YAML
name: paper-short
mode: finetune
data: {dataset: fgnet, size: $LOPO_SIZE}
protocol: {kind: lopo, val_fraction: 0.1}
train:
  optim: {name: sgd, lr: 0.01, momentum: 0.9, weight_decay: 0.0005, batch_size: 64,
          epochs: $EPOCHS, schedule: step, step_size: 4, gamma: 0.1}
  max_steps_per_epoch: $MAXSTEPS
cells:
  - {framework: torch, model: resnet50, loss: mean_variance, weights: auto}
  - {framework: keras, model: resnet34, loss: mean_variance, weights: auto}
YAML
step paper-short-lopo $((DRY == 1 ? 240 : 200)) "$PY" -m benchmarks.run "$WORK/paper-short.yaml" \
  --out "$WORK/paper-short" --folds "$FOLDS" --no-report
"$PY" - "$WORK/paper-short" >>"$OUT/summary.txt" 2>>"$WORK/logs/summary.log" <<'PYEOF'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("results/*/*.json")):
    r = json.loads(path.read_text())
    print(f"paper-short {r['cell']:32s} {r['fold']:10s} MAE {r['fold_mae']:6.2f}  "
          f"train {r['train_seconds']:6.1f} s  pretrained {r['pretrained']}  {r['device']}")
PYEOF

tar -czf "$OUT/results.tgz" -C "$WORK" json logs $(cd "$WORK" && ls -d paper-short 2>/dev/null)
echo
echo "== agezoo GPU check ($( [ "$DRY" = 1 ] && echo 'CPU dry run' || echo GPU), ${SECONDS}s) =="
cat "$OUT/steps.log"
echo
cat "$OUT/summary.txt"
FAILED=$(grep -c ' rc=[1-9]' "$OUT/steps.log")
if [ "$FAILED" -gt 0 ]; then
  echo "$FAILED step(s) failed; their logs are in results.tgz (logs/)"
  exit 1
fi
