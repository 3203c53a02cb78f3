"""MATH / MATH-500: brace-balanced boxed parsing, extraction, and equivalence through math_verify."""

from __future__ import annotations

import pytest

from t2cli.tasks import get_task
from t2cli.tasks.base import Example, user_messages
from t2cli.tasks.math_task import extract_answer, last_boxed, math_equal, normalize_answer

EXTRACT = [
    ("so \\boxed{5}", "5"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("$\\boxed{\\{1,2\\}}$", "\\{1,2\\}"),
    ("\\boxed{x^{2^{3}}}", "x^{2^{3}}"),
    ("\\boxed 7$", "7"),
    ("\\fbox{12}", "12"),
    ("\\boxed{unclosed", None),
    ("\\boxed{}", None),
    ("The final answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("The final answer is 12", "12"),
    ("I think it is 12", None),
    ("", None),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
    ("\\boxed{ 10 } and text after", "10"),
]


@pytest.mark.parametrize("completion,expected", EXTRACT)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


EQUAL = [
    ("\\frac12", "0.5", True),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("3\\sqrt{2}", "\\sqrt{18}", True),
    ("x=5", "5", True),
    ("10\\%", "10", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("90^\\circ", "90", True),
    ("\\text{(B)}", "B", True),
    ("5.0", "5", True),
    ("2", "3", False),
    ("(1,2)", "(2,1)", False),
    ("\\frac{1}{3}", "0.33", False),
    ("\\pi", "3.14", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("\\infty", "\\infty", True),
    ("garbage }{", "5", False),
]


@pytest.mark.parametrize("predicted,gold,expected", EQUAL)
def test_math_equal(predicted, gold, expected):
    assert math_equal(predicted, gold) is expected


def test_normalize_answer():
    assert normalize_answer("$\\left( 1, 2 \\right).$") == "(1,2)"


def test_last_boxed_of_solution():
    assert last_boxed("We get \\boxed{\\frac{a}{b}} and \\boxed{\\sqrt{\\frac{1}{2}}}") == "\\sqrt{\\frac{1}{2}}"


def test_unparsable_is_wrong_with_none():
    ex = Example("x", "q", user_messages("q"), "5", "s", {})
    score = get_task("math").score("I cannot solve this.", ex)
    assert score.correct is False and score.extracted is None


def test_gold_solutions_score_correct(shared_data_dir):
    for name in ("math", "math500"):
        task = get_task(name)
        examples = task.load("test", shared_data_dir, limit=15)
        assert all(task.score(e.solution, e).correct for e in examples), name
    ex = get_task("math500").load("test", shared_data_dir, limit=1)[0]
    assert "\\boxed{}" in ex.messages[0]["content"]
