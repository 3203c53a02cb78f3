"""MBPP (Mostly Basic Python Problems): write a function from a one-line description; scored by its asserts.

Split policy: the upstream splits as they are (task ids 1-10 ``prompt``, 11-510 ``test``, 511-600
``validation``, 601-974 ``train``; the sanitized config keeps the hand-checked subset of each). ``test`` is for
evaluation only; ``train``/``validation`` for training and selection; ``prompt`` is the few-shot pool.

Departures from the paper: the paper reports MBPP-pro / MBPP+ (EvalPlus) numbers; those are not available
offline, so we score the original MBPP asserts (``test_list``; ``challenge_test_list`` is not used). The prompt
includes the first assert so the function name is known. Programs run in ``t2cli.tasks.sandbox``.
"""

from __future__ import annotations

import builtins
import re
from pathlib import Path

from t2cli.data import load_records
from t2cli.errors import TaskError
from t2cli.tasks.base import CodeTask, Example, user_messages

HUB_ID = "google-research-datasets/mbpp"

PROMPT = "{text}\nYour code should pass this test:\n{test}\nWrite the Python function in a ```python code block."

_CALL_RE = re.compile(r"([A-Za-z_]\w*)\s*\(")
_SKIP = set(dir(builtins)) | {"math", "assert", "not", "set", "sorted", "isclose", "abs", "round"}


def function_name(test: str) -> str | None:
    """The function an assert calls (the first called name that is not a builtin), e.g. 'remove_Occ'."""
    for name in _CALL_RE.findall(test.replace("assert", " ", 1)):
        if name not in _SKIP:
            return name
    return None


def _lines(value) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [str(v) for v in (value or []) if str(v).strip()]


class MBPP(CodeTask):
    max_new_tokens = 512
    splits = ("train", "validation", "test", "prompt")
    split_policy = "the upstream splits unchanged (prompt 1-10, test 11-510, validation 511-600, train 601-974)."

    def __init__(self, name: str = "mbpp", config: str = "full"):
        self.name = name
        self.config = config

    def _load(self, split: str, data_dir: str | Path | None) -> list[Example]:
        records = load_records(self.name, split, HUB_ID, self.config, data_dir)
        return [self._example(r) for r in records]

    def _example(self, record: dict) -> Example:
        ex_id = f"{self.name}/{record.get('task_id')}"
        text = str(record.get("text") or record.get("prompt") or "").strip()
        code = str(record.get("code") or "").replace("\r\n", "\n").strip()
        tests = _lines(record.get("test_list"))
        if not text or not tests:
            raise TaskError(f"{ex_id} has no description or no tests; the data file is damaged")
        if not code:
            raise TaskError(f"{ex_id} has no reference code (gold); the data file is damaged")
        meta = {
            "tests": tests,
            "setup": str(record.get("test_setup_code") or "").replace("\r\n", "\n"),
            "imports": _lines(record.get("test_imports")),
            "entry_point": function_name(tests[0]),
        }
        messages = user_messages(PROMPT.format(text=text, test=tests[0]))
        return Example(ex_id, text, messages, code, f"```python\n{code}\n```", meta)

    def build_program(self, code: str, example: Example) -> str:
        meta = example.meta
        parts = [*meta.get("imports", []), code, meta.get("setup", ""), *meta["tests"]]
        return "\n".join(p for p in parts if p) + "\n"


def mbpp() -> MBPP:
    return MBPP("mbpp", "full")


def mbpp_sanitized() -> MBPP:
    return MBPP("mbpp_sanitized", "sanitized")
