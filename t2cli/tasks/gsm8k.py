"""GSM8K: grade-school math word problems with a numeric answer.

Split policy (as in the paper): the Hub *train* split (7473) is halved by a fixed seeded permutation into
``train`` (3736) and ``validation`` (3737) — the two halves differ by the one odd record; ``test`` (1319) is
kept for evaluation only. The permutation is a sha256 order of the question text with seed 0, so it does not
depend on library versions or on the order of the records on disk.

Scoring departs from the public reference code: numbers may carry commas, a sign, decimals, ``$``, ``%`` or a
trailing ``.``; ``5.0`` equals ``5``; an explicit ``#### N``, "The answer is N" or ``\\boxed{N}`` wins, else the
last number in the completion; a completion with no number is wrong (``extracted=None``), never guessed.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from t2cli.data import load_records
from t2cli.errors import TaskError
from t2cli.tasks.base import Example, Task, halves, user_messages

HUB_ID, HUB_CONFIG, FOLDER = "openai/gsm8k", "main", "gsm8k"
SPLIT_SEED = 0

PROMPT = '{question}\nSolve it step by step, then finish with "The answer is N" where N is a number.'

# A number: thousands groups with commas, or plain digits; optional decimals; optional leading sign / currency.
_NUMBER = r"(?:(?<![\w)\]])[-+])?\$?\s?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_HASH_RE = re.compile(r"####\s*(" + _NUMBER + ")")
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:|=)\s*[:\s]*(?:\$|\\\(|\\boxed\{|\*\*|\()*\s*(" + _NUMBER + ")", re.I)
_BOXED_RE = re.compile(r"\\boxed\{\s*\\?\$?\s*(" + _NUMBER + r")\s*\}")
_CALC_RE = re.compile(r"<<[^>]*>>")


def normalize_number(text: str) -> str | None:
    """Canonical string of a number ('1,234.50' -> '1234.5', '$5.00' -> '5', '-0' -> '0'); None if not one."""
    s = text.strip().replace("\u2212", "-").replace("$", "").replace(",", "").replace(" ", "")
    s = s.rstrip(".%")
    if s.startswith("+"):
        s = s[1:]
    try:
        value = Decimal(s)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_number(completion: str) -> str | None:
    """The final numeric answer of a completion, normalised, or None."""
    text = completion.replace("\u2212", "-")
    for pattern in (_HASH_RE, _ANSWER_IS_RE, _BOXED_RE):
        matches = pattern.findall(text)
        if matches:
            return normalize_number(matches[-1])
    numbers = _NUMBER_RE.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def gold_from_answer(answer: str) -> str:
    """The gold number after '#### ' in a GSM8K answer field (commas removed, normalised)."""
    if "####" not in answer:
        raise TaskError("a GSM8K record has no '#### ' final answer; the data file is damaged")
    gold = normalize_number(answer.rsplit("####", 1)[1])
    if gold is None:
        raise TaskError("a GSM8K record's final answer is not a number; the data file is damaged")
    return gold


class GSM8K(Task):
    name = "gsm8k"
    category = "math"
    max_new_tokens = 512
    splits = ("train", "validation", "test")
    split_policy = (
        "train/validation are the two halves of the Hub train split (seeded permutation, seed 0); test is the Hub test split."
    )

    def _load(self, split: str, data_dir: str | Path | None) -> list[Example]:
        source = "test" if split == "test" else "train"
        records = load_records(FOLDER, source, HUB_ID, HUB_CONFIG, data_dir)
        indices = list(range(len(records)))
        if split != "test":
            first, second = halves([r.get("question", "") for r in records], SPLIT_SEED)
            indices = first if split == "train" else second
        return [self._example(records[i], f"gsm8k/{source}/{i}") for i in indices]

    def _example(self, record: dict, ex_id: str) -> Example:
        question = str(record.get("question") or "").strip()
        answer = str(record.get("answer") or "")
        if not question or not answer:
            raise TaskError(f"GSM8K record {ex_id} lacks a question or an answer; the data file is damaged")
        gold = gold_from_answer(answer)
        reasoning = _CALC_RE.sub("", answer.rsplit("####", 1)[0]).strip()
        solution = f"{reasoning}\nThe answer is {gold}."
        return Example(ex_id, question, user_messages(PROMPT.format(question=question)), gold, solution, {})

    def extract(self, completion: str, example: Example) -> str | None:
        return extract_number(completion)

    def equivalent(self, extracted: str, gold: str, example: Example) -> bool:
        a, b = normalize_number(extracted), normalize_number(gold)
        return a is not None and a == b
