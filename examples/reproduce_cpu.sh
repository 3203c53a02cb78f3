#!/usr/bin/env bash
# Reproduce the shape of the Transformer² paper's Tables 1, 2, 3 and 5 on CPU with the embedded default model
# (SmolLM2-135M-Instruct) and the local data, then render them with `t2 report`.
#
# Usage: bash examples/reproduce_cpu.sh [--quick] [RESULTS_DIR]
#   full mode  (default RESULTS_DIR runs/repro-cpu):       sized for ~3 h on 2 CPU cores (an estimate, not measured)
#   --quick    (default RESULTS_DIR runs/repro-cpu-quick): tiny limits and steps, a smoke test of every step (<~15 min)
# Every size below can be overridden from the environment (e.g. LIM_ARC=500 RL_STEPS=60 bash examples/...).
#
# Resumable: each step writes RESULTS_DIR/<table>/<row>/<step>.done when it finishes and is skipped when that file
# exists; an interrupted `t2 train` continues from its checkpoint (--resume). Delete a .done file to redo a step.
#
# Layout (the convention `t2 report` reads; see t2cli/report.py):
#   table1/{base,lora,svf}/...          fine-tuning on the training tasks ($ARC, gsm8k)
#   table2/{base,lora,prompt,cls,fewshot}/...   self-adaptation on the unseen task $ARCC
#   table3/{base,ordered,shuffled}/...  transfer of the $ARC expert with singular components ordered vs shuffled
#   table5/{mlp-rl,attn-rl,all-rl,mlp-ntp,lora-ntp,lora-rl}/...  ablation on $ARC
# ARC runs in its text-choice format by default (ARC=arc_easy_text, ARCC=arc_challenge_text): SmolLM2-135M answers
# letters at chance, so letter rewards carry no signal (set ARC=arc_easy ARCC=arc_challenge for the paper's format).
#   report/report.md + PNGs
#
# Honest limits of a CPU run:
# * SmolLM2-135M is the only model available offline, so Table 3 transfers SmolLM2 experts onto SmolLM2 itself:
#   "ordered" is then an identity map (it must match the expert) and "shuffled" is the real control — it tests
#   whether the order of the singular components matters, not cross-model transfer (that needs reproduce_gpu.sh).
# * A 135M model scores near zero on GSM8K, so RL rewards there are almost all −1 and the gsm8k expert learns little
#   (GSM_OBJECTIVE=ntp trains it on the gold solutions instead); the ARC expert is the one with signal. Table 5 is
#   measured on ARC-Easy only.
# * Few-shot examples are drawn from the evaluation split and removed from it, so the fewshot row is scored on
#   slightly different examples than the others; its own matched base/expert rows (fewshot/base, …) are kept.
set -euo pipefail

QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,30p' "$0"; exit 0; fi
HERE="$(cd "$(dirname "$0")/.." && pwd)"
if [ $QUICK = 1 ]; then R="${1:-runs/repro-cpu-quick}"; else R="${1:-runs/repro-cpu}"; fi
if [ -z "${T2_DATA_DIR:-}" ] && [ -d "$HERE/../shared/datasets" ]; then export T2_DATA_DIR="$HERE/../shared/datasets"; fi
: "${T2_DATA_DIR:?set T2_DATA_DIR to a folder laid out like ../shared/datasets}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
command -v t2 >/dev/null || { echo "error: t2 is not on PATH: pip install -e . (or make install)" >&2; exit 1; }

if [ $QUICK = 1 ]; then
  : "${LIM_ARC:=20}" "${LIM_ARCC:=20}" "${LIM_GSM:=8}" "${ARC_TOK:=24}" "${GSM_TOK:=64}"
  : "${RL_STEPS:=2}" "${GSM_STEPS:=1}" "${LORA_STEPS:=2}" "${BATCH:=4}" "${SPP:=2}" "${MICRO:=8}"
  : "${VAL_EVERY:=2}" "${VAL_LIM:=10}" "${GSM_VAL_LIM:=4}" "${TRAIN_LIM:=200}"
  : "${CLS_STEPS:=2}" "${CLS_PER_LABEL:=16}" "${CLS_HELDOUT:=8}" "${SHOTS:=3}" "${CEM_ITERS:=2}" "${CEM_POP:=2}"
else
  : "${LIM_ARC:=300}" "${LIM_ARCC:=200}" "${LIM_GSM:=100}" "${ARC_TOK:=24}" "${GSM_TOK:=256}"
  : "${RL_STEPS:=20}" "${GSM_STEPS:=15}" "${LORA_STEPS:=20}" "${BATCH:=16}" "${SPP:=4}" "${MICRO:=16}"
  : "${VAL_EVERY:=10}" "${VAL_LIM:=100}" "${GSM_VAL_LIM:=40}" "${TRAIN_LIM:=2000}"
  : "${CLS_STEPS:=20}" "${CLS_PER_LABEL:=200}" "${CLS_HELDOUT:=100}" "${SHOTS:=10}" "${CEM_ITERS:=10}" "${CEM_POP:=8}"
