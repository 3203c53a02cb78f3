"""HumanEval: complete a Python function from its signature and docstring; scored by the hidden ``check``.

Split policy: the only split is ``test`` (164 problems), for evaluation only — never train or select on it.
Departure from the paper: it reports HumanEval as is, and so do we (no HumanEval+ offline).

The model may answer with the whole function (preferred: we ask for it in a ```python block) or only its body;
the program is the original prompt (so helper functions and imports exist), then the model's code, then the
test and ``check(entry_point)``. Programs run in ``t2cli.tasks.sandbox``.
"""

from __future__ import annotations

import re
from pathlib import Path

from t2cli.data import load_records
from t2cli.errors import TaskError
from t2cli.tasks.base import CodeTask, Example, user_messages

HUB_ID, FOLDER = "openai/openai_humaneval", "humaneval"

PROMPT = "Complete this Python function. Write the whole function in a ```python code block.\n```python\n{prompt}```"


class HumanEval(CodeTask):
    name = "humaneval"
    max_new_tokens = 512
    splits = ("test",)
    split_policy = "test only (164 problems); HumanEval has no train or validation split."

    def _load(self, split: str, data_dir: str | Path | None) -> list[Example]:
        return [self._example(r) for r in load_records(FOLDER, "test", HUB_ID, None, data_dir)]

    def _example(self, record: dict) -> Example:
        ex_id = str(record.get("task_id") or "")
        prompt = str(record.get("prompt") or "")
        body = str(record.get("canonical_solution") or "")
        entry = str(record.get("entry_point") or "").strip()
        test = str(record.get("test") or "")
        if not ex_id or not prompt.strip() or not entry or "def check" not in test:
            raise TaskError(f"HumanEval record {ex_id or '?'} lacks a prompt, entry point or test; the data file is damaged")
        if not body.strip():
            raise TaskError(f"HumanEval record {ex_id} has no canonical solution (gold); the data file is damaged")
        question = prompt.strip()
        messages = user_messages(PROMPT.format(prompt=prompt))
        solution = f"```python\n{prompt}{body}```"
        return Example(ex_id, question, messages, body, solution, {"prompt": prompt, "test": test, "entry_point": entry})

    def build_program(self, code: str, example: Example) -> str:
        meta = example.meta
        prompt = meta["prompt"]
        entry = meta["entry_point"]
        if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.M):
            solution = prompt.rstrip() + "\n\n\n" + code  # the model's full function replaces the stub
        else:
            lines = code.splitlines()
            first = next((line for line in lines if line.strip()), "")
            if first and not first[0].isspace():  # a body written at column 0: indent it into the function
                code = "\n".join(("    " + line) if line.strip() else line for line in lines) + "\n"
            solution = prompt + code
        return f"{solution}\n\n{meta['test']}\n\ncheck({entry})\n"
