"""Task registry, split validation, determinism and the shape of every task's examples."""

from __future__ import annotations

import pytest

from t2cli.errors import TaskError
from t2cli.tasks import Example, Score, get_task, task_names
from t2cli.tasks.base import seeded_order

EXPECTED = {
    ("gsm8k", "train"): 3736, ("gsm8k", "validation"): 3737, ("gsm8k", "test"): 1319,
    ("math", "test"): 5000, ("math500", "test"): 500, ("math500", "train"): 2250, ("math500", "validation"): 2250,
    ("mbpp", "test"): 500, ("mbpp", "prompt"): 10, ("mbpp_sanitized", "test"): 257,
    ("humaneval", "test"): 164, ("arc_easy", "test"): 2376, ("arc_challenge", "validation"): 299,
}


def test_registry_names_and_unknown():
    names = task_names()
    assert {"gsm8k", "math", "math500", "mbpp", "mbpp_sanitized", "humaneval", "arc_easy", "arc_challenge"} <= set(names)
    with pytest.raises(TaskError, match="gsm8k"):
        get_task("gsm9k")


@pytest.mark.parametrize("name", ["gsm8k", "math", "math500", "mbpp", "mbpp_sanitized", "humaneval", "arc_easy", "arc_challenge"])
def test_task_attributes(name):
    task = get_task(name)
    assert task.name == name
    assert task.category in {"math", "code", "reasoning"}
    assert task.max_new_tokens > 0 and task.splits and task.split_policy
    with pytest.raises(TaskError, match=task.splits[0]):
        task.load("nope")


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_split_sizes(key, shared_data_dir):
    name, split = key
    examples = get_task(name).load(split, shared_data_dir)
    assert len(examples) == EXPECTED[key]
    ex = examples[0]
    assert isinstance(ex, Example) and ex.gold.strip() and ex.question and ex.solution
    assert ex.messages[-1]["role"] == "user" and ex.question[:20] in ex.messages[-1]["content"]
    assert all(m["role"] != "assistant" for m in ex.messages)


def test_load_is_deterministic_and_limit(shared_data_dir):
    task = get_task("gsm8k")
    a = [e.id for e in task.load("train", shared_data_dir)]
    b = [e.id for e in task.load("train", shared_data_dir)]
    assert a == b
    assert [e.id for e in task.load("train", shared_data_dir, limit=5)] == a[:5]


def test_gsm8k_halves_are_disjoint_and_cover_train(shared_data_dir):
    task = get_task("gsm8k")
    train = {e.id for e in task.load("train", shared_data_dir)}
    val = {e.id for e in task.load("validation", shared_data_dir)}
    assert not train & val and len(train | val) == 7473


def test_math500_train_never_contains_test(shared_data_dir):
    task = get_task("math500")
    test_q = {e.question for e in task.load("test", shared_data_dir)}
    train = task.load("train", shared_data_dir)
    val = task.load("validation", shared_data_dir)
    assert not test_q & {e.question for e in train + val}
    assert not {e.id for e in train} & {e.id for e in val}


def test_seeded_order_is_a_fixed_permutation():
    keys = [f"k{i}" for i in range(50)]
    order = seeded_order(keys, 0)
    assert sorted(order) == list(range(50)) and order == seeded_order(keys, 0) and order != seeded_order(keys, 1)


def test_empty_gold_is_a_task_error(shared_data_dir):
    task = get_task("gsm8k")
    ex = task.load("test", shared_data_dir, limit=1)[0]
    bad = Example(ex.id, ex.question, ex.messages, "", ex.solution, ex.meta)
    with pytest.raises(TaskError, match="no gold"):
        task.score("The answer is 18", bad)


def test_score_type():
    assert Score(False, None).extracted is None
