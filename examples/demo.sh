#!/usr/bin/env bash
# End to end on the embedded default model (SmolLM2-135M-Instruct) and the local data, CPU-sized:
# decompose -> baseline eval -> train an SVF expert with RL -> evaluate it against the base model.
# Usage: bash examples/demo.sh [RUN_DIR]    (every step is resumable: re-run after an interruption)
set -euo pipefail
RUN="${1:-runs/demo}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${T2_DATA_DIR:-}" ] && [ -d "$HERE/../shared/datasets" ]; then
  export T2_DATA_DIR="$HERE/../shared/datasets"
fi
: "${T2_DATA_DIR:?set T2_DATA_DIR to a folder laid out like ../shared/datasets (or unset HF_HUB_OFFLINE to use the Hub)}"
LIMIT="${DEMO_LIMIT:-60}"
STEPS="${DEMO_STEPS:-4}"
mkdir -p "$RUN"

echo "== 1/4 decompose the embedded default (cached after the first run)"
t2 decompose --json | tee "$RUN/decompose.json"

# ARC-Easy with the choices' text as the answer (arc_easy_text): a 135M model answers letters at chance.
echo "== 2/4 train an ARC-Easy SVF expert ($STEPS RL steps)"
t2 train --task arc_easy_text --steps "$STEPS" --batch-size 8 --samples-per-prompt 4 --micro-batch-size 16 \
  --max-new-tokens 24 --val-every 2 --val-limit 40 --train-limit 400 --out "$RUN/train-arc_easy_text" \
  $( [ -f "$RUN/train-arc_easy_text/checkpoint.pt" ] && echo --resume ) --json | tee "$RUN/train.json"

echo "== 3/4 evaluate base and expert on ARC-Easy test (first $LIMIT)"
t2 eval --task arc_easy_text --limit "$LIMIT" --with-base --expert "$RUN/train-arc_easy_text/expert.safetensors" \
  --out "$RUN/eval"

echo "== 4/4 done: results in $RUN"