fi
: "${EVAL_BATCH:=16}" "${ARC:=arc_easy_text}" "${ARCC:=arc_challenge_text}" "${GSM_OBJECTIVE:=rl}"
MODE=$([ $QUICK = 1 ] && echo quick || echo full)
mkdir -p "$R"
if [ -f "$R/MODE" ] && [ "$(cat "$R/MODE")" != "$MODE" ]; then
  echo "error: $R holds a $(cat "$R/MODE") run; use another RESULTS_DIR for a $MODE run" >&2; exit 2
fi
echo "$MODE" > "$R/MODE"
START=$SECONDS

. "$HERE/examples/_steps.sh"
# train_svf DIR TASK [extra t2 train flags...]: an SVF expert at DIR/expert.safetensors (resumable)
train_svf() {
  local dir="$1" task="$2"; shift 2
  local steps=$RL_STEPS tok=$ARC_TOK val=$VAL_LIM
  if [ "$task" = gsm8k ]; then steps=$GSM_STEPS tok=$GSM_TOK val=$GSM_VAL_LIM; fi
  step "$dir/train.done" t2 train --task "$task" --out "$dir" --steps "$steps" --batch-size "$BATCH" \
    --samples-per-prompt "$SPP" --micro-batch-size "$MICRO" --max-new-tokens "$tok" --val-every "$VAL_EVERY" \
    --val-limit "$val" --checkpoint-every "$VAL_EVERY" --train-limit "$TRAIN_LIM" --decompose "$@" $(resume_flag "$dir")
}
# train_lora DIR TASK [flags...]: a LoRA adapter at DIR/lora-TASK (LoRA runs keep no checkpoint)
train_lora() {
  local dir="$1" task="$2"; shift 2
  local tok=$ARC_TOK val=$VAL_LIM
  if [ "$task" = gsm8k ]; then tok=$GSM_TOK val=$GSM_VAL_LIM; fi
  step "$dir/train.done" t2 train --task "$task" --method lora --out "$dir" --steps "$LORA_STEPS" --batch-size "$BATCH" \
    --micro-batch-size "$MICRO" --max-new-tokens "$tok" --val-every "$VAL_EVERY" --val-limit "$val" \
    --train-limit "$TRAIN_LIM" "$@"
}
# evaluate DIR TASK LIMIT TOKENS [t2 eval flags...]: DIR/summary.json
evaluate() {
  local dir="$1" task="$2" limit="$3" tok="$4"; shift 4
  step "$dir/eval.done" t2 eval --task "$task" --limit "$limit" --max-new-tokens "$tok" --batch-size "$EVAL_BATCH" \
    --out "$dir" "$@"
}

echo "== t2 reproduction on CPU ($MODE) → $R   (data: $T2_DATA_DIR)"
echo "== 0 SVD cache of the embedded default (MLP and attention; cached after the first run)"
step "$R/decompose.done" t2 decompose --targets all

echo "== Table 1: fine-tuning (base / LoRA / SVF) on $ARC and gsm8k"
T1="$R/table1"
evaluate "$T1/base/$ARC" "$ARC" "$LIM_ARC" "$ARC_TOK"
evaluate "$T1/base/gsm8k" gsm8k "$LIM_GSM" "$GSM_TOK"
train_svf "$T1/svf/train-$ARC" "$ARC"
train_svf "$T1/svf/train-gsm8k" gsm8k --objective "$GSM_OBJECTIVE"
ARC_EXPERT="$T1/svf/train-$ARC/expert.safetensors"
GSM_EXPERT="$T1/svf/train-gsm8k/expert.safetensors"
evaluate "$T1/svf/$ARC" "$ARC" "$LIM_ARC" "$ARC_TOK" --expert "$ARC_EXPERT"
evaluate "$T1/svf/gsm8k" gsm8k "$LIM_GSM" "$GSM_TOK" --expert "$GSM_EXPERT"
train_lora "$T1/lora/train-$ARC" "$ARC"
train_lora "$T1/lora/train-gsm8k" gsm8k
ARC_LORA="$T1/lora/train-$ARC/lora-$ARC"
evaluate "$T1/lora/$ARC" "$ARC" "$LIM_ARC" "$ARC_TOK" --lora "$ARC_LORA"
evaluate "$T1/lora/gsm8k" gsm8k "$LIM_GSM" "$GSM_TOK" --lora "$T1/lora/train-gsm8k/lora-gsm8k"

