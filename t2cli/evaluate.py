"""Score a backend on a task: generate, score, write one JSONL record per example, summarise.

Files: ``<out_dir>/<label>/<task>.jsonl`` (id, messages, completion, extracted, gold, correct) and a sidecar
``<task>.meta.json`` (settings, ids hash, counts). Both are written atomically (temp file + rename), the JSONL
first, so a sidecar always describes a complete JSONL. A later run with the same examples (same ids, same order)
and the same settings reuses the records instead of generating again; anything else regenerates and overwrites.

Long evaluations are resumable: examples are generated in fixed chunks of ``CHUNK`` and each finished chunk is
appended to ``<task>.partial.jsonl`` (its first line is the fingerprint). An interrupted run started again with the
same examples, settings and weights continues after the last complete chunk (a torn last line is dropped); the
partial file is removed once the final JSONL is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from t2cli.generation import Backend, GenerationSettings
from t2cli.paths import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK = 128  # examples generated and checkpointed together (fixed, so a resumed run batches like a fresh one)


@dataclass
class TaskResult:
    """Accuracy of one label (base, expert, adapted…) on one task split; stderr = sqrt(p(1-p)/n)."""

    task: str
    split: str
    n: int
    correct: int
    accuracy: float
    stderr: float

    @classmethod
    def from_counts(cls, task: str, split: str, n: int, correct: int) -> "TaskResult":
        p = correct / n if n else 0.0
        return cls(task, split, n, correct, p, math.sqrt(p * (1 - p) / n) if n else 0.0)


def settings_for(task: Any, base: GenerationSettings, max_new_tokens: int | None = None) -> GenerationSettings:
    """``base`` with the task's own generation budget unless the caller gives ``max_new_tokens``."""
    return dataclasses.replace(base, max_new_tokens=max_new_tokens or task.max_new_tokens)


def _fingerprint(task: Any, examples: Sequence[Any], settings: GenerationSettings, variant_id: str = "") -> dict:
    ids = hashlib.sha256("\n".join(str(e.id) for e in examples).encode()).hexdigest()
    s = dataclasses.asdict(settings)
    s["stop"] = list(s["stop"])
    return {"version": FORMAT_VERSION, "task": task.name, "n": len(examples), "ids_sha256": ids, "settings": s,
            "variant": variant_id}


