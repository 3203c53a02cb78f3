"""The classification data set of `t2 classify-train`, as a Task: "which expert's task is this prompt from?".

Examples come from the **train** splits of the experts' tasks (labelled with the expert's category or task name);
validation examples from their **validation** splits, halved by a seeded order into ``validation`` (model selection
during training) and ``heldout`` (the accuracy reported before and after training). Test questions are never read —
the public reference code trained its classifier on test questions. A task without a train or validation split
(HumanEval, full MATH) is a TaskError with the fix.

The prompt is the task's own user message (what pass 1 sees at adaptation time) followed by "Is the question above
about <labels>? Answer with one word." (see ``t2cli.adapt.dispatch``). The reward is the exact label, parsed strictly
from the first word; an unparsable answer is wrong (never a random guess).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .adapt.dispatch import parse_label, prompt_text, routing_text
from .errors import ConfigError, TaskError
from .tasks.base import Example, Task, halves, seeded_order, user_messages

log = logging.getLogger(__name__)

SPLIT_SOURCE = {"train": "train", "validation": "validation", "heldout": "validation"}


class ClassificationTask(Task):
    """``labels``: {label: task name or Task}. ``per_label_limit`` caps each label's train examples (seeded pick);
    ``val_per_label_limit`` caps each label's validation/heldout examples."""

    name = "classify"
    category = "classification"
    max_new_tokens = 8
    splits = ("train", "validation", "heldout")
    split_policy = ("train: the source tasks' train splits; validation/heldout: the two halves (seeded) of their "
                    "validation splits; test splits are never read.")

    def __init__(self, labels: Mapping[str, str | Task], per_label_limit: int | None = None,
                 val_per_label_limit: int | None = None, seed: int = 0):
        from .tasks import get_task

        if len(labels) < 2:
            raise ConfigError(f"classification needs at least 2 labels, got {len(labels)}: pass two or more experts")
        self.sources = {lab: (get_task(t) if isinstance(t, str) else t) for lab, t in labels.items()}
        self.labels = list(self.sources)
        for lab, task in self.sources.items():
            lacking = [s for s in ("train", "validation") if s not in task.splits]
            if lacking:
                raise TaskError(f"task {task.name} (label {lab}) has no {' or '.join(lacking)} split, so it cannot feed "
                                "the classifier without test questions: use an expert of a task with train/validation")
        self.per_label_limit, self.val_per_label_limit, self.seed = per_label_limit, val_per_label_limit, seed

    def _load(self, split: str, data_dir) -> list[Example]:
        out = []
        limit = self.per_label_limit if split == "train" else self.val_per_label_limit
        for lab, task in self.sources.items():
            src = task.load(SPLIT_SOURCE[split], data_dir)
            if split != "train":
                first, second = halves([e.id for e in src], self.seed)
                src = [src[i] for i in (first if split == "validation" else second)]
            if limit is not None:
                keep = sorted(seeded_order([e.id for e in src], self.seed)[:limit])
                src = [src[i] for i in keep]
            out.extend(self._example(lab, task, e, split) for e in src)
        order = seeded_order([e.id for e in out], self.seed)  # interleave labels
        return [out[i] for i in order]

    def _example(self, label: str, task: Task, ex: Example, split: str) -> Example:
        text = routing_text(prompt_text(ex.messages), self.labels)
        return Example(f"{label}/{ex.id}", ex.question, user_messages(text), label, label,
                       {"split": split, "source_task": task.name, "source_split": SPLIT_SOURCE[split]})

    def extract(self, completion: str, example: Example) -> str | None:
        return parse_label(completion, self.labels)


@dataclass
class ClassifyTrainResult:
    expert_path: Path
    labels: list
    label_tasks: dict
    heldout_before: float
    heldout_after: float
    n_train: int
    n_heldout: int
    best_val: float | None
    steps: int
    run_dir: Path
    answers_before: dict = field(default_factory=dict)  # label -> how often it was predicted (before training)


def _heldout_accuracy(backend, weights, task: ClassificationTask, examples, batch_size: int) -> tuple[float, dict]:
    from collections import Counter

    from .adapt.dispatch import first_pass_settings

    backend.set_weights(weights)
    try:
        outs = backend.generate([e.messages for e in examples], first_pass_settings(batch_size))
    finally:
        backend.set_weights(None)
    scores = task.score_batch(outs, list(examples))
    counts = Counter(s.extracted or "<unparsable>" for s in scores)
    return sum(s.correct for s in scores) / max(1, len(scores)), dict(counts)


def run_classify_train(config, expert_paths: Sequence[Path], model: str | None, label_mode: str = "auto",
                       per_label_limit: int | None = None, heldout_limit: int | None = None, device: str = "auto",
                       dtype: str = "auto", cache_path: Path | None = None, build_cache: bool = False,
                       progress: Callable[[int], None] | None = None) -> ClassifyTrainResult:
    """Build the data set from the experts' tasks, measure held-out accuracy, train z^c with ``rl.train``
    (kind=classifier), measure again with the kept classifier."""
    from .adapt.dispatch import label_experts
    from .evaluate import expert_weights
    from .experts import check_compatible, load_expert
    from .generation import HFBackend
    from .models import load_model
    from .recipes import ensure_cache
    from .rl import train
    from .svd import model_fingerprint

    experts = [load_expert(p) for p in expert_paths]
    by_label = label_experts(experts, label_mode)
    label_tasks = {lab: str(e.meta.get("task")) for lab, e in by_label.items()}
    task = ClassificationTask(label_tasks, per_label_limit, None, config.seed)
    config.kind, config.labels = "classifier", list(by_label)
    config.extra = {**config.extra, "label_tasks": label_tasks, "experts": [str(p) for p in expert_paths]}
    config.validate()
    loaded = load_model(model, device=device, dtype=dtype)
    fp = model_fingerprint(loaded.model)
    for e in experts:
        check_compatible(e, fp, None, loaded.ref.name)
    cache, _ = ensure_cache(loaded, config.targets, config.layers, cache_path, build_cache)
    heldout = task.load("heldout", config.data_dir, limit=heldout_limit)
    n_train = len(task.load("train", config.data_dir, limit=config.train_limit))
    backend = HFBackend(loaded.model, loaded.tokenizer)
    before, counts = _heldout_accuracy(backend, None, task, heldout, config.gen_batch_size)
    res = train(config, loaded.model, loaded.tokenizer, loaded.ref.name,
                cache, task, progress=progress, backend=backend)
    clf = load_expert(res.expert_path)
    after, _ = _heldout_accuracy(backend, expert_weights(clf, loaded.model, loaded.ref.name, cache.path), task,
                                 heldout, config.gen_batch_size)
    return ClassifyTrainResult(res.expert_path, list(by_label), label_tasks, before, after, n_train, len(heldout),
                               res.best_val, res.steps_done, res.run_dir, counts)