echo "== Table 2: self-adaptation on the unseen task $ARCC (base / LoRA / prompt / cls / few-shot)"
T2="$R/table2"
evaluate "$T2/base" "$ARCC" "$LIM_ARCC" "$ARC_TOK"
evaluate "$T2/lora" "$ARCC" "$LIM_ARCC" "$ARC_TOK" --lora "$ARC_LORA"
ADAPT=(--task "$ARCC" --experts "$ARC_EXPERT" --experts "$GSM_EXPERT" --limit "$LIM_ARCC"
       --max-new-tokens "$ARC_TOK" --batch-size "$EVAL_BATCH")
step "$T2/prompt/adapt.done" t2 adapt --strategy prompt "${ADAPT[@]}" --no-compare --out "$T2/prompt"
step "$T2/cls/classifier.done" t2 classify-train --experts "$ARC_EXPERT" --experts "$GSM_EXPERT" \
  --out "$T2/cls/classifier" --steps "$CLS_STEPS" --batch-size "$BATCH" --micro-batch-size "$MICRO" \
  --per-label-limit "$CLS_PER_LABEL" --heldout-limit "$CLS_HELDOUT" --val-every "$VAL_EVERY" --val-limit "$VAL_LIM"
step "$T2/cls/adapt.done" t2 adapt --strategy cls --classifier "$T2/cls/classifier/expert.safetensors" \
  "${ADAPT[@]}" --no-compare --out "$T2/cls"
# --compare: base and each single expert on exactly the examples left after drawing the shots (rows fewshot/…)
step "$T2/fewshot/adapt.done" t2 adapt --strategy fewshot "${ADAPT[@]}" --shots "$SHOTS" \
  --iterations "$CEM_ITERS" --population "$CEM_POP" --compare --out "$T2/fewshot"

echo "== Table 3: ordered vs shuffled singular components (SmolLM2 → SmolLM2: the control available offline)"
T3="$R/table3"
mkdir -p "$T3/experts"
step "$T3/experts/ordered.done" t2 transfer "$ARC_EXPERT" --to smollm2-135m-instruct --order ordered \
  --out "$T3/experts/$ARC.ordered.safetensors" --decompose
step "$T3/experts/shuffled.done" t2 transfer "$ARC_EXPERT" --to smollm2-135m-instruct --order shuffled --seed 0 \
  --out "$T3/experts/$ARC.shuffled.safetensors" --decompose
for task in "$ARC" "$ARCC"; do
  lim=$([ "$task" = "$ARC" ] && echo "$LIM_ARC" || echo "$LIM_ARCC")
  evaluate "$T3/base/$task" "$task" "$lim" "$ARC_TOK"
  evaluate "$T3/ordered/$task" "$task" "$lim" "$ARC_TOK" --expert "$T3/experts/$ARC.ordered.safetensors"
  evaluate "$T3/shuffled/$task" "$task" "$lim" "$ARC_TOK" --expert "$T3/experts/$ARC.shuffled.safetensors"
done

echo "== Table 5: ablation on $ARC (modules: MLP / attention / both; objective: RL / next-token; LoRA)"
T5="$R/table5"
# mlp-rl and lora-ntp are exactly the Table 1 $ARC runs (same flags): their summaries are copied, not recomputed.
for pair in "mlp-rl:$T1/svf/$ARC" "lora-ntp:$T1/lora/$ARC"; do
  row="${pair%%:*}" src="${pair#*:}"
  if [ ! -f "$T5/$row/$ARC/summary.json" ]; then
    mkdir -p "$T5/$row/$ARC" && cp "$src/summary.json" "$T5/$row/$ARC/summary.json"
  fi
done
train_svf "$T5/attn-rl/train-$ARC" "$ARC" --targets attn
train_svf "$T5/all-rl/train-$ARC" "$ARC" --targets all
train_svf "$T5/mlp-ntp/train-$ARC" "$ARC" --objective ntp
train_lora "$T5/lora-rl/train-$ARC" "$ARC" --objective rl --samples-per-prompt "$SPP"
for row in attn-rl all-rl mlp-ntp; do
  evaluate "$T5/$row/$ARC" "$ARC" "$LIM_ARC" "$ARC_TOK" --expert "$T5/$row/train-$ARC/expert.safetensors"
done
evaluate "$T5/lora-rl/$ARC" "$ARC" "$LIM_ARC" "$ARC_TOK" --lora "$T5/lora-rl/train-$ARC/lora-$ARC"

echo "== report"
t2 report "$R"
echo "== done in $(( (SECONDS - START) / 60 )) min wall-clock (this invocation); CPU time (user/sys: shell, then children):"
times
