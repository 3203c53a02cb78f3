"""Two-pass self-adaptation (`t2 adapt`): pass 1 picks z' from the prompt (``prompt``, ``cls``) or from a few
held-out shots (``fewshot``); pass 2 answers with W'(z').

``run_adapt`` evaluates the adapted model on a task split next to the base model and each single expert. For the
routing strategies the choice is made per example and recorded per example; for ``fewshot`` the shots are drawn from
the split and removed before anything is scored. Modules: ``dispatch`` (routing prompt, strict parsing, Router),
``prompt`` / ``cls`` (the two routing strategies), ``cem`` (generic CEM), ``fewshot`` (α search in scale space).
See each module for where it departs from the paper and the public reference code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from .fewshot import FewShotConfig

log = logging.getLogger(__name__)

STRATEGIES = ("prompt", "cls", "fewshot")


@dataclass
class AdaptConfig:
    strategy: str
    experts: Sequence[Path]
    task: str
    model: str | None = None
    classifier: Path | None = None
    split: str = "test"
    limit: int | None = None
    label_mode: str = "auto"
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    batch_size: int = 8
    max_new_tokens: int | None = None
    compare: bool = True  # also evaluate the base model and each single expert
    out: Path = Path("runs/adapt")
    save: Path | None = None
    data_dir: Path | None = None
    svd_cache: Path | None = None
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0

    def check(self) -> None:
        p = []
        if self.strategy not in STRATEGIES:
            p.append(f"--strategy {self.strategy} (use {', '.join(STRATEGIES)})")
        if not self.experts:
            p.append("no --experts given (pass one expert file per task)")
        if self.strategy == "cls" and self.classifier is None:
            p.append("--strategy cls needs --classifier FILE (train one with `t2 classify-train`)")
        if self.strategy != "cls" and self.classifier is not None:
            p.append("--classifier is only used by --strategy cls")
        if self.limit is not None and self.limit < 1:
            p.append(f"--limit {self.limit} (use >= 1)")
        if self.batch_size < 1:
            p.append(f"--batch-size {self.batch_size} (use >= 1)")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            p.append(f"--max-new-tokens {self.max_new_tokens} (use >= 1)")
        if self.strategy == "fewshot":
            try:
                self.fewshot.validate()
            except ConfigError as exc:
                p.append(str(exc).removeprefix("bad few-shot options: "))
        if p:
            raise ConfigError("bad adapt options: " + "; ".join(p))


def _fresh(out: Path, label: str, task_name: str) -> Path:
    """Drop a stale sidecar and partial file so evaluate_task regenerates (its fingerprint does not cover the
    weights)."""
    (Path(out) / label / f"{task_name}.meta.json").unlink(missing_ok=True)
    (Path(out) / label / f"{task_name}.partial.jsonl").unlink(missing_ok=True)
    return Path(out)


def _routed_eval(router, task, examples, settings, out: Path, label: str, split: str, progress=None):
    """Pass 1 + pass 2 per example; one JSONL record per example with its first-pass answer and route."""
    from ..evaluate import TaskResult
    from ..paths import atomic_write_text

    choices = router.choose([e.messages for e in examples], progress=progress)
    _, answers = router.answer([e.messages for e in examples], settings, choices=choices)
    scores = task.score_batch(answers, list(examples))
    records = [{"id": e.id, "messages": list(e.messages), "first_pass": c.raw, "label": c.label,
                "route": c.route or "base", "completion": a, "extracted": s.extracted, "gold": e.gold,
                "correct": bool(s.correct)} for e, c, a, s in zip(examples, choices, answers, scores)]
    path = Path(out) / label / f"{task.name}.jsonl"
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return TaskResult.from_counts(task.name, split, len(records), sum(r["correct"] for r in records)), records, path


def run_adapt(cfg: AdaptConfig, progress_factory: Callable[[str, int], Any] | None = None) -> dict:
    """Adapt and evaluate; returns the summary (also written to ``<out>/adapt-<strategy>-<task>.json``)."""
    import contextlib

    from .. import __version__, svd, svf
    from ..evaluate import evaluate_task, settings_for
    from ..experts import check_compatible, load_expert
    from ..generation import GenerationSettings, HFBackend
    from ..models import load_model
    from ..paths import atomic_write_json
    from ..tasks import get_task
    from .cls import load_classifier
    from .dispatch import Router, label_experts_for

    cfg.check()
    bar = progress_factory or (lambda d, n: contextlib.nullcontext(None))
    task = get_task(cfg.task)
    experts = [load_expert(p) for p in cfg.experts]
    classifier = load_classifier(cfg.classifier) if cfg.strategy == "cls" else None
    by_label = label_experts_for(experts, cfg.label_mode, classifier)
    examples = task.load(cfg.split, cfg.data_dir)
    loaded = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    model, name = loaded.model, loaded.ref.name
    cache = svd.find_cache(model, name, cfg.svd_cache)
    for e in experts + ([classifier] if classifier else []):
        check_compatible(e, cache.fingerprint, cache, name)
    backend = HFBackend(model, loaded.tokenizer)
    settings = settings_for(task, GenerationSettings(batch_size=cfg.batch_size, seed=cfg.seed), cfg.max_new_tokens)
    out = Path(cfg.out)
    meta: dict[str, Any] = {"model": name, "strategy": cfg.strategy, "task": task.name, "split": cfg.split,
                            "limit": cfg.limit, "experts": {lab: str(e.path) for lab, e in by_label.items()},
                            "seed": cfg.seed, "t2_version": __version__}
    adapted_label = f"adapted-{cfg.strategy}"
    rows = []
    router = Router(backend, model, name, by_label, "cls" if cfg.strategy == "cls" else "prompt", classifier,
                    cache.path, cfg.batch_size)

    if cfg.strategy == "fewshot":
        from . import fewshot as fs

        fcfg = dataclasses.replace(cfg.fewshot, batch_size=cfg.batch_size,
                                   max_new_tokens=cfg.fewshot.max_new_tokens or cfg.max_new_tokens)
        shots, rest = fs.draw_shots(examples, fcfg.shots, fcfg.seed)
        eval_examples = rest[: cfg.limit] if cfg.limit else rest
        ordered = list(by_label.values())
        names = list(dict.fromkeys(n for e in ordered for n in e.params.z))
        factors = svf.Factors.load(cache, names, device=next(model.parameters()).device, model=model)
        traj_path = out / f"cem-{task.name}.jsonl"
        traj_path.parent.mkdir(parents=True, exist_ok=True)
        traj_path.write_text("")

        def log_iteration(record):
            with open(traj_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

        with bar("CEM (fitness evaluations)", fcfg.iterations * fcfg.population) as advance:
            result = fs.search(backend, model, loaded.tokenizer, factors, ordered, task, shots, fcfg,
                               on_iteration=log_iteration, progress=advance)
        save = cfg.save or out / f"fewshot-{task.name}.safetensors"
        save.parent.mkdir(parents=True, exist_ok=True)
        fs.save_mixed(save, factors, result, ordered, fs.renormalise_mode(ordered),
                      {"base_model": name, "model_fingerprint": cache.fingerprint, "svd_fingerprint": cache.fingerprint},
                      task.name, fcfg, [e.id for e in shots])
        meta.update(shots=[e.id for e in shots], alphas=result.alphas, expert_order=list(by_label),
                    shot_fitness={"accuracy": result.fitness[0], "mean_loglik": result.fitness[1]},
                    expert_file=str(save), trajectory=str(traj_path),
                    seconds_per_iteration=round(result.seconds_per_iteration, 3), cem=dataclasses.asdict(fcfg))
        backend.set_weights(result.weights)
        try:
            with bar(adapted_label, len(eval_examples)) as advance:
                res = evaluate_task(backend, task, eval_examples, settings, _fresh(out, adapted_label, task.name),
                                    adapted_label, progress=advance, split=cfg.split)
        finally:
            backend.set_weights(None)
        rows.append({"label": adapted_label, **dataclasses.asdict(res)})
    else:
        eval_examples = examples[: cfg.limit] if cfg.limit else examples
        with bar(adapted_label, len(eval_examples)) as advance:
            res, records, path = _routed_eval(router, task, eval_examples, settings, out, adapted_label, cfg.split,
                                              advance)
        rows.append({"label": adapted_label, **dataclasses.asdict(res)})
        meta.update(routes=dict(Counter(r["route"] for r in records)),
                    per_example_routes={r["id"]: r["route"] for r in records},
                    unparsable=sum(r["label"] is None for r in records), records=str(path))
        if classifier is not None:
            meta["classifier"] = str(classifier.path)

    if cfg.compare:
        variants = [("base", None)] + [(f"expert-{lab}", lab) for lab in by_label]
        for label, lab in variants:
            backend.set_weights(router.weights(lab) if lab else None)
            try:
                with bar(label, len(eval_examples)) as advance:
                    res = evaluate_task(backend, task, eval_examples, settings, _fresh(out, label, task.name), label,
                                        progress=advance, split=cfg.split)
            finally:
                backend.set_weights(None)
            rows.append({"label": label, **dataclasses.asdict(res)})
    meta["n_eval"] = len(eval_examples)
    summary = {"meta": meta, "results": rows}
    atomic_write_json(out / f"adapt-{cfg.strategy}-{task.name}.json", summary)
    return summary


__all__ = ["AdaptConfig", "FewShotConfig", "STRATEGIES", "run_adapt"]
