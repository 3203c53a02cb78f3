"""The ``t2`` command line: each command builds its options, calls one core function and prints the result.

Heavy imports (torch, transformers) happen inside commands so ``t2 --help`` is instant.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from .errors import T2Error

app = typer.Typer(
    name="t2",
    help="Transformer² toolkit: SVD cache, RL singular value fine-tuning (SVF), two-pass self-adaptation.\n\n"
    "Example: t2 decompose   (SVD of the embedded default model, SmolLM2-135M-Instruct)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True):
    """A rich progress bar on stderr; yields a callback ``advance(n)``."""
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=_stderr_console(), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def emit(result: dict, as_json: bool, human: str) -> None:
    """Machine-readable JSON on stdout with ``--json``, else a human line."""
    typer.echo(json.dumps(result, sort_keys=True) if as_json else human)


@app.callback()
def _root() -> None:
    """Transformer² toolkit: SVD cache, RL singular value fine-tuning (SVF), two-pass self-adaptation."""


ModelArg = typer.Argument(None, help="Hub id, model folder, .gguf file, or omit for the embedded default (or $T2_MODEL).")
JsonOpt = typer.Option(False, "--json", help="Print a machine-readable JSON summary on stdout.")
DeviceOpt = typer.Option("auto", help="cpu, cuda, cuda:N or auto (CUDA when available).")
DtypeOpt = typer.Option("auto", help="Model dtype: auto (bf16 on CUDA, float32 on CPU), float32, bfloat16, float16.")
TargetsOpt = typer.Option("all", help="Matrices: all, mlp, attn, role names (q_proj,v_proj) or a regex over parameter names.")
LayersOpt = typer.Option("all", help="Layers: all, half (every other), a range 0-11, or a list 0,2,4.")
DataDirOpt = typer.Option(None, "--data-dir", help="Local data folder (default: $T2_DATA_DIR, else the Hub).")
SvdCacheOpt = typer.Option(None, "--svd-cache", help="SVD cache folder (default: the model's own).")
DecomposeOpt = typer.Option(False, "--decompose", help="Build the SVD cache first if it is missing.")


@app.command(epilog="Examples:\n\n  t2 decompose\n\n  t2 decompose meta-llama/Meta-Llama-3-8B-Instruct --targets mlp --json\n\n  t2 decompose ./my-model --out ./svd --verify")
def decompose(
    model: Optional[str] = ModelArg,
    targets: str = TargetsOpt,
    layers: str = LayersOpt,
    dtype: str = typer.Option("float32", "--dtype", help="Storage dtype of the factors: float32, bfloat16, float16."),
    out: Optional[Path] = typer.Option(None, help="Cache folder (default: keyed by the model under $T2_HOME/svd)."),
    verify: bool = typer.Option(False, "--verify", help="Re-check every shard (checksum, shapes, reconstruction) after decomposing."),
    force: bool = typer.Option(False, "--force", help="Recompute every matrix even if cached."),
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
):
    """SVD of every targeted weight matrix, cached to safetensors (resumable; a second run is a no-op)."""
    from .arch import select_targets
    from .models import load_model
    from .svd import SVDCache, decompose as run_decompose

    loaded = load_model(model, device=device, dtype="float32" if device in ("auto", "cpu") else None)
    chosen = select_targets(loaded.model, targets, layers)
    with progress_bar("decompose", len(chosen), enabled=not as_json) as advance:
        result = run_decompose(loaded.model, loaded.ref.name, chosen, out, dtype=dtype, force=force, progress=advance)
    problems = SVDCache.open(result.path).verify(loaded.model) if verify else []
    summary = {
        "cache": str(result.path), "model": loaded.ref.name, "matrices": len(chosen), "computed": result.computed,
        "skipped": result.skipped, "seconds": round(result.seconds, 3), "max_rel_error": result.max_rel_error,
        "verified": verify and not problems, "problems": problems,
    }
    emit(summary, as_json, f"{result.path}: {result.computed} computed, {result.skipped} cached, "
         f"max relative error {result.max_rel_error:.2e}" + (f", verify: {'ok' if not problems else 'FAILED'}" if verify else ""))
    if problems:
        for p in problems[:20]:
            _stderr_console().print(f"[red]problem:[/red] {p}")
        raise T2Error(f"{len(problems)} problems in {result.path}: re-run `t2 decompose --force` to rebuild it")


@app.command(epilog="Examples:\n\n  t2 train --task arc_easy --steps 20 --batch-size 32\n\n"
             "  t2 train --task gsm8k --kl 0.1 --model meta-llama/Meta-Llama-3-8B-Instruct\n\n"
             "  t2 train --task arc_easy --rollout greedy --samples-per-prompt 1 --baseline none   (the reference recipe)\n\n"
             "  t2 train --task gsm8k --method lora --objective ntp --lora-rank 16   (the LoRA baseline)\n\n"
             "  torchrun --nproc-per-node 2 $(which t2) train --task arc_easy   (data parallel)")
def train(
    task: str = typer.Option(..., "--task", "-t", help="Task whose train split gives the rewards."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model spec (default: the embedded default)."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default runs/train/TASK, runs/train/TASK-lora for lora): expert, checkpoints, metrics."),
    method: str = typer.Option("svf", "--method", help="svf (singular value fine-tuning) or lora (the PEFT LoRA baseline)."),
    lora_rank: int = typer.Option(16, "--lora-rank", help="LoRA rank r (--method lora)."),
    lora_alpha: float = typer.Option(32.0, "--lora-alpha", help="LoRA alpha; the update is scaled by alpha/r (--method lora)."),
    lora_dropout: float = typer.Option(0.05, "--lora-dropout", help="LoRA dropout (--method lora)."),
    lora_targets: str = typer.Option("q_proj,v_proj", "--lora-targets", help="Modules LoRA adapts, comma-separated (--method lora)."),
    objective: Optional[str] = typer.Option(None, help="rl (REINFORCE) or ntp (next-token prediction on gold solutions); default rl for svf, ntp for lora (the paper's LoRA baseline)."),
    kl: Optional[float] = typer.Option(None, "--kl", help="λ of the KL(π_z ‖ π_base) penalty (paper sweeps 0, 0.1, 0.2, 0.3); default 0.1, but 0 for lora with ntp (plain fine-tuning, the paper's baseline)."),
    steps: int = typer.Option(100, help="Optimiser steps."),
    batch_size: int = typer.Option(32, "--batch-size", help="Prompts per optimiser step (global)."),
    micro_batch_size: int = typer.Option(8, "--micro-batch-size", help="Sequences per forward/backward."),
    rollout: str = typer.Option("sample", help="sample or greedy (the reference code's)."),
    samples_per_prompt: int = typer.Option(4, "--samples-per-prompt", help="Completions per prompt (sample rollouts)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature of rollouts."),
    baseline: str = typer.Option("mean", help="mean (reward minus the per-prompt or batch mean) or none."),
    neg_reward: float = typer.Option(-1.0, "--neg-reward", help="Reward of a wrong answer (paper: -1; -0.1 for its VLM runs)."),
    lr: Optional[float] = typer.Option(None, help="AdamW learning rate (cosine decay); default 2e-3 for svf, 2e-4 for lora."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Global gradient-norm clip; default 1e-3 (on z) for svf, 1.0 for lora."),
    targets: str = typer.Option("mlp", help="Matrices to adapt: mlp, attn, all, role names or a regex."),
    layers: str = LayersOpt,
    parameterisation: str = typer.Option("sigmoid", help="sigmoid (reference code, default) or linear (paper's z)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Rollout length (default: the task's)."),
    val_every: int = typer.Option(10, "--val-every", help="Validate every N steps (0: never; the last z is kept)."),
    val_limit: Optional[int] = typer.Option(None, "--val-limit", help="Validation examples (default: the whole split)."),
    patience: Optional[int] = typer.Option(None, help="Stop after N validations without improvement."),
    checkpoint_every: int = typer.Option(10, "--checkpoint-every", help="Checkpoint every N steps."),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="Use the first N training examples only."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's checkpoint."),
    decompose_missing: bool = DecomposeOpt,
    svd_cache: Optional[Path] = SvdCacheOpt,
    data_dir: Optional[Path] = DataDirOpt,
    seed: int = typer.Option(0),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    as_json: bool = JsonOpt,
):
    """Train an SVF expert (one vector z per matrix) with REINFORCE + KL, or a LoRA baseline (--method lora); keeps the best on validation."""
    from .errors import ConfigError

    if method not in ("svf", "lora"):
        raise ConfigError(f"--method {method!r} is unknown: use svf or lora")
    lora_run = method == "lora"
    objective = objective or ("ntp" if lora_run else "rl")
    lr = lr if lr is not None else (2e-4 if lora_run else 2e-3)
    grad_clip = grad_clip if grad_clip is not None else (1.0 if lora_run else 1e-3)
    kl = kl if kl is not None else (0.0 if lora_run and objective == "ntp" else 0.1)
    if lora_run and out is None:
        out = Path("runs/train") / f"{task}-lora"
    from .recipes import run_train
    from .rl import TrainConfig

    cfg = TrainConfig(
        run_dir=out or Path("runs/train") / task, objective=objective, targets=targets, layers=layers,
        parameterisation=parameterisation, steps=steps, batch_size=batch_size, micro_batch_size=micro_batch_size,
        samples_per_prompt=samples_per_prompt, rollout=rollout, temperature=temperature, max_new_tokens=max_new_tokens,
        neg_reward=neg_reward, baseline=baseline, kl_coef=kl, lr=lr, grad_clip=grad_clip, val_every=val_every,
        val_limit=val_limit, patience=patience, checkpoint_every=checkpoint_every, train_limit=train_limit,
        data_dir=str(data_dir) if data_dir else None, seed=seed, resume=resume,
    )
    if lora_run:
        from .lora import LoraSettings
        from .recipes import run_train_lora

        settings = LoraSettings(lora_rank, lora_alpha, lora_dropout, lora_targets)
        with progress_bar(f"train {task} (LoRA)", steps, enabled=not as_json) as advance:
            res = run_train_lora(cfg, model, task, settings, device=device, dtype=dtype, progress=advance)
        best = "n/a" if res.best_val is None else f"{100 * res.best_val:.1f}%"
        summary = {"method": "lora", "adapter": str(res.adapter_path), "best_val_accuracy": res.best_val,
                   "steps": res.steps_done, "run_dir": str(res.run_dir), "stopped_early": res.stopped_early,
                   "metrics": str(res.metrics_path), "objective": cfg.objective, "trainable": res.trainable}
        emit(summary, as_json, f"LoRA adapter: {res.adapter_path} (best validation accuracy {best}, {res.steps_done} steps, "
             f"{res.trainable['lora']['params']:,} trainable parameters vs SVF {res.trainable['svf']['params']:,})")
        return
    with progress_bar(f"train {task}", steps, enabled=not as_json) as advance:
        result = run_train(cfg, model, task, device=device, dtype=dtype, cache_path=svd_cache,
                           build_cache=decompose_missing, progress=advance)
    summary = {"expert": str(result.expert_path), "best_val_accuracy": result.best_val, "steps": result.steps_done,
               "run_dir": str(result.run_dir), "stopped_early": result.stopped_early,
               "metrics": str(result.metrics_path) if result.metrics_path else None}
    best = "n/a" if result.best_val is None else f"{100 * result.best_val:.1f}%"
    emit(summary, as_json, f"expert: {result.expert_path} (best validation accuracy {best}, {result.steps_done} steps)")


def _expert_files(flagged: list[Path], more: Optional[list[Path]]) -> list[Path]:
    """``--experts a b c`` (the extra files arrive as arguments), ``-e a -e b`` or ``--experts a,b`` all work."""
    out: list[Path] = []
    for p in [*flagged, *(more or [])]:
        out.extend(Path(x) for x in str(p).split(",") if x)
    return out


ExpertsOpt = typer.Option([], "--experts", "-e", help="Expert files: --experts a.safetensors b.safetensors, or repeat -e.")
MoreExpertsArg = typer.Argument(None, help="More expert files (so that --experts a b c works).", show_default=False)
LabelModeOpt = typer.Option("auto", "--labels", help="Expert labels: category (math/code/reasoning), task (task names) or auto.")


@app.command("classify-train", epilog="Examples:\n\n"
             "  t2 classify-train --experts runs/train/gsm8k/expert.safetensors runs/train/arc_easy/expert.safetensors runs/train/mbpp/expert.safetensors\n\n"
             "  t2 classify-train -e math.safetensors -e code.safetensors --steps 20 --per-label-limit 200 --json")
def classify_train(
    experts: list[Path] = ExpertsOpt,
    more: Optional[list[Path]] = MoreExpertsArg,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model spec (default: the embedded default)."),
    out: Path = typer.Option(Path("runs/classify"), help="Run folder: classifier expert, checkpoints, metrics."),
    label_mode: str = LabelModeOpt,
    per_label_limit: Optional[int] = typer.Option(200, "--per-label-limit", help="Train examples per label (seeded pick from each task's train split)."),
    heldout_limit: Optional[int] = typer.Option(100, "--heldout-limit", help="Held-out examples scored before/after training."),
    steps: int = typer.Option(20, help="Optimiser steps."),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts per optimiser step."),
    micro_batch_size: int = typer.Option(8, "--micro-batch-size", help="Sequences per forward/backward."),
    samples_per_prompt: int = typer.Option(4, "--samples-per-prompt", help="Sampled answers per prompt."),
    kl: float = typer.Option(0.0, "--kl", help="λ of the KL penalty."),
    lr: float = typer.Option(2e-3, help="AdamW learning rate."),
    targets: str = typer.Option("mlp", help="Matrices to adapt."),
    layers: str = LayersOpt,
    val_every: int = typer.Option(5, "--val-every", help="Validate every N steps (the best classifier is kept)."),
    val_limit: Optional[int] = typer.Option(64, "--val-limit", help="Validation examples."),
    decompose_missing: bool = DecomposeOpt,
    svd_cache: Optional[Path] = SvdCacheOpt,
    data_dir: Optional[Path] = DataDirOpt,
    seed: int = typer.Option(0),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    as_json: bool = JsonOpt,
):
    """Train the classification expert z^c on the experts' train splits (label = category or task); report
    held-out accuracy before and after."""
    from .classify import run_classify_train
    from .rl import TrainConfig

    cfg = TrainConfig(run_dir=out, targets=targets, layers=layers, steps=steps, batch_size=batch_size,
                      micro_batch_size=micro_batch_size, samples_per_prompt=samples_per_prompt, kl_coef=kl, lr=lr,
                      val_every=val_every, val_limit=val_limit, checkpoint_every=max(1, steps),
                      data_dir=str(data_dir) if data_dir else None, seed=seed, kind="classifier", labels=[])
    with progress_bar("classify-train", steps, enabled=not as_json) as advance:
        r = run_classify_train(cfg, _expert_files(experts, more), model, label_mode, per_label_limit, heldout_limit,
                               device=device, dtype=dtype, cache_path=svd_cache, build_cache=decompose_missing,
                               progress=advance)
    summary = {"classifier": str(r.expert_path), "labels": r.labels, "label_tasks": r.label_tasks,
               "heldout_accuracy_before": r.heldout_before, "heldout_accuracy_after": r.heldout_after,
               "n_train": r.n_train, "n_heldout": r.n_heldout, "best_val_accuracy": r.best_val, "steps": r.steps,
               "answers_before": r.answers_before, "run_dir": str(r.run_dir)}
    emit(summary, as_json, f"classifier: {r.expert_path} (labels {', '.join(r.labels)}; held-out accuracy "
         f"{100 * r.heldout_before:.1f}% → {100 * r.heldout_after:.1f}% on {r.n_heldout})")


@app.command(epilog="Examples:\n\n"
             "  t2 adapt --task arc_challenge --strategy prompt --experts math.safetensors code.safetensors reasoning.safetensors\n\n"
             "  t2 adapt --task gsm8k --strategy cls --classifier runs/classify/expert.safetensors -e math.safetensors -e reasoning.safetensors\n\n"
             "  t2 adapt --task arc_challenge --strategy fewshot --shots 10 --iterations 10 --experts a.safetensors b.safetensors --json")
def adapt(
    task: str = typer.Option(..., "--task", "-t", help="Task to adapt to and evaluate on."),
    strategy: str = typer.Option("prompt", help="prompt (the model classifies), cls (--classifier does) or fewshot (CEM over α)."),
    experts: list[Path] = ExpertsOpt,
    more: Optional[list[Path]] = MoreExpertsArg,
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Classifier expert from `t2 classify-train` (strategy cls)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model spec (default: the embedded default)."),
    split: str = typer.Option("test", help="Split to evaluate on (few-shot examples are drawn from it and removed)."),
    limit: Optional[int] = typer.Option(None, help="Evaluate the first N examples only (after removing the shots)."),
    label_mode: str = LabelModeOpt,
    shots: int = typer.Option(10, help="fewshot: examples drawn (seeded) from the split for the CEM fitness."),
    alpha_mode: str = typer.Option("per-vector", "--alpha-mode", help="fewshot: per-vector (one α per expert) or per-layer."),
    normalise: bool = typer.Option(True, "--normalise/--no-normalise", help="fewshot: rescale α so that Σα = 1."),
    population: int = typer.Option(8, help="fewshot: CEM samples per iteration."),
    elite_frac: float = typer.Option(0.25, "--elite-frac", help="fewshot: fraction of samples kept as elites."),
    iterations: int = typer.Option(10, help="fewshot: CEM iterations (paper: up to 100; 10 keeps a CPU run in minutes)."),
    init_mean: Optional[float] = typer.Option(None, "--init-mean", help="fewshot: initial mean of α (default 1/K)."),
    init_std: float = typer.Option(0.3, "--init-std", help="fewshot: initial std of α."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Also evaluate the base model and each single expert."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generation batch."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Override the task's generation budget."),
    out: Path = typer.Option(Path("runs/adapt"), help="Folder for per-example JSONL, the summary, CEM trajectory and z'."),
    save: Optional[Path] = typer.Option(None, help="fewshot: where to save z' (default OUT/fewshot-TASK.safetensors)."),
    data_dir: Optional[Path] = DataDirOpt,
    svd_cache: Optional[Path] = SvdCacheOpt,
    seed: int = typer.Option(0, help="Seed of the shot draw and of CEM."),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    as_json: bool = JsonOpt,
):
    """Two-pass adaptation on a task: pick z' per prompt (prompt, cls) or by CEM on a few shots (fewshot), then
    evaluate next to the base model and each expert."""
    from .adapt import AdaptConfig, FewShotConfig, run_adapt

    fcfg = FewShotConfig(shots=shots, alpha_mode=alpha_mode, normalise=normalise, population=population,
                         elite_frac=elite_frac, iterations=iterations, init_mean=init_mean, init_std=init_std, seed=seed)
    cfg = AdaptConfig(strategy=strategy, experts=_expert_files(experts, more), task=task, model=model,
                      classifier=classifier, split=split, limit=limit, label_mode=label_mode, fewshot=fcfg,
                      batch_size=batch_size, max_new_tokens=max_new_tokens, compare=compare, out=out, save=save,
                      data_dir=data_dir, svd_cache=svd_cache, device=device, dtype=dtype, seed=seed)
    summary = run_adapt(cfg, progress_factory=lambda d, n: progress_bar(d, n, enabled=not as_json))
    if as_json:
        emit(summary, True, "")
        return
    meta = summary["meta"]
    print_results_table(summary["results"], f"t2 adapt · {strategy} · {meta['model']}")
    if "routes" in meta:
        typer.echo(f"routes: {meta['routes']} (unparsable first pass → base: {meta['unparsable']}); records: {meta['records']}")
    if "alphas" in meta:
        typer.echo(f"α ({', '.join(meta['expert_order'])}): {meta['alphas']}; z' saved to {meta['expert_file']}; "
                   f"CEM trajectory {meta['trajectory']}")


@app.command(epilog="Examples:\n\n"
             "  t2 generate \"What is 12 * 7?\" -e math.safetensors -e code.safetensors\n\n"
             "  cat prompts.jsonl | t2 generate --strategy cls --classifier clf.safetensors -e a.safetensors -e b.safetensors > answers.jsonl")
def generate(
    prompts: Optional[list[str]] = typer.Argument(None, help="Prompts; without any, JSONL lines {\"prompt\": ...} are read from stdin.", show_default=False),
    experts: list[Path] = typer.Option([], "--experts", "-e", help="Expert file (repeat -e, or --experts a,b)."),
    strategy: str = typer.Option("prompt", help="First pass: prompt (the model classifies) or cls (--classifier)."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="Classifier expert (strategy cls)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model spec (default: the embedded default)."),
    label_mode: str = LabelModeOpt,
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Answer length."),
    temperature: float = typer.Option(0.0, help="Sampling temperature of the answer (0 = greedy)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generation batch."),
    out: Optional[Path] = typer.Option(None, help="Write the JSONL here instead of stdout."),
    svd_cache: Optional[Path] = SvdCacheOpt,
    seed: int = typer.Option(0),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    as_json: bool = typer.Option(False, "--json", help="Quiet mode for pipelines: JSONL only, no progress or stats on stderr."),
):
    """Answer prompts in two passes; one JSONL record per prompt: {prompt, expert, label, first_pass, answer}."""
    from .errors import ConfigError
    from .online import GenerateConfig, read_prompts, run_generate

    if prompts:
        records = [{"prompt": p} for p in prompts]
    elif sys.stdin is not None and not sys.stdin.isatty():
        records = read_prompts(sys.stdin)
    else:
        raise ConfigError("no prompts: pass them as arguments or pipe JSONL lines {\"prompt\": \"...\"} on stdin")
    cfg = GenerateConfig(prompts=records, experts=_expert_files(experts, None), strategy=strategy,
                         classifier=classifier, model=model, label_mode=label_mode, max_new_tokens=max_new_tokens,
                         temperature=temperature, batch_size=batch_size, seed=seed, svd_cache=svd_cache, device=device,
                         dtype=dtype)
    with progress_bar("generate", len(records), enabled=not as_json) as advance:
        answers, stats = run_generate(cfg, progress=advance)
    text = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers)
    if out is not None:
        from .paths import atomic_write_text

        atomic_write_text(out, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if not as_json:
        _stderr_console().print(f"{stats['prompts']} prompts · experts {stats['experts']} · pass 1 "
                                f"{stats['pass1_seconds']}s, pass 2 {stats['pass2_seconds']}s")


@app.command(epilog="Examples:\n\n  t2 transfer runs/train/gsm8k/expert.safetensors --to mistralai/Mistral-7B-Instruct-v0.3 --decompose\n\n"
             "  t2 transfer math.safetensors --to ./other-model --order shuffled --seed 1 --json   (the control)\n\n"
             "  t2 transfer math.safetensors --to Qwen/Qwen2.5-0.5B-Instruct --layer-map linear --out math.qwen.safetensors")
def transfer(
    source: Path = typer.Argument(..., help="Expert file trained on the source model."),
    to: str = typer.Option(..., "--to", help="Target model spec (Hub id, folder, .gguf file or the default alias)."),
    order: str = typer.Option("ordered", help="ordered (canonical descending-σ order) or shuffled (seeded permutation per vector, the control)."),
    seed: int = typer.Option(0, help="Seed of the shuffled permutations."),
    layer_map: str = typer.Option("strict", "--layer-map", help="strict (same layer count) or linear (target j <- source round(j(Ls-1)/(Lt-1)))."),
    source_layers: Optional[int] = typer.Option(None, "--source-layers", help="Source model's layer count (default: its SVD cache, else inferred from the expert)."),
    out: Optional[Path] = typer.Option(None, help="Output expert file (default: next to the source, SOURCE.to-TARGET.ORDER.safetensors)."),
    decompose_missing: bool = typer.Option(False, "--decompose", help="Build the target's SVD cache for the mapped matrices if missing."),
    svd_cache: Optional[Path] = typer.Option(None, "--svd-cache", help="Target SVD cache folder (default: the target model's own)."),
    device: str = DeviceOpt,
    as_json: bool = JsonOpt,
):
    """Map an SVF expert onto another model by matrix role and layer (ranks truncated or padded with the neutral value)."""
    from .recipes import run_transfer

    with progress_bar("decompose target", None, enabled=not as_json and decompose_missing) as advance:
        summary = run_transfer(source, to, order=order, seed=seed, layer_map=layer_map, out=out,
                               source_num_layers=source_layers, device=device,
                               dtype="float32" if device in ("auto", "cpu") else "auto", cache_path=svd_cache,
                               build_cache=decompose_missing, progress=advance)
    rh = summary["rank_handling"]
    emit(summary, as_json, f"{summary['expert']}: {summary['matrices']} matrices ({order}, layer map {layer_map}; "
         f"{rh['same']} same rank, {rh['truncated']} truncated, {rh['padded']} padded) for {summary['target_model']}")


@app.command(epilog="Examples:\n\n  t2 report runs/repro\n\n  t2 report runs/repro --out docs/repro --json\n\n"
             "Paper tables come from folders RUN_DIR/table1|table2|table3|table5/<row>/ (see t2cli/report.py).")
def report(
    run_dir: Path = typer.Argument(..., help="Run folder to walk (summary.json, adapt-*.json, metrics.jsonl, cem-*.jsonl)."),
    out: Optional[Path] = typer.Option(None, help="Report folder (default RUN_DIR/report): report.md and PNG plots."),
    as_json: bool = JsonOpt,
):
    """Markdown tables shaped like the paper's and PNG plots (accuracy bars, RL curves, CEM search) of a run folder."""
    from .report import build_report

    rep = build_report(run_dir, out)
    for w in rep.warnings:
        sys.stderr.write(f"warning: {w}\n")
    emit(rep.to_dict(), as_json, f"report: {rep.report_path} ({len(rep.tables)} tables, {len(rep.plots)} plots; "
         f"{', '.join(t.key for t in rep.tables)})")


