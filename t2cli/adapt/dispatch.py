"""Shared first-pass logic of two-pass adaptation: the routing prompt, strict parsing, label sets, and a ``Router``
that composes each expert's weights once and answers a batch grouped by the chosen expert.

The first pass shows the prompt *first*, then one line asking for a category ("Is the question above about math,
code, reasoning or others? Answer with one word."). Measured on SmolLM2-135M-Instruct: with the categories in a
system prompt (the paper's layout) the model answered the question instead (0% parseable); with the question first
it answered "The question is about math." Parsing is strict: the first word of the answer (after markdown, quotes,
an optional "answer:" prefix and an optional "The question is about" sentence start) must be one of the labels. Departures from the public reference code: an unparsable answer or
"others" routes to the **base** weights (the reference silently kept whichever expert was loaded last), and
an answer is never guessed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, ExpertError

log = logging.getLogger(__name__)

OTHERS = "others"
FIRST_PASS_TOKENS = 8
_ALIASES = {"other": OTHERS, "coding": "code", "programming": "code", "mathematics": "math", "maths": "math"}


def join_labels(labels: Sequence[str]) -> str:
    """"a", "a or b", "a, b or c"."""
    labels = list(labels)
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def routing_text(question: str, labels: Sequence[str]) -> str:
    """The first-pass user message: the question first, then the one-word category request."""
    return f"{question.rstrip()}\n\nIs the question above about {join_labels(labels)}? Answer with one word."


def routing_messages(prompt: Any, labels: Sequence[str]) -> tuple[dict, ...]:
    """First-pass chat messages for ``prompt`` (a string or chat messages; the last user turn is classified)."""
    return ({"role": "user", "content": routing_text(prompt_text(prompt), labels)},)


def as_messages(prompt: Any) -> tuple[dict, ...]:
    """Plain text becomes one user turn (backends treat a bare string as already-rendered text)."""
    return ({"role": "user", "content": prompt},) if isinstance(prompt, str) else tuple(prompt)


def prompt_text(prompt: Any) -> str:
    """The text that is classified: a string as is, else the content of the last user message."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
    if not users:
        raise ConfigError("a prompt has no user message: pass text or chat messages with a user turn")
    return str(users[-1])


_WORD_RE = re.compile(r"[a-z0-9_+\-]+")


def parse_label(answer: str | None, labels: Sequence[str]) -> str | None:
    """The label named by the first word of ``answer`` (case-insensitive), or None. Never a guess.

    Accepted: "math", "Math.", "**code**", "'reasoning'", "Answer: math", "math - it asks for a sum", and the one
    fixed sentence SmolLM2-135M answers with, "The question is about math." (the label right after "about").
    Rejected: "", "The question is about logic and reasoning" (the word after "about" is not a label),
    "A question about math, reasoning, code", "mathematical", "I think code".
    "other" counts as "others" when "others" is a label; a few plain synonyms ("coding", "maths") map too.
    """
    if not answer:
        return None
    text = answer.strip().lower()
    text = re.sub(r"^[\s\*_`\"'\(\[#>-]*", "", text)
    text = re.sub(r"^(?:the\s+)?(?:answer|category)\s*(?:is|:|-)\s*", "", text)
    text = re.sub(r"^(?:the\s+|this\s+)?(?:question|prompt|it)(?:\s+above)?\s+is\s+(?:about\s+)?", "", text)
    text = re.sub(r"^[\s\*_`\"'\(\[]*", "", text)
    match = _WORD_RE.match(text)
    if not match:
        return None
    word = match.group(0).strip("-")
    by_lower = {label.lower(): label for label in labels}
    if word in by_lower:
        return by_lower[word]
    alias = _ALIASES.get(word)
    return by_lower.get(alias) if alias else None


def first_pass_settings(batch_size: int = 8) -> Any:
    from ..generation import GenerationSettings

    return GenerationSettings(max_new_tokens=FIRST_PASS_TOKENS, temperature=0.0, batch_size=batch_size)


@dataclass
class Choice:
    """Pass-1 outcome for one prompt: the raw answer, the parsed label (None: unparsable) and the route
    (the expert label whose weights answer, or None for the base weights)."""

    raw: str
    label: str | None
    route: str | None


def expert_label(expert) -> str:
    """The category of the expert's task (math, code, reasoning) if the task is known, else its task name."""
    from ..tasks import get_task
    from ..errors import TaskError

    task = expert.meta.get("task") or expert.name
    try:
        return get_task(task).category
    except TaskError:
        return str(task)


