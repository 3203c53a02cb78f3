"""ARC-Easy and ARC-Challenge: grade-school science multiple choice (3-5 choices, labels A-E or 1-5).

Split policy: the Hub splits as they are — ``train`` and ``validation`` for training and selection, ``test``
for evaluation (the paper trains its reasoning expert on ARC-Easy train and evaluates ARC-Challenge).

Choices are shown with their own labels (A-E or 1-5) and the model is asked for the label. The extractor
accepts "The answer is (B)", "Answer: 2", "B) text", "**C**", a lone lowercase "b", or the exact text of one
choice; anything else is wrong with ``extracted=None`` — the reference code's random guess is not copied.
"""

from __future__ import annotations

import re
from pathlib import Path

from t2cli.data import load_records
from t2cli.errors import TaskError
from t2cli.tasks.base import Example, Task, user_messages

HUB_ID = "allenai/ai2_arc"


def _label_pattern(labels: list[str]) -> str:
    return "(?:" + "|".join(re.escape(label) for label in labels) + ")"


def extract_choice(completion: str, labels: list[str], texts: list[str] | None = None) -> str | None:
    """The chosen label (one of ``labels``, uppercase) or None; never a guess."""
    text = completion.strip()
    if not text:
        return None
    upper = [label.upper() for label in labels]
    up = _label_pattern(upper)
    low = _label_pattern([label.lower() for label in upper if not label.isdigit()] or ["\\d"])
    # an uppercase label or digit must not run into a word; a lowercase letter must stand alone ("is b." / "(b)"),
    # so the article in "the answer is a cat" is not read as choice A
    label_re = rf"(?:({up})(?![\w])|({low})(?=\s*$|[\)\]\.\*:,]))"
    strong = [
        # "answer is (B)", "answer: B", "Answer - 2", "correct choice is C", "option b)"
        rf"(?i:answer|choice|option)\s*(?:(?i:is)|:|-|=)?\s*(?:(?i:option|choice)\s*)?[\(\[\*\s]*{label_re}",
        rf"\\boxed\{{\s*(?:\\text\{{)?\s*{label_re}",
    ]
    for pattern in strong:
        matches = re.findall(pattern, text)
        if matches:
            return "".join(matches[-1]).upper()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    # the completion starts with the label: "B", "B.", "B)", "(B) text", "**B**", "b", "2: text"
    match = re.match(rf"^[\(\[\*\s]*{label_re}(?:[\)\]\.:\*]|\s*$)", first)
    if match:
        return "".join(g or "" for g in match.groups()).upper()
    # the exact text of exactly one choice
    if texts:
        norm = re.sub(r"\W+", " ", text.lower()).strip()
        hits = [upper[i] for i, t in enumerate(texts) if re.sub(r"\W+", " ", t.lower()).strip() == norm]
        if len(hits) == 1:
            return hits[0]
    return None


class ARC(Task):
    category = "reasoning"
    max_new_tokens = 128
    splits = ("train", "validation", "test")
    split_policy = "the Hub's train/validation/test splits unchanged; test is for evaluation only."

    def __init__(self, name: str, config: str):
        self.name = name
        self.config = config

    def _load(self, split: str, data_dir: str | Path | None) -> list[Example]:
        records = load_records(self.name, split, HUB_ID, self.config, data_dir)
        return [self._example(r, i, split) for i, r in enumerate(records)]

    def _example(self, record: dict, index: int, split: str) -> Example:
        ex_id = str(record.get("id") or f"{self.name}/{split}/{index}")
        choices = record.get("choices") or {}
        labels = [str(x).strip() for x in choices.get("label", [])]
        texts = [str(x).strip() for x in choices.get("text", [])]
        key = str(record.get("answerKey") or "").strip().upper()
        question = str(record.get("question") or "").strip()
        if not question or not labels or len(labels) != len(texts):
            raise TaskError(f"{self.name} record {ex_id} has no question or malformed choices; the data file is damaged")
        if not key or key not in [label.upper() for label in labels]:
            raise TaskError(f"{self.name} record {ex_id} has answerKey {key!r} outside its labels; the data file is damaged")
        options = "\n".join(f"{label}. {text}" for label, text in zip(labels, texts))
        kind = "number" if labels[0].isdigit() else "letter"
        prompt = f"{question}\n{options}\nAnswer with the {kind} of the correct choice."
        answer_text = texts[[label.upper() for label in labels].index(key)]
        solution = f"The answer is {key}. {answer_text}"
        meta = {"labels": labels, "texts": texts}
        return Example(ex_id, question, user_messages(prompt), key, solution, meta)

    def extract(self, completion: str, example: Example) -> str | None:
        return extract_choice(completion, example.meta["labels"], example.meta.get("texts"))


def arc_easy() -> ARC:
    return ARC("arc_easy", "ARC-Easy")


def arc_challenge() -> ARC:
    return ARC("arc_challenge", "ARC-Challenge")