def file_digest(*paths: Path) -> str:
    """SHA-256 over the bytes of ``paths`` (an expert file, an adapter's weights): identifies what was evaluated."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _reusable(jsonl: Path, meta: Path, fingerprint: dict, examples: Sequence[Any]) -> list[dict] | None:
    """The stored records when the sidecar matches and the JSONL holds exactly these ids in order."""
    try:
        if json.loads(meta.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
            return None
        records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    if [r.get("id") for r in records] != [e.id for e in examples]:
        return None
    return records


def _split_of(examples: Sequence[Any]) -> str:
    splits = {e.meta.get("split") for e in examples if isinstance(getattr(e, "meta", None), dict)}
    return splits.pop() if len(splits) == 1 and None not in splits else "test"


def evaluate_task(
    backend: Backend,
    task: Any,
    examples: Sequence[Any],
    settings: GenerationSettings,
    out_dir: Path | None = None,
    label: str = "base",
    progress: Callable[[int], None] | None = None,
    score_workers: int = 2,
    split: str | None = None,
    variant_id: str = "",
) -> TaskResult:
    """Generate for every example, score with ``task.score_batch``, write the records, return the accuracy.

    ``variant_id`` names the exact weights evaluated (model fingerprint, expert digest…): stored records are reused
    only when it matches, so a retrained expert under the same label is evaluated again.
    """
    split = split or _split_of(examples)
    fingerprint = _fingerprint(task, examples, settings, variant_id)
    jsonl = meta = None
    if out_dir is not None:
        jsonl = Path(out_dir) / label / f"{task.name}.jsonl"
        meta = jsonl.with_name(f"{task.name}.meta.json")
        records = _reusable(jsonl, meta, fingerprint, examples)
        if records is not None:
            logger.info("reusing %s (%d records, same examples and settings)", jsonl, len(records))
            if progress is not None:
                progress(len(records))
            return TaskResult.from_counts(task.name, split, len(records), sum(bool(r["correct"]) for r in records))

    partial = jsonl.with_name(f"{task.name}.partial.jsonl") if jsonl is not None else None
    records = _resume_partial(partial, fingerprint, examples) if partial is not None else []
    if records:
        logger.info("resuming %s after %d finished records", partial, len(records))
        if progress is not None:
            progress(len(records))
    elif partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")
    for start in range(len(records), len(examples), CHUNK):
        chunk = list(examples[start : start + CHUNK])
        completions = backend.generate([list(e.messages) for e in chunk], settings, progress=progress)
        scores = task.score_batch(completions, chunk, workers=score_workers)
        new = [
            {
                "id": e.id,
                "messages": list(e.messages),
                "completion": c,
                "extracted": s.extracted,
                "gold": e.gold,
                "correct": bool(s.correct),
            }
            for e, c, s in zip(chunk, completions, scores)
        ]
        records += new
        if partial is not None:
            with open(partial, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
                fh.flush()
                os.fsync(fh.fileno())
    result = TaskResult.from_counts(task.name, split, len(records), sum(r["correct"] for r in records))
    if jsonl is not None and meta is not None:
        meta.unlink(missing_ok=True)  # never let an old sidecar vouch for the new JSONL
        atomic_write_text(jsonl, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        atomic_write_json(meta, {"fingerprint": fingerprint, "result": dataclasses.asdict(result)})
        partial.unlink(missing_ok=True)
        logger.info("wrote %s", jsonl)
    return result


def _resume_partial(partial: Path, fingerprint: dict, examples: Sequence[Any]) -> list[dict]:
    """Finished records of an interrupted run with this fingerprint: whole chunks, in order, ids matching."""
    try:
        lines = partial.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    try:
        if not lines or json.loads(lines[0]).get("fingerprint") != fingerprint:
            return []
    except ValueError:
        return []
    records = []
    for line in lines[1:]:
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # a line torn by the interruption, and nothing after it
    records = records[: len(records) // CHUNK * CHUNK]  # only whole chunks: batches stay as in a fresh run
    if [r.get("id") for r in records] != [e.id for e in examples[: len(records)]]:
        return []
    return records


def write_summary(out_dir: Path, results: Sequence[TaskResult], meta: dict) -> Path:
    """Write ``<out_dir>/summary.json`` ({"meta": ..., "results": [...]}) atomically and return its path."""
    path = Path(out_dir) / "summary.json"
    atomic_write_json(path, {"meta": meta, "results": [dataclasses.asdict(r) for r in results]})
    return path


@dataclass
class EvalConfig:
    """Everything `t2 eval` needs; validated at once by :meth:`check`."""

    tasks: Sequence[str]
    model: str | None = None
    experts: Sequence[Path] = ()
    with_base: bool = False
    split: str = "test"
    limit: int | None = None
    batch_size: int = 8
    max_new_tokens: int | None = None
    backend: str = "hf"
    out: Path | None = None
    seed: int = 0
    data_dir: Path | None = None
    device: str = "auto"
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    svd_cache: Path | None = None
    lora: Sequence[Path] = ()  # PEFT LoRA adapter folders, evaluated as extra rows labelled by folder name

    def check(self) -> None:
        from t2cli.errors import ConfigError

        problems = []
        if not self.tasks:
            problems.append("no --task given")
        if self.limit is not None and self.limit < 1:
            problems.append(f"--limit {self.limit} (use >= 1)")
        if self.backend not in ("hf", "vllm"):
            problems.append(f"--backend {self.backend} (use hf or vllm)")
        if self.batch_size < 1:
            problems.append(f"--batch-size {self.batch_size} (use >= 1)")
        if problems:
            raise ConfigError("bad eval options: " + "; ".join(problems))


def expert_weights(expert, model, model_name: str, cache_path: Path | None = None) -> dict:
    """Plain weights W'(z) of ``expert`` for ``model`` (checks that the expert fits the model and its SVD cache)."""
    from t2cli import experts as experts_mod
    from t2cli import svd, svf

    cache = svd.find_cache(model, model_name, cache_path)
    experts_mod.check_compatible(expert, cache.fingerprint, cache, model_name)
    device = next(model.parameters()).device
    factors = svf.Factors.load(cache, list(expert.params.z), device=device, model=model)
    return svf.merge(factors, svf.scales(expert.params), svf.renormalises(expert.params.parameterisation))


def expert_label(path: Path) -> str:
    """A row label for an expert file: its stem, or its run folder's name for the default ``expert.safetensors``."""
    path = Path(path)
    return path.parent.name if path.stem == "expert" and path.parent.name else path.stem


