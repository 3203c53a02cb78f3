"""The task interface: load examples of a split, turn them into chat messages, extract and score answers.

Every task module subclasses ``Task``. ``load`` is deterministic (fixed, hash-based permutations where a split is
derived), scoring never guesses (an answer that cannot be parsed is wrong, ``extracted=None``), and an example
without a gold answer is a TaskError, never silently scored.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from t2cli.errors import TaskError


@dataclass(frozen=True)
class Example:
    id: str  # stable id, unique within a task+split
    question: str  # the plain question text
    messages: tuple[dict, ...] = field(hash=False)  # chat messages to send (role/content), without the assistant turn
    gold: str  # gold answer, normalised as the task compares it (never empty)
    solution: str  # a gold completion text (next-token training, log-likelihood tie-breaks)
    meta: dict = field(default_factory=dict, hash=False, compare=False)  # whatever the scorer needs


@dataclass(frozen=True)
class Score:
    correct: bool
    extracted: str | None  # None when the completion could not be parsed (then correct is False)


def user_messages(text: str) -> tuple[dict, ...]:
    """The single user turn every task sends (the chat template is applied later, by the generator)."""
    return ({"role": "user", "content": text},)


def seeded_order(keys: Iterable[str], seed: int) -> list[int]:
    """A permutation of range(len(keys)) fixed by ``seed`` and the keys alone (sha256, not a library RNG),
    so it is identical across Python/NumPy versions and independent of the records' order on disk."""
    keys = list(keys)
    digests = [hashlib.sha256(f"{seed}:{k}".encode()).hexdigest() for k in keys]
    return sorted(range(len(keys)), key=lambda i: (digests[i], i))


def halves(keys: Sequence[str], seed: int) -> tuple[list[int], list[int]]:
    """Split indices into two halves by a seeded permutation (the first half gets the smaller one if odd)."""
    order = seeded_order(keys, seed)
    mid = len(order) // 2
    return sorted(order[:mid]), sorted(order[mid:])


class Task(ABC):
    """One benchmark: its splits, prompts, answer extraction and scoring."""

    name: str
    category: str  # "math" | "code" | "reasoning"
    max_new_tokens: int
    splits: tuple[str, ...]
    split_policy: str

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise TaskError(
                f"task {self.name!r} has no split {split!r}; choose one of: {', '.join(self.splits)}"
            )

    def load(self, split: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[Example]:
        """The examples of ``split`` in a fixed order; ``limit`` keeps the first ``limit`` of them."""
        self.check_split(split)
        if limit is not None and limit < 0:
            raise TaskError(f"limit must be >= 0, got {limit}; pass a positive number of examples or none")
        examples = self._load(split, data_dir)
        ids = set()
        for ex in examples:
            if not ex.gold.strip():
                raise TaskError(f"{self.name} example {ex.id} has an empty gold answer; the data file is damaged")
            ids.add(ex.id)
        if len(ids) != len(examples):
            raise TaskError(f"{self.name} split {split} has duplicate example ids; the data file is damaged")
        return examples if limit is None else examples[:limit]

    @abstractmethod
    def _load(self, split: str, data_dir: str | Path | None) -> list[Example]:
        """All examples of a (validated) split."""

    @abstractmethod
    def extract(self, completion: str, example: Example) -> str | None:
        """The answer found in ``completion``, normalised, or None when there is none."""

    def score(self, completion: str, example: Example) -> Score:
        gold = self.require_gold(example)
        extracted = self.extract(completion, example)
        if extracted is None:
            return Score(False, None)
        return Score(self.equivalent(extracted, gold, example), extracted)

    def equivalent(self, extracted: str, gold: str, example: Example) -> bool:
        return extracted == gold

    def score_batch(self, completions: list[str], examples: list[Example], workers: int = 2) -> list[Score]:
        if len(completions) != len(examples):
            raise TaskError(
                f"got {len(completions)} completions for {len(examples)} examples; pass one completion per example"
            )
        return [self.score(c, e) for c, e in zip(completions, examples)]

    def require_gold(self, example: Example) -> str:
        if example.gold is None or not str(example.gold).strip():
            raise TaskError(f"{self.name} example {example.id!r} has no gold answer; it cannot be scored")
        return example.gold

    def __repr__(self) -> str:
        return f"<Task {self.name} ({self.category})>"


_FENCE_RE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_CODE_START_RE = re.compile(r"^(?:def |class |import |from |@|async def )", re.M)


def extract_code(completion: str, name: str | None = None) -> str | None:
    """The Python code of a completion: a ```python (or unlabelled) fenced block — the first that defines
    ``name`` if given, else the first with a ``def`` — an unclosed fence's remainder, or, without fences, the text
    from the first line that looks like code. None when there is no code at all."""
    blocks = [
        (lang.lower(), body) for lang, body in _FENCE_RE.findall(completion)
        if lang.lower() in ("", "python", "py", "python3") and body.strip()
    ]
    if blocks:
        bodies = [body for _, body in blocks]
        if name:
            named = [b for b in bodies if re.search(rf"def\s+{re.escape(name)}\s*\(", b)]
            if named:
                return named[0].rstrip() + "\n"
        with_def = [b for b in bodies if "def " in b]
        return (with_def or bodies)[0].rstrip() + "\n"
    if "```" in completion:
        return None  # fences, but none of them Python
    match = _CODE_START_RE.search(completion)
    code = completion[match.start():] if match else completion
    return code.rstrip() + "\n" if code.strip() else None


class CodeTask(Task):
    """A task scored by running a program (solution + tests) in the sandbox; correct iff it runs to its end."""

    category = "code"
    max_new_tokens = 512
    timeout_s = 10.0
    memory_mb = 512

    def extract(self, completion: str, example: Example) -> str | None:
        return extract_code(completion, example.meta.get("entry_point"))

    @abstractmethod
    def build_program(self, code: str, example: Example) -> str:
        """The full program that passes iff ``code`` is a correct solution of ``example``."""

    def score(self, completion: str, example: Example) -> Score:
        return self.score_batch([completion], [example], workers=1)[0]

    def score_batch(self, completions: list[str], examples: list[Example], workers: int = 2) -> list[Score]:
        from t2cli.tasks.sandbox import run_programs

        if len(completions) != len(examples):
            raise TaskError(
                f"got {len(completions)} completions for {len(examples)} examples; pass one completion per example"
            )
        codes = []
        for completion, example in zip(completions, examples):
            self.require_gold(example)
            codes.append(self.extract(completion, example))
        todo = [i for i, code in enumerate(codes) if code is not None]
        programs = [self.build_program(codes[i], examples[i]) for i in todo]
        results = run_programs(programs, workers=workers, timeout=self.timeout_s, memory_mb=self.memory_mb)
        scores = [Score(False, None) for _ in codes]
        for i, result in zip(todo, results):
            scores[i] = Score(result.passed, codes[i])
        return scores