def label_experts(experts: Sequence, mode: str = "auto") -> dict[str, Any]:
    """{label: expert}. ``mode``: category (math/code/reasoning), task (task names) or auto (categories when they
    are distinct, else task names). Two experts with one label is a ConfigError."""
    if mode not in ("auto", "category", "task"):
        raise ConfigError(f"label mode {mode!r}: use auto, category or task")
    if not experts:
        raise ConfigError("no experts given: pass --experts FILE (one per task)")
    tasks = [str(e.meta.get("task") or e.name) for e in experts]
    cats = [expert_label(e) for e in experts]
    if mode == "auto":
        mode = "category" if len(set(cats)) == len(cats) else "task"
    labels = cats if mode == "category" else tasks
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"two experts share the label {dup[0]!r}: pass one expert per {mode} (or --labels task)")
    if OTHERS in labels:
        raise ConfigError(f"an expert is labelled {OTHERS!r}, which is reserved for the base weights: rename its task")
    return dict(zip(labels, experts))


def label_experts_for(experts: Sequence, mode: str = "auto", classifier=None) -> dict[str, Any]:
    """Like ``label_experts``; with a classifier and ``mode="auto"`` the mode whose labels match the classifier's
    labels best is used (a classifier trained with task-name labels then finds its experts)."""
    if classifier is None or mode != "auto":
        return label_experts(experts, mode)
    wanted = set(classifier.meta.get("labels") or [])
    best = None
    for m in ("category", "task"):
        try:
            cand = label_experts(experts, m)
        except ConfigError:
            continue
        if best is None or len(wanted & set(cand)) > len(wanted & set(best)):
            best = cand
    return best if best is not None else label_experts(experts, mode)


@dataclass
class Router:
    """Two-pass answering over one backend.

    ``experts``: {label: Expert}; ``strategy``: prompt (base model classifies, "others" allowed) or cls
    (``classifier`` expert classifies among its own labels). Composed weights are cached per label, so each
    expert is composed once; switching afterwards is one ``set_weights`` (a pointer swap per matrix).
    """

    backend: Any
    model: Any
    model_name: str
    experts: Mapping[str, Any]
    strategy: str = "prompt"
    classifier: Any = None
    svd_cache: Any = None
    batch_size: int = 8
    _weights: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.strategy not in ("prompt", "cls"):
            raise ConfigError(f"strategy {self.strategy!r} cannot route per prompt: use prompt or cls")
        if self.strategy == "cls":
            if self.classifier is None:
                raise ConfigError("--strategy cls needs --classifier FILE (train one with `t2 classify-train`)")
            if self.classifier.meta.get("kind") != "classifier" or not self.classifier.meta.get("labels"):
                raise ExpertError(f"{self.classifier.path} is not a classifier expert (no kind=classifier/labels): "
                                  "train one with `t2 classify-train`")
            missing = [label for label in self.labels if label not in self.experts]
            if missing:
                log.warning("classifier labels without an expert route to the base weights: %s", ", ".join(missing))

    @property
    def labels(self) -> list[str]:
        if self.strategy == "cls":
            return list(self.classifier.meta["labels"])
        return [*self.experts, OTHERS]

    def weights(self, label: str | None):
        """Composed W' of the expert routed to by ``label`` (cached), or None for the base weights.

        Composing a new expert first puts the base weights back in the backend: the check that the expert fits
        the model fingerprints the model's current weights, which must not be another expert's."""
        if label is None:
            return None
        if label not in self._weights:
            from ..evaluate import expert_weights

            self.backend.set_weights(None)
            expert = self.classifier if label == "__classifier__" else self.experts[label]
            self._weights[label] = expert_weights(expert, self.model, self.model_name, self.svd_cache)
        return self._weights[label]

    def route(self, label: str | None) -> str | None:
        return label if label in self.experts else None

    def choose(self, prompts: Sequence[Any], progress=None) -> list[Choice]:
        """Pass 1 for every prompt (base weights for ``prompt``, the classifier's for ``cls``)."""
        labels = self.labels
        first = [routing_messages(p, labels) for p in prompts]
        self.backend.set_weights(self.weights("__classifier__") if self.strategy == "cls" else None)
        try:
            raws = self.backend.generate(first, first_pass_settings(self.batch_size), progress=progress)
        finally:
            self.backend.set_weights(None)
        out = []
        for raw in raws:
            label = parse_label(raw, labels)
            out.append(Choice(raw, label, self.route(label)))
        return out

    def answer(self, prompts: Sequence[Any], settings, choices: Sequence[Choice] | None = None,
               progress=None) -> tuple[list[Choice], list[str]]:
        """Pass 1 (unless ``choices`` are given) and pass 2, grouped by route; returns (choices, answers)."""
        prompts = [as_messages(p) for p in prompts]
        choices = list(choices) if choices is not None else self.choose(prompts)
        answers: list[str | None] = [None] * len(prompts)
        groups: dict[str | None, list[int]] = {}
        for i, c in enumerate(choices):
            groups.setdefault(c.route, []).append(i)
        try:
            for route, idx in groups.items():
                self.backend.set_weights(self.weights(route))
                outs = self.backend.generate([prompts[i] for i in idx], settings, progress=progress)
                for i, o in zip(idx, outs):
                    answers[i] = o
        finally:
            self.backend.set_weights(None)
        return choices, answers  # type: ignore[return-value]
