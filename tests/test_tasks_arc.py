"""ARC: choices with their own labels, and an extractor that never guesses."""

from __future__ import annotations

import pytest

from t2cli.tasks import get_task
from t2cli.tasks.arc import extract_choice
from t2cli.tasks.base import Example, user_messages

L4 = ["A", "B", "C", "D"]
D4 = ["1", "2", "3", "4"]
L5 = ["A", "B", "C", "D", "E"]

CASES = [
    ("The answer is (B)", L4, "B"),
    ("B) photosynthesis", L4, "B"),
    ("Answer: 2", D4, "2"),
    ("b", L4, "B"),
    ("The answer is a cat.", L4, None),  # article, not a label
    ("**C**", L4, "C"),
    ("(D) because plants need light", L4, "D"),
    ("I think the answer is C. Because ...", L4, "C"),
    ("the answer is b.", L4, "B"),
    ("", L4, None),
    ("E", L4, None),  # not one of this question's labels
    ("E", L5, "E"),
    ("The answer is 5", D4, None),
    ("\\boxed{A}", L4, "A"),
    ("Answer: 2", L4, None),  # digits are not labels of a lettered question
    ("2", D4, "2"),
    ("It depends on the weather.", L4, None),
    ("A is wrong. B is right.", L4, None),  # ambiguous: no guess
    ("The correct option is D", L4, "D"),
    ("Answer: A. Wait, the answer is C", L4, "C"),
    ("3. It melts", D4, "3"),
]


@pytest.mark.parametrize("completion,labels,expected", CASES)
def test_extract_choice(completion, labels, expected):
    assert extract_choice(completion, labels) == expected


def test_exact_choice_text_counts():
    assert extract_choice("Sunlight.", L4, ["sunlight", "water", "soil", "air"]) == "A"


def test_digit_labels_are_presented_as_is(shared_data_dir):
    task = get_task("arc_easy")
    examples = task.load("test", shared_data_dir)
    digit = next(e for e in examples if e.meta["labels"][0] == "1")
    content = digit.messages[0]["content"]
    assert "1. " in content and "Answer with the number" in content
    assert task.score(f"The answer is {digit.gold}", digit).correct
    letter = examples[0]
    assert "Answer with the letter of the correct choice." in letter.messages[0]["content"]
    assert len({len(e.meta["labels"]) for e in examples}) >= 2  # 3-5 choices occur


def test_score_and_solution(shared_data_dir):
    task = get_task("arc_challenge")
    examples = task.load("validation", shared_data_dir, limit=20)
    assert all(task.score(e.solution, e).correct for e in examples)
    ex = Example("x", "q", user_messages("q"), "B", "s", {"labels": L4, "texts": ["w", "x", "y", "z"]})
    assert task.score("I am not sure", ex).extracted is None
    assert task.score("(a)", ex).correct is False
