"""GSM8K: gold parsing, number normalisation and the extractor, table-driven."""

from __future__ import annotations

import pytest

from t2cli.errors import TaskError
from t2cli.tasks import get_task
from t2cli.tasks.base import Example, user_messages
from t2cli.tasks.gsm8k import extract_number, gold_from_answer, normalize_number

CASES = [
    ("The answer is 18", "18"),
    ("The answer is 18.", "18"),
    ("The answer is $18.00.", "18"),
    ("#### 1,234", "1234"),
    ("so she has 5 + 3 = 8 apples.\n#### 8", "8"),
    ("The answer is -5", "-5"),
    ("The answer is \u22127", "-7"),
    ("Answer: 3.50 dollars", "3.5"),
    ("The answer is \\boxed{42}", "42"),
    ("**The answer is 42**", "42"),
    ("The answer is: $1,000,000.", "1000000"),
    ("The answer is 7. Then I double check: 7 * 2 = 14", "7"),
    ("She buys 3 apples and 4 pears, 7 fruits in total.", "7"),
    ("It went up by 50%.", "50"),
    ("Total: 5.0", "5"),
    ("The answer is 0.25", "0.25"),
    ("I do not know.", None),
    ("", None),
    ("10-3", "3"),  # a hyphen between numbers is not a minus sign
    ("The answer is +12", "12"),
    ("\\boxed{1,500}", "1500"),
]


@pytest.mark.parametrize("completion,expected", CASES)
def test_extract_number(completion, expected):
    assert extract_number(completion) == expected


@pytest.mark.parametrize("raw,expected", [("5.0", "5"), ("1,234", "1234"), ("$3.10", "3.1"), ("-0", "0"), ("7.", "7"), ("abc", None), ("nan", None)])
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def test_gold_from_answer():
    assert gold_from_answer("He has <<2*3=6>>6.\n#### 1,080") == "1080"
    with pytest.raises(TaskError):
        gold_from_answer("no final answer")


def _example(gold: str) -> Example:
    return Example("x", "q", user_messages("q"), gold, "s", {})


@pytest.mark.parametrize(
    "completion,gold,correct",
    [("The answer is 5.0", "5", True), ("The answer is 1,080", "1080", True), ("The answer is 6", "5", False),
     ("no idea", "5", False)],
)
def test_score(completion, gold, correct):
    score = get_task("gsm8k").score(completion, _example(gold))
    assert score.correct is correct
    if completion == "no idea":
        assert score.extracted is None


def test_gold_solution_scores_correct(shared_data_dir):
    task = get_task("gsm8k")
    examples = task.load("test", shared_data_dir, limit=50)
    assert all(task.score(e.solution, e).correct for e in examples)
    ex = examples[0]
    assert ex.messages[0]["content"].rstrip().endswith('"The answer is N" where N is a number.')
    assert "<<" not in ex.solution