def run_eval(cfg: EvalConfig, progress_factory: Callable[[str, int], Any] | None = None) -> dict:
    """Evaluate the base model and/or experts on every task; returns (and writes) the summary.

    ``progress_factory(description, total)`` returns a context manager yielding an ``advance(n)`` callback.
    """
    import contextlib

    from t2cli import experts as experts_mod
    from t2cli import models, svd
    from t2cli.generation import make_backend
    from t2cli.tasks import get_task

    cfg.check()
    tasks = [get_task(name) for name in cfg.tasks]
    loaded_experts = [experts_mod.load_expert(p) for p in cfg.experts]
    from t2cli import lora as lora_mod

    for p in cfg.lora:
        lora_mod.read_meta(p)  # a missing or non-adapter folder fails before the model loads
    loaded = models.load_model(cfg.model, device=cfg.device, dtype=cfg.dtype) if cfg.backend == "hf" else None
    if loaded is not None:
        backend = make_backend("hf", loaded)
        model_name, fingerprint_model = loaded.ref.name, loaded.model
    else:
        ref = models.resolve(cfg.model)
        backend = make_backend("vllm", cfg.model, dtype=None if cfg.dtype == "auto" else cfg.dtype,
                               tensor_parallel_size=cfg.tensor_parallel_size)
        model_name, fingerprint_model = ref.name, None
    base_id = model_name if fingerprint_model is None else f"{model_name}@{svd.model_fingerprint(fingerprint_model)}"
    variants: list[tuple[str, Any, str]] = (
        [("base", None, base_id)] if cfg.with_base or not (loaded_experts or cfg.lora) else [])
    for expert in loaded_experts:
        if fingerprint_model is None:
            helper = models.load_model(cfg.model, device="cpu", dtype="float32")
            fingerprint_model = helper.model
        weights = expert_weights(expert, fingerprint_model, model_name, cfg.svd_cache)
        variants.append((expert_label(expert.path), weights, f"{base_id}+expert:{file_digest(expert.path)}"))
    for adapter in cfg.lora:
        if fingerprint_model is None:
            fingerprint_model = models.load_model(cfg.model, device="cpu", dtype="float32").model
        weights = lora_mod.lora_weights(Path(adapter), fingerprint_model, model_name)
        digest = file_digest(*sorted(p for p in Path(adapter).iterdir() if p.is_file()))
        variants.append((Path(adapter).resolve().name, weights, f"{base_id}+lora:{digest}"))
    base = GenerationSettings(batch_size=cfg.batch_size, seed=cfg.seed)
    rows = []
    for label, weights, variant_id in variants:
        backend.set_weights(weights)
        for task in tasks:
            examples = task.load(cfg.split, data_dir=cfg.data_dir, limit=cfg.limit)
            settings = settings_for(task, base, cfg.max_new_tokens)
            bar = progress_factory(f"{label} · {task.name}", len(examples)) if progress_factory else contextlib.nullcontext(None)
            with bar as advance:
                result = evaluate_task(backend, task, examples, settings, cfg.out, label, progress=advance,
                                       split=cfg.split, variant_id=variant_id)
            rows.append({"label": label, **dataclasses.asdict(result)})
    backend.set_weights(None)
    from t2cli import __version__

    summary = {"meta": {"model": model_name, "split": cfg.split, "limit": cfg.limit, "seed": cfg.seed,
                        "backend": cfg.backend, "experts": [str(p) for p in cfg.experts], "lora": [str(p) for p in cfg.lora],
                        "t2_version": __version__},
               "results": rows}
    if cfg.out is not None:
        atomic_write_json(Path(cfg.out) / "summary.json", merged_summary(Path(cfg.out) / "summary.json", summary))
    return summary


def merged_summary(path: Path, summary: dict) -> dict:
    """``summary`` plus the rows of an earlier ``summary.json`` in the same folder (same model and split) that this
    run did not evaluate, so evaluating one more expert into a folder keeps the rows already there."""
    try:
        old = json.loads(Path(path).read_text(encoding="utf-8"))
        same = all(old["meta"].get(k) == summary["meta"].get(k) for k in ("model", "split"))
        old_rows = old["results"] if same else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return summary
    new_keys = {(r["label"], r["task"]) for r in summary["results"]}
    kept = [r for r in old_rows if isinstance(r, dict) and (r.get("label"), r.get("task")) not in new_keys]
    if not kept:
        return summary
    meta = {**summary["meta"], "earlier_rows": sorted({r["label"] for r in kept})}
    return {"meta": meta, "results": kept + summary["results"]}
