"""MATH (Hendrycks competition math) and MATH-500: free-form answers in LaTeX, compared by equivalence.

Named ``math_task`` so it never shadows the standard ``math`` module.

Split policy:
* ``math``: the Hub test split (5000 problems) only, for evaluation — no MATH train split is available offline,
  so this task offers no train/validation (the paper, too, only evaluates on MATH).
* ``math500``: ``test`` is MATH-500 (500 problems). ``train`` and ``validation`` are the 4500 MATH test problems
  that are *not* in MATH-500 (matched by problem text), halved by a seeded sha256 permutation (seed 0), so
  training or few-shot selection never sees a MATH-500 problem. This departs from the paper (which has no
  such split) because the MATH train split is not available offline.

Answers: the gold answer is the last ``\\boxed{...}`` of the reference solution (brace-balanced parsing) or
MATH-500's ``answer`` field; a completion's answer is its last ``\\boxed{}`` (else "The final answer is X").
Equivalence uses ``math_verify`` (SymPy-based) with its signal timeout on the main thread, and a string
normaliser first and as the fallback when math_verify raises. No box and no "answer is" -> wrong, not guessed.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from t2cli.data import load_records
from t2cli.errors import TaskError
from t2cli.tasks.base import Example, Task, halves, user_messages

log = logging.getLogger(__name__)

MATH_HUB, MATH_FOLDER = "hendrycks/competition_math", "math"
MATH500_HUB, MATH500_FOLDER = "HuggingFaceH4/MATH-500", "math500"
SPLIT_SEED = 0
VERIFY_TIMEOUT_S = 5

PROMPT = "{problem}\nSolve the problem. Put the final answer in \\boxed{{}}."

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces balanced), or ``\\boxed X``; else None."""
    best = None
    for command in _BOX_COMMANDS:
        start = text.rfind(command)
        if start >= 0 and (best is None or start > best[0]):
            best = (start, command)
    if best is None:
        return None
    start, command = best
    i = start + len(command)
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] != "{":
        # "\boxed 5" form: the argument runs to the next '$' or whitespace
        match = re.match(r"[^\s$]+", text[i:])
        content = match.group(0) if match else ""
        return content.strip() or None
    depth = 0
    for j in range(i, len(text)):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text) and text[j + 1] in "{}":
            continue
        if ch == "{" and (j == 0 or text[j - 1] != "\\"):
            depth += 1
        elif ch == "}" and (j == 0 or text[j - 1] != "\\"):
            depth -= 1
            if depth == 0:
                content = text[i + 1 : j].strip()
                return content or None
    return None  # unbalanced: the box never closed


_ANSWER_IS_RE = re.compile(r"final answer is[:\s]*\$?([^$\n]+?)\$?\s*(?:\.\s*)?(?:$|\n)", re.I)


def extract_answer(completion: str) -> str | None:
    """The final answer of a completion: last box, else 'final answer is X'; None when neither is there."""
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed
    matches = _ANSWER_IS_RE.findall(completion)
    if matches:
        answer = matches[-1].strip().rstrip(".").strip()
        return answer or None
    return None


def _strip_text(match: re.Match) -> str:
    return match.group(1)


def normalize_answer(text: str) -> str:
    """A conservative string normal form: layout commands, spaces, $ and trailing dots removed; frac variants merged."""
    s = text.strip().strip("$").strip()
    s = re.sub(r"\\text\{\s*([^{}]*?)\s*\}", _strip_text, s)
    s = re.sub(r"\\mbox\{\s*([^{}]*?)\s*\}", _strip_text, s)
    for old, new in (
        ("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", ""),
        ("dfrac", "frac"), ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", ""),
        ("\\displaystyle", ""),
    ):
        s = s.replace(old, new)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    s = re.sub(r"^[a-zA-Z]\s*=", "", s)  # "x=5" -> "5"
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


_warned_thread = False


def math_equal(predicted: str, gold: str) -> bool:
    """True when the two LaTeX answers are equivalent (string normal form, then math_verify)."""
    global _warned_thread
    if normalize_answer(predicted) == normalize_answer(gold):
        return True
    try:
        from math_verify import parse, verify
    except ImportError:  # pragma: no cover - math-verify is a hard dependency
        log.warning("math_verify is not installed; MATH answers are compared as normalised strings only")
        return False
    on_main = threading.current_thread() is threading.main_thread()
    timeout = VERIFY_TIMEOUT_S if on_main else None  # its timeout uses SIGALRM, which works on the main thread only
    if not on_main and not _warned_thread:
        log.warning("math_verify runs without its timeout outside the main thread")
        _warned_thread = True
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${predicted}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception as exc:  # math_verify raises on odd input; the string check above already ran
        log.debug("math_verify failed on %r vs %r: %s", predicted, gold, exc)
        return False


class _MathBase(Task):
    category = "math"
    max_new_tokens = 1024

    def extract(self, completion: str, example: Example) -> str | None:
        return extract_answer(completion)

    def equivalent(self, extracted: str, gold: str, example: Example) -> bool:
        return math_equal(extracted, gold)

    @staticmethod
    def _example(ex_id: str, problem: str, solution: str, gold: str | None, meta: dict) -> Example:
        problem = (problem or "").strip()
        if not problem:
            raise TaskError(f"MATH record {ex_id} has no problem text; the data file is damaged")
        if gold is None or not gold.strip():
            raise TaskError(f"MATH record {ex_id} has no \\boxed{{}} answer in its solution; the data file is damaged")
        return Example(ex_id, problem, user_messages(PROMPT.format(problem=problem)), gold.strip(), solution, meta)

    def _math_examples(self, data_dir) -> list[Example]:
        records = load_records(MATH_FOLDER, "test", MATH_HUB, None, data_dir)
        return [
            self._example(
                f"math/test/{i}",
                r.get("problem", ""),
                r.get("solution", ""),
                last_boxed(r.get("solution", "") or ""),
                {"level": r.get("level"), "type": r.get("type")},
            )
            for i, r in enumerate(records)
        ]


class MATH(_MathBase):
    name = "math"
    splits = ("test",)
    split_policy = "test only (5000 Hendrycks MATH problems): no MATH train split is available offline."

    def _load(self, split: str, data_dir: str | Path | None) -> list[Example]:
        return self._math_examples(data_dir)


class MATH500(_MathBase):
    name = "math500"
    splits = ("train", "validation", "test")
    split_policy = (
        "test is MATH-500; train/validation are the two halves (seeded permutation, seed 0) of the "
        "4500 MATH test problems not in MATH-500."
    )

    def _load(self, split: str, data_dir: str | Path | None) -> list[Example]:
        m500 = load_records(MATH500_FOLDER, "test", MATH500_HUB, None, data_dir)
        if split == "test":
            return [
                self._example(
                    str(r.get("unique_id") or f"math500/test/{i}"),
                    r.get("problem", ""),
                    r.get("solution", ""),
                    str(r.get("answer") or "") or last_boxed(r.get("solution", "") or ""),
                    {"level": r.get("level"), "subject": r.get("subject")},
                )
                for i, r in enumerate(m500)
            ]
        held_out = {(r.get("problem") or "").strip() for r in m500}
        rest = [ex for ex in self._math_examples(data_dir) if ex.question not in held_out]
        first, second = halves([ex.question for ex in rest], SPLIT_SEED)
        return [rest[i] for i in (first if split == "train" else second)]
