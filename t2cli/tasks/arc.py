"""ARC-Easy and ARC-Challenge: grade-school science multiple choice (3-5 choices, labels A-E or 1-5).

Split policy: the Hub splits as they are — ``train`` and ``validation`` for training and selection, ``test``
for evaluation (the paper trains its reasoning expert on ARC-Easy train and evaluates ARC-Challenge).

Two prompt formats, each its own task name over the same splits:

* ``arc_easy`` / ``arc_challenge`` (letters, as the paper): choices are shown with their own labels (A-E or 1-5)
  and the model is asked for the label. The extractor accepts "The answer is (B)", "Answer: 2", "B) text",
  "**C**", a lone lowercase "b", or the exact text of one choice.
* ``arc_easy_text`` / ``arc_challenge_text`` (choice text): the choices are a bulleted list without labels and the
  model answers with the text of one. Models below ~1B parameters cannot bind letters to options (multiple-choice
  format emerges late in pre-training): SmolLM2-135M is at chance with letters (25.5% on ARC-Easy test, "A" in
  about half of its answers), and no calibration of its letter probabilities helps, so letter rewards carry no
  signal for RL at that size. With the text of the choices its answers are far less position-biased. The
  extractor reads the first line of the answer (after a bullet, quotes or "The answer is"): the choice whose text
  it is, or the only choice whose text it contains; a line naming two choices, or an answer that copies the list
  (two choices on its first two lines), is unparsable.

Anything else is wrong with ``extracted=None`` — the reference code's random guess is not copied.
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


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


_LEAD_RE = re.compile(r"^(?:the\s+)?(?:correct\s+|best\s+|right\s+)?(?:answer|choice|option)\s*(?:is)?\s*[:\-]?\s*",
                      re.I)


def _line_choice(line: str, texts: list[str]) -> int | None:
    """Index of the one choice this line gives: its exact text, or the only choice it contains (a choice whose
    text is part of a longer contained choice does not count twice); None otherwise."""
    normed = [_norm(t) for t in texts]
    raw = _norm(line)
    line = re.sub(r"^\s*(?:[\-\*•>]+\s*|\(?\d{1,2}[\.\)]\s+)?", "", line)  # a bullet or "1. " in front
    line = _LEAD_RE.sub("", line).strip()
    norm = _norm(line)
    if not norm:
        return None
    for candidate in (raw, norm):
        exact = [i for i, t in enumerate(normed) if t and t == candidate]
        if len(exact) == 1:
            return exact[0]
    hits = [i for i, t in enumerate(normed) if t and re.search(rf"(?:^| ){re.escape(t)}(?: |$)", norm)]
    hits = [i for i in hits if not any(j != i and normed[i] != normed[j] and normed[i] in normed[j] for j in hits)]
    return hits[0] if len(hits) == 1 else None


def extract_text_choice(completion: str, labels: list[str], texts: list[str]) -> str | None:
    """The label of the choice whose text the answer's first line gives (see the module docstring), or None."""
    lines = [ln.strip() for ln in completion.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    first = lines[0]
    if not _norm(_LEAD_RE.sub("", first)) and len(lines) > 1:  # "The correct answer is:" then the answer
        lines = lines[1:]
        first = lines[0]
    pick = _line_choice(first, texts)
    if pick is None:
        return None
    if len(lines) > 1:
        second = _line_choice(lines[1], texts)
        if second is not None and second != pick:  # the list of choices copied back
            return None
    return labels[pick].upper()


class ARC(Task):
    category = "reasoning"
    max_new_tokens = 128
    splits = ("train", "validation", "test")
    split_policy = "the Hub's train/validation/test splits unchanged; test is for evaluation only."

    def __init__(self, name: str, config: str, style: str = "letter"):
        if style not in ("letter", "text"):
            raise TaskError(f"ARC prompt style {style!r}: use letter or text")
        self.name = name
        self.config = config
        self.style = style
        self.folder = "arc_easy" if config == "ARC-Easy" else "arc_challenge"  # the data of both styles
        if style == "text":
            self.max_new_tokens = 32

    def _load(self, split: str, data_dir: str | Path | None) -> list[Example]:
        records = load_records(self.folder, split, HUB_ID, self.config, data_dir)
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
        answer_text = texts[[label.upper() for label in labels].index(key)]
        if self.style == "text":
            options = "\n".join(f"- {text}" for text in texts)
            prompt = f"{question}\nChoices:\n{options}\nAnswer with the correct choice."
            solution = answer_text
        else:
            options = "\n".join(f"{label}. {text}" for label, text in zip(labels, texts))
            kind = "number" if labels[0].isdigit() else "letter"
            prompt = f"{question}\n{options}\nAnswer with the {kind} of the correct choice."
            solution = f"The answer is {key}. {answer_text}"
        meta = {"labels": labels, "texts": texts}
        return Example(ex_id, question, user_messages(prompt), key, solution, meta)

    def extract(self, completion: str, example: Example) -> str | None:
        if self.style == "text":
            return extract_text_choice(completion, example.meta["labels"], example.meta["texts"])
        return extract_choice(completion, example.meta["labels"], example.meta.get("texts"))


def arc_easy() -> ARC:
    return ARC("arc_easy", "ARC-Easy")


def arc_challenge() -> ARC:
    return ARC("arc_challenge", "ARC-Challenge")


def arc_easy_text() -> ARC:
    return ARC("arc_easy_text", "ARC-Easy", style="text")


def arc_challenge_text() -> ARC:
    return ARC("arc_challenge_text", "ARC-Challenge", style="text")
