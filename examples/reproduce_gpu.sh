#!/usr/bin/env bash
# Reproduce the Transformer² paper's Tables 1, 2, 3 and 5 at paper-like sizes on one GPU machine with
# meta-llama/Meta-Llama-3-8B-Instruct (experts, Tables 1/2/5) and mistralai/Mistral-7B-Instruct-v0.3 (transfer
# target, Table 3), then render them with `t2 report`.
#
# Usage: bash examples/reproduce_gpu.sh [RESULTS_DIR]     (default runs/repro-gpu)
# Needs: a CUDA GPU (>= 40 GB for 8B training in bf16; 80 GB comfortable), both models in the local Hub cache
# (HF_HUB_OFFLINE=1 is set), `pip install -e '.[vllm]'` for --backend vllm, and the data in $T2_DATA_DIR
# (default ../shared/datasets) or the Hub. Sizes are environment variables (STEPS=200 LIM=0 ...; LIM=0 = whole split).
#
# Resumable exactly like reproduce_cpu.sh: RESULTS_DIR/<table>/<row>/<step>.done marks a finished step; `t2 train`
# continues from its checkpoint. Layout as read by `t2 report` (see t2cli/report.py):
#   table1/{base,lora,svf}/<task>             gsm8k, mbpp (MBPP-pro is not available offline), arc_easy — Llama-3-8B
#   table2/{base,lora,prompt,cls,fewshot}/<task>  unseen tasks math, humaneval, arc_challenge — Llama-3-8B
#   table3/{base,ordered,shuffled}/<task>     Llama experts moved onto Mistral-7B, few-shot adaptation as in the paper
#   table5/{mlp-rl,attn-rl,all-rl,mlp-ntp,lora-ntp,lora-rl}/<task>  ablation on gsm8k, mbpp, arc_easy
#
# Where the commands allow it, evaluation uses --backend vllm. `t2 train`, `t2 classify-train` and `t2 adapt`
# generate with the Hugging Face backend (they have no --backend option), so they are the slow steps.
# Hyper-parameters not stated in the paper are t2's defaults; sizes below are starting points, not the paper's
# exact budget (e.g. the paper runs CEM for up to 100 iterations; here CEM_ITERS=30).
set -euo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,22p' "$0"; exit 0; fi
HERE="$(cd "$(dirname "$0")/.." && pwd)"
R="${1:-runs/repro-gpu}"
if [ -z "${T2_DATA_DIR:-}" ] && [ -d "$HERE/../shared/datasets" ]; then export T2_DATA_DIR="$HERE/../shared/datasets"; fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
command -v t2 >/dev/null || { echo "error: t2 is not on PATH: pip install -e '.[vllm]'" >&2; exit 1; }
if [ "${T2_ALLOW_NO_GPU:-0}" != 1 ]; then  # 1: skip the check (dry runs of this script with a stub t2)
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "error: no CUDA device: run examples/reproduce_cpu.sh on CPU (or set T2_ALLOW_NO_GPU=1)" >&2; exit 1; }
fi

: "${LLAMA:=meta-llama/Meta-Llama-3-8B-Instruct}" "${MISTRAL:=mistralai/Mistral-7B-Instruct-v0.3}"
: "${BACKEND:=vllm}" "${TP:=1}"
: "${STEPS:=100}" "${BATCH:=64}" "${SPP:=4}" "${MICRO:=8}" "${VAL_EVERY:=10}" "${VAL_LIM:=200}"
: "${LORA_STEPS:=200}" "${LORA_RANK:=16}"
: "${CLS_STEPS:=50}" "${CLS_PER_LABEL:=500}" "${CLS_HELDOUT:=200}"
: "${SHOTS:=10}" "${CEM_ITERS:=30}" "${CEM_POP:=16}" "${LIM:=0}" "${ADAPT_LIM:=500}" "${EVAL_BATCH:=32}"
mkdir -p "$R"
START=$SECONDS

. "$HERE/examples/_steps.sh"
limit_flag() { [ "$1" != 0 ] && echo --limit "$1" || true; }
train_svf() {  # DIR TASK [flags...]
  local dir="$1" task="$2"; shift 2
  step "$dir/train.done" t2 train --model "$LLAMA" --task "$task" --out "$dir" --steps "$STEPS" --batch-size "$BATCH" \
    --samples-per-prompt "$SPP" --micro-batch-size "$MICRO" --val-every "$VAL_EVERY" --val-limit "$VAL_LIM" \
    --checkpoint-every "$VAL_EVERY" --decompose "$@" $(resume_flag "$dir")
}
train_lora() {  # DIR TASK [flags...]
  local dir="$1" task="$2"; shift 2
  step "$dir/train.done" t2 train --model "$LLAMA" --task "$task" --method lora --lora-rank "$LORA_RANK" --out "$dir" \
    --steps "$LORA_STEPS" --batch-size "$BATCH" --micro-batch-size "$MICRO" --val-every "$VAL_EVERY" \
    --val-limit "$VAL_LIM" "$@"
}
evaluate() {  # DIR TASK MODEL [flags...]
  local dir="$1" task="$2" model="$3"; shift 3
  step "$dir/eval.done" t2 eval --model "$model" --task "$task" $(limit_flag "$LIM") --batch-size "$EVAL_BATCH" \
    --backend "$BACKEND" --tensor-parallel-size "$TP" --out "$dir" "$@"
}

