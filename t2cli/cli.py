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
             "  t2 eval --task mbpp --backend vllm --model meta-llama/Meta-Llama-3-8B-Instruct")
def eval_cmd(
    task: list[str] = typer.Option(..., "--task", "-t", help="Task (repeatable): gsm8k, math, math500, mbpp, mbpp_sanitized, humaneval, arc_easy, arc_challenge."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model spec (default: the embedded default or $T2_MODEL)."),
    expert: list[Path] = typer.Option([], "--expert", "-e", help="SVF expert file to evaluate (repeatable)."),
    with_base: bool = typer.Option(False, "--with-base", help="Also evaluate the base model when experts are given."),
    split: str = typer.Option("test", help="Split to evaluate."),
    limit: Optional[int] = typer.Option(None, help="Evaluate the first N examples only."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generation batch."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Override the task's generation budget."),
    backend: str = typer.Option("hf", help="hf (CPU/GPU, in process) or vllm (GPU, extra 'vllm')."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="GPUs for the vLLM engine."),
    out: Path = typer.Option(Path("runs/eval"), help="Folder for per-example JSONL and summary.json (reused on re-runs)."),
    seed: int = typer.Option(0, help="Seed for sampling (greedy decoding is deterministic anyway)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local data folder (default: $T2_DATA_DIR, else the Hub)."),
    svd_cache: Optional[Path] = typer.Option(None, "--svd-cache", help="SVD cache folder (default: the model's own)."),
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    as_json: bool = JsonOpt,
):
    """Score the base model and/or SVF experts on tasks: a table, per-example JSONL and summary.json."""
    from .evaluate import EvalConfig, run_eval

    cfg = EvalConfig(tasks=task, model=model, experts=expert, with_base=with_base, split=split, limit=limit,
                     batch_size=batch_size, max_new_tokens=max_new_tokens, backend=backend, out=out, seed=seed,
                     data_dir=data_dir, device=device, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                     svd_cache=svd_cache)
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
