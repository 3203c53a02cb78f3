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


TEXTS = ["sunlight", "water", "heat", "heat energy"]
TEXT_CASES = [
    ("sunlight", "A"),
    ("- Water.", "B"),
    ('"sunlight"', "A"),
    ("The correct answer is: water", "B"),
    ("The correct answer is:\nwater", "B"),
    ("Plants need sunlight to grow.", "A"),  # the only choice the line contains
    ("heat energy", "D"),  # exact text of the longer choice
    ("It gives off heat energy.", "D"),  # "heat" is part of the longer contained choice
    ("sunlight and water", None),  # two choices: no guess
    ("- sunlight\n- water\n- heat", None),  # the list copied back
    ("sunlight\nSunlight is needed by plants.", "A"),  # an explanation of the same choice
    ("I am not sure.", None),
    ("", None),
    ("1. heat", "C"),
]


@pytest.mark.parametrize("completion,expected", TEXT_CASES)
def test_extract_text_choice(completion, expected):
    from t2cli.tasks.arc import extract_text_choice

    assert extract_text_choice(completion, L4, TEXTS) == expected


@pytest.mark.parametrize("completion,expected", [("20 N", "B"), ("The answer is 30 N.", "C"), ("- 10 N", "A"),
                                                 ("2. 40 N", "D"), ("10 N or 20 N", None)])
def test_extract_text_choice_numbers(completion, expected):
    from t2cli.tasks.arc import extract_text_choice

    assert extract_text_choice(completion, L4, ["10 N", "20 N", "30 N", "40 N"]) == expected


def test_text_style_same_questions_other_prompt(shared_data_dir):
    letters, text = get_task("arc_easy"), get_task("arc_easy_text")
    a, b = letters.load("test", shared_data_dir, limit=30), text.load("test", shared_data_dir, limit=30)
    assert [e.id for e in a] == [e.id for e in b] and [e.gold for e in a] == [e.gold for e in b]
    content = b[0].messages[0]["content"]
    assert "Choices:\n- " in content and "Answer with the correct choice." in content
    assert "A. " not in content
    assert all(text.score(e.solution, e).correct for e in b)  # the gold text is the solution
    digit = next(e for e in text.load("test", shared_data_dir) if e.meta["labels"][0] == "1")
    assert text.score(digit.solution, digit).extracted == digit.gold
    assert get_task("arc-challenge-text").name == "arc_challenge_text" and text.max_new_tokens == 32