TRAIN_TASKS=(gsm8k mbpp arc_easy)
UNSEEN=(math humaneval arc_challenge)
echo "== t2 reproduction on GPU → $R"
step "$R/decompose-llama.done" t2 decompose "$LLAMA" --targets all
step "$R/decompose-mistral.done" t2 decompose "$MISTRAL" --targets all

echo "== Table 1: fine-tuning (base / LoRA / SVF) on ${TRAIN_TASKS[*]}"
T1="$R/table1"
EXPERTS=()
for task in "${TRAIN_TASKS[@]}"; do
  train_svf "$T1/svf/train-$task" "$task"
  train_lora "$T1/lora/train-$task" "$task"
  EXPERTS+=(--experts "$T1/svf/train-$task/expert.safetensors")
  evaluate "$T1/base/$task" "$task" "$LLAMA"
  evaluate "$T1/svf/$task" "$task" "$LLAMA" --expert "$T1/svf/train-$task/expert.safetensors"
  evaluate "$T1/lora/$task" "$task" "$LLAMA" --lora "$T1/lora/train-$task/lora-$task"
done

echo "== Table 2: self-adaptation on ${UNSEEN[*]}"
T2="$R/table2"
step "$T2/cls/classifier.done" t2 classify-train --model "$LLAMA" "${EXPERTS[@]}" --out "$T2/cls/classifier" \
  --steps "$CLS_STEPS" --per-label-limit "$CLS_PER_LABEL" --heldout-limit "$CLS_HELDOUT" --decompose
for task in "${UNSEEN[@]}"; do
  evaluate "$T2/base/$task" "$task" "$LLAMA"
  # LoRA row: the adapter of the closest training task (math -> gsm8k, humaneval -> mbpp, arc_challenge -> arc_easy)
  near=$(case $task in math) echo gsm8k;; humaneval) echo mbpp;; *) echo arc_easy;; esac)
  evaluate "$T2/lora/$task" "$task" "$LLAMA" --lora "$T1/lora/train-$near/lora-$near"
  A=(--model "$LLAMA" --task "$task" "${EXPERTS[@]}" $(limit_flag "$ADAPT_LIM") --batch-size "$EVAL_BATCH")
  step "$T2/prompt/$task/adapt.done" t2 adapt --strategy prompt "${A[@]}" --no-compare --out "$T2/prompt/$task"
  step "$T2/cls/$task/adapt.done" t2 adapt --strategy cls --classifier "$T2/cls/classifier/expert.safetensors" \
    "${A[@]}" --no-compare --out "$T2/cls/$task"
  step "$T2/fewshot/$task/adapt.done" t2 adapt --strategy fewshot "${A[@]}" --shots "$SHOTS" \
    --iterations "$CEM_ITERS" --population "$CEM_POP" --compare --out "$T2/fewshot/$task"
done

echo "== Table 3: Llama-3-8B experts on Mistral-7B, singular components ordered vs shuffled (few-shot adaptation)"
T3="$R/table3"
for order in ordered shuffled; do
  MOVED=()
  for task in "${TRAIN_TASKS[@]}"; do
    dst="$T3/experts/$task.$order.safetensors"
    step "$T3/experts/$task.$order.done" t2 transfer "$T1/svf/train-$task/expert.safetensors" --to "$MISTRAL" \
      --order "$order" --seed 0 --out "$dst" --decompose
    MOVED+=(--experts "$dst")
  done
  for task in "${UNSEEN[@]}"; do
    step "$T3/$order/$task/adapt.done" t2 adapt --strategy fewshot --model "$MISTRAL" --task "$task" "${MOVED[@]}" \
      $(limit_flag "$ADAPT_LIM") --batch-size "$EVAL_BATCH" --shots "$SHOTS" --iterations "$CEM_ITERS" \
      --population "$CEM_POP" --no-compare --out "$T3/$order/$task"
  done
done
# the base row on the same first ADAPT_LIM examples (the few-shot rows lose their SHOTS drawn examples)
for task in "${UNSEEN[@]}"; do LIM=$ADAPT_LIM evaluate "$T3/base/$task" "$task" "$MISTRAL"; done

echo "== Table 5: ablation (modules MLP / attention / both, RL vs next-token, LoRA) on ${TRAIN_TASKS[*]}"
T5="$R/table5"
for task in "${TRAIN_TASKS[@]}"; do
  # mlp-rl and lora-ntp are the Table 1 runs (same flags): copy their summaries instead of recomputing
  for pair in "mlp-rl:$T1/svf/$task" "lora-ntp:$T1/lora/$task"; do
    row="${pair%%:*}" src="${pair#*:}"
    if [ ! -f "$T5/$row/$task/summary.json" ]; then mkdir -p "$T5/$row/$task" && cp "$src/summary.json" "$T5/$row/$task/"; fi
  done
  train_svf "$T5/attn-rl/train-$task" "$task" --targets attn
  train_svf "$T5/all-rl/train-$task" "$task" --targets all
  train_svf "$T5/mlp-ntp/train-$task" "$task" --objective ntp
  train_lora "$T5/lora-rl/train-$task" "$task" --objective rl --samples-per-prompt "$SPP"
  for row in attn-rl all-rl mlp-ntp; do
    evaluate "$T5/$row/$task" "$task" "$LLAMA" --expert "$T5/$row/train-$task/expert.safetensors"
  done
  evaluate "$T5/lora-rl/$task" "$task" "$LLAMA" --lora "$T5/lora-rl/train-$task/lora-$task"
done

echo "== report"
t2 report "$R"
echo "== done in $(( (SECONDS - START) / 60 )) min wall-clock; CPU time (user/sys: shell, then children):"
times
