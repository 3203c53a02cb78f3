"""Score a backend on a task: generate, score, write one JSONL record per example, summarise.

Files: ``<out_dir>/<label>/<task>.jsonl`` (id, messages, completion, extracted, gold, correct) and a sidecar
``<task>.meta.json`` (settings, ids hash, counts). Both are written atomically (temp file + rename), the JSONL
first, so a sidecar always describes a complete JSONL. A later run with the same examples (same ids, same order)
and the same settings reuses the records instead of generating again; anything else regenerates and overwrites.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from t2cli.generation import Backend, GenerationSettings
from t2cli.paths import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


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


def _fingerprint(task: Any, examples: Sequence[Any], settings: GenerationSettings) -> dict:
    ids = hashlib.sha256("\n".join(str(e.id) for e in examples).encode()).hexdigest()
    s = dataclasses.asdict(settings)
    s["stop"] = list(s["stop"])
    return {"version": FORMAT_VERSION, "task": task.name, "n": len(examples), "ids_sha256": ids, "settings": s}


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
) -> TaskResult:
    """Generate for every example, score with ``task.score_batch``, write the records, return the accuracy."""
    split = split or _split_of(examples)
    fingerprint = _fingerprint(task, examples, settings)
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

    completions = backend.generate([list(e.messages) for e in examples], settings, progress=progress)
    scores = task.score_batch(completions, list(examples), workers=score_workers)
    records = [
        {
            "id": e.id,
            "messages": list(e.messages),
            "completion": c,
            "extracted": s.extracted,
            "gold": e.gold,
            "correct": bool(s.correct),
        }
        for e, c, s in zip(examples, completions, scores)
    ]
    result = TaskResult.from_counts(task.name, split, len(records), sum(r["correct"] for r in records))
    if jsonl is not None and meta is not None:
        meta.unlink(missing_ok=True)  # never let an old sidecar vouch for the new JSONL
        atomic_write_text(jsonl, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        atomic_write_json(meta, {"fingerprint": fingerprint, "result": dataclasses.asdict(result)})
        logger.info("wrote %s", jsonl)
    return result


def write_summary(out_dir: Path, results: Sequence[TaskResult], meta: dict) -> Path:
    """Write ``<out_dir>/summary.json`` ({"meta": ..., "results": [...]}) atomically and return its path."""
    path = Path(out_dir) / "summary.json"
    atomic_write_json(path, {"meta": meta, "results": [dataclasses.asdict(r) for r in results]})
    return path
