"""The classification data set: built only from the experts' train splits (validation/held-out from their validation
splits, never test), labelled with the expert's category, question first, scored strictly."""

from __future__ import annotations

import pytest

from t2cli.classify import ClassificationTask
from t2cli.errors import ConfigError, TaskError
from t2cli.tasks.base import Example, Task


class SpyTask(Task):
    """Records every split it is asked for; the examples carry their split in the id."""

    max_new_tokens = 4
    splits = ("train", "validation", "test")
    split_policy = "fake"

    def __init__(self, name, category, n=10):
        self.name, self.category, self.n, self.loaded = name, category, n, []

    def _load(self, split, data_dir):
        self.loaded.append(split)
        return [Example(f"{self.name}-{split}-{i}", f"q{i}", ({"role": "user", "content": f"{self.name} {split} q{i}?"},),
                        "x", "x") for i in range(self.n)]

    def extract(self, completion, example):
        return completion


def test_built_only_from_train_and_validation_splits():
    a, b = SpyTask("gsm8k", "math"), SpyTask("arc_easy", "reasoning", n=12)
    task = ClassificationTask({"math": a, "reasoning": b}, per_label_limit=6)
    train = task.load("train")
    val, held = task.load("validation"), task.load("heldout")
    assert "test" not in a.loaded + b.loaded
    assert all("-train-" in e.id for e in train) and all("-validation-" in e.id for e in val + held)
    assert {e.gold for e in train} == {"math", "reasoning"} and len(train) == 12  # 6 per label
    assert not {e.id for e in val} & {e.id for e in held}  # selection and report halves are disjoint
    assert len(val) + len(held) == 22
    assert [e.gold for e in train] != sorted(e.gold for e in train)  # labels interleaved, not blocked


def test_prompt_is_question_first_and_scoring_strict():
    task = ClassificationTask({"math": SpyTask("gsm8k", "math"), "reasoning": SpyTask("arc_easy", "reasoning")})
    ex = task.load("train")[0]
    content = ex.messages[-1]["content"]
    assert content.split("\n")[0].endswith("?") and "train q" in content.split("\n")[0]
    assert content.endswith("Is the question above about math or reasoning? Answer with one word.")
    assert task.score(ex.gold.capitalize() + ".", ex).correct
    other = "reasoning" if ex.gold == "math" else "math"
    assert not task.score(other, ex).correct
    garbage = task.score("I am not sure", ex)
    assert not garbage.correct and garbage.extracted is None  # never a guess


def test_tasks_without_train_split_and_too_few_labels_are_refused():
    with pytest.raises(TaskError, match="train"):
        ClassificationTask({"code": "humaneval", "math": "gsm8k"})
    with pytest.raises(ConfigError, match="2 labels"):
        ClassificationTask({"math": "gsm8k"})
    with pytest.raises(TaskError):
        ClassificationTask({"math": "gsm8k", "reasoning": "arc_easy"}).load("test")


def test_real_data_never_contains_test_questions(shared_data_dir):
    from t2cli.tasks import get_task

    task = ClassificationTask({"math": "gsm8k", "reasoning": "arc_easy"}, per_label_limit=20, val_per_label_limit=10)
    train = task.load("train", shared_data_dir)
    held = task.load("heldout", shared_data_dir)
    assert len(train) == 40 and len(held) == 20
    for label, name in (("math", "gsm8k"), ("reasoning", "arc_easy")):
        t = get_task(name)
        test_q = {e.messages[-1]["content"] for e in t.load("test", shared_data_dir)}
        train_ids = {e.id for e in t.load("train", shared_data_dir)}
        mine = [e for e in train if e.gold == label]
        assert all(e.id.split("/", 1)[1] in train_ids for e in mine)
        assert not any(e.messages[-1]["content"].split("\n\nIs the question above")[0] in test_q for e in train + held)