def print_results_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "model", "split", "n", "accuracy", "± stderr"):
        table.add_column(col, justify="right" if col in ("n", "accuracy", "± stderr") else "left")
    for r in rows:
        table.add_row(r["task"], r["label"], r["split"], str(r["n"]), f"{100 * r['accuracy']:.1f}%", f"{100 * r['stderr']:.1f}")
    Console().print(table)


@app.command("eval", epilog="Examples:\n\n  t2 eval --task arc_easy --limit 200\n\n"
             "  t2 eval --task gsm8k --task arc_challenge --expert runs/train/arc_easy/expert.safetensors --with-base --json\n\n"
             "  t2 eval --task mbpp --backend vllm --model meta-llama/Meta-Llama-3-8B-Instruct\n\n"
             "  t2 eval --task gsm8k --lora runs/train/gsm8k-lora/lora-gsm8k --expert runs/train/gsm8k/expert.safetensors --with-base")
def eval_cmd(
    task: list[str] = typer.Option(..., "--task", "-t", help="Task (repeatable): gsm8k, math, math500, mbpp, mbpp_sanitized, humaneval, arc_easy, arc_challenge, arc_easy_text, arc_challenge_text."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model spec (default: the embedded default or $T2_MODEL)."),
    expert: list[Path] = typer.Option([], "--expert", "-e", help="SVF expert file to evaluate (repeatable)."),
    with_base: bool = typer.Option(False, "--with-base", help="Also evaluate the base model when experts are given."),
    lora: list[Path] = typer.Option([], "--lora", help="LoRA adapter folder from `t2 train --method lora` (repeatable; row labelled by folder name)."),
    split: str = typer.Option("test", help="Split to evaluate."),
    limit: Optional[int] = typer.Option(None, help="Evaluate the first N examples only."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generation batch."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Override the task's generation budget."),
    backend: str = typer.Option("hf", help="hf (CPU/GPU, in process) or vllm (GPU, extra 'vllm')."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="GPUs for the vLLM engine."),
    out: Path = typer.Option(Path("runs/eval"), help="Folder for per-example JSONL and summary.json (reused on re-runs)."),
    seed: int = typer.Option(0, help="Seed for sampling (greedy decoding is deterministic anyway)."),
    data_dir: Optional[Path] = DataDirOpt,
    svd_cache: Optional[Path] = SvdCacheOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    as_json: bool = JsonOpt,
):
    """Score the base model, SVF experts and/or LoRA adapters on tasks: a table, per-example JSONL and summary.json."""
    from .evaluate import EvalConfig, run_eval

    cfg = EvalConfig(tasks=task, model=model, experts=expert, with_base=with_base, split=split, limit=limit,
                     batch_size=batch_size, max_new_tokens=max_new_tokens, backend=backend, out=out, seed=seed,
                     data_dir=data_dir, device=device, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                     svd_cache=svd_cache, lora=lora)
    summary = run_eval(cfg, progress_factory=lambda d, n: progress_bar(d, n, enabled=not as_json))
    if as_json:
        emit(summary, True, "")
    else:
        print_results_table(summary["results"], f"t2 eval · {summary['meta']['model']}")
        typer.echo(f"records and summary: {out}")


def main() -> None:
    """Entry point: domain errors become one line on stderr and a non-zero exit code."""
    import os

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app(standalone_mode=False)
    except T2Error as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: completed work is kept; re-run the same command to resume\n")
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
