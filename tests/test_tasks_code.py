"""MBPP / HumanEval: code extraction, program building, and scoring through the sandbox."""

from __future__ import annotations

import pytest

from t2cli.tasks import get_task
from t2cli.tasks.base import extract_code
from t2cli.tasks.mbpp import function_name

EXTRACT = [
    ("```python\ndef f(x):\n    return x\n```", None, "def f(x):\n    return x\n"),
    ("Here you go:\n```python\ndef f(x):\n    return x\n```\nDone.", None, "def f(x):\n    return x\n"),
    ("```\ndef f(x):\n    return x\n```", None, "def f(x):\n    return x\n"),
    ("```py\ndef f(): pass\n```", None, "def f(): pass\n"),
    ("```python\nprint(1)\n```\n```python\ndef g(): pass\n```", None, "def g(): pass\n"),
    ("```python\ndef h(): pass\n```\n```python\ndef g(): pass\n```", "g", "def g(): pass\n"),
    ("```python\ndef f(x):\n    return x\n", None, "def f(x):\n    return x\n"),  # unclosed fence
    ("def f(x):\n    return x", None, "def f(x):\n    return x\n"),  # plain code
    ("Sure! Here is the code.\ndef f(x):\n    return x", None, "def f(x):\n    return x\n"),
    ("import math\ndef f(): return math.pi", None, "import math\ndef f(): return math.pi\n"),
    ("", None, None),
    ("   \n  ", None, None),
    ("```javascript\nfunction f() {}\n```", None, None),
    ("```python\n\n```", None, None),
    ("```Python\nclass A: pass\n```", None, "class A: pass\n"),
    ("    return x + 1", None, "    return x + 1\n"),  # a bare body is kept as is
]


@pytest.mark.parametrize("completion,name,expected", EXTRACT)
def test_extract_code(completion, name, expected):
    assert extract_code(completion, name) == expected


@pytest.mark.parametrize(
    "test,name",
    [("assert remove_Occ(\"hello\",\"l\") == \"heo\"", "remove_Occ"),
     ("assert math.isclose(area(2), 12.56, rel_tol=0.01)", "area"),
     ("assert set(similar_elements((3, 4), (5, 4))) == set((4,))", "similar_elements"),
     ("assert not is_prime(4)", "is_prime")],
)
def test_function_name(test, name):
    assert function_name(test) == name


def test_mbpp_prompt_has_first_assert(shared_data_dir):
    ex = get_task("mbpp").load("test", shared_data_dir, limit=1)[0]
    content = ex.messages[0]["content"]
    assert ex.meta["tests"][0] in content and "```python" in content
    assert ex.meta["entry_point"] == "remove_Occ"


@pytest.mark.parametrize("name", ["mbpp", "mbpp_sanitized", "humaneval"])
def test_canonical_solutions_pass_and_wrong_ones_fail(name, shared_data_dir):
    task = get_task(name)
    examples = task.load("test", shared_data_dir, limit=10)
    wrong = "```python\ndef nothing():\n    return None\n```"
    scores = task.score_batch([e.solution for e in examples] + [wrong] * 2, examples + examples[:2], workers=2)
    assert [s.correct for s in scores[:10]] == [True] * 10, [e.id for e, s in zip(examples, scores) if not s.correct]
    assert [s.correct for s in scores[10:]] == [False, False]


def test_humaneval_body_and_full_function(shared_data_dir):
    task = get_task("humaneval")
    ex = task.load("test", shared_data_dir, limit=1)[0]
    body = ex.gold
    full = "```python\n" + ex.meta["prompt"] + body + "```"
    dedented = "\n".join(line[4:] if line.startswith("    ") else line for line in body.splitlines())
    scores = task.score_batch([body, full, dedented, "no code here at all", "```python\ndef has_close_elements(n, t):\n    return True\n```"],
                              [ex] * 5)
    assert [s.correct for s in scores] == [True, True, True, False, False]


def test_mbpp_hostile_answer_is_just_wrong(shared_data_dir):
    task = get_task("mbpp")
    ex = task.load("test", shared_data_dir, limit=1)[0]
    score = task.score("```python\nimport os\nos._exit(0)\n```", ex)
    assert score.correct is False and score.extracted is not None
