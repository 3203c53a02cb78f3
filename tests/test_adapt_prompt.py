"""First pass: the routing prompt, strict label parsing, and routes ("others" and garbage → base weights, never the
last loaded expert)."""

from __future__ import annotations

import pytest

from t2cli.adapt.dispatch import OTHERS, Router, join_labels, label_experts, parse_label, routing_messages, routing_text
from t2cli.errors import ConfigError, ExpertError

LABELS = ["math", "code", "reasoning", OTHERS]


@pytest.mark.parametrize("answer,expected", [
    ("math", "math"), ("Math.", "math"), ("**code**", "code"), ("'reasoning'", "reasoning"), ("  Reasoning\n", "reasoning"),
    ("Answer: math", "math"), ("The answer is code", "code"), ("The question is about math.", "math"), ("math - it asks for a sum", "math"),
    ("others", OTHERS), ("Other.", OTHERS), ("coding", "code"), ("Maths", "math"),
])
def test_parse_accepts_the_constrained_format(answer, expected):
    assert parse_label(answer, LABELS) == expected


@pytest.mark.parametrize("answer", ["", None, "The question is about logic and reasoning.", "mathematical",
                                    "A question about math, reasoning, code", "I think code", "42",
                                    "science", "```", "A. 12"])
def test_parse_rejects_anything_else(answer):
    assert parse_label(answer, LABELS) is None


def test_other_is_not_accepted_without_an_others_label():
    assert parse_label("other", ["math", "code"]) is None


def test_routing_prompt_puts_the_question_first():
    text = routing_text("What is 2 + 2?", ["math", "code", OTHERS])
    assert text.startswith("What is 2 + 2?")
    assert text.endswith("Is the question above about math, code or others? Answer with one word.")
    msgs = routing_messages(({"role": "system", "content": "sys"}, {"role": "user", "content": "Q?"}), ["a", "b"])
    assert len(msgs) == 1 and msgs[0]["role"] == "user" and msgs[0]["content"].startswith("Q?")
    assert join_labels(["a"]) == "a" and join_labels(["a", "b"]) == "a or b"


class _Expert:
    def __init__(self, task, kind="expert", labels=None):
        self.meta = {"task": task, "kind": kind, "labels": labels}
        self.path = f"{task}.safetensors"
        self.name = task


def test_labels_are_categories_or_task_names():
    assert list(label_experts([_Expert("gsm8k"), _Expert("arc_easy"), _Expert("mbpp")])) == ["math", "reasoning", "code"]
    assert list(label_experts([_Expert("arc_easy"), _Expert("arc_challenge")])) == ["arc_easy", "arc_challenge"]
    with pytest.raises(ConfigError, match="share the label"):
        label_experts([_Expert("arc_easy"), _Expert("arc_challenge")], "category")
    with pytest.raises(ConfigError):
        label_experts([])


class ScriptedBackend:
    """Pass 1 returns scripted answers; pass 2 returns which weights were active."""

    def __init__(self, first):
        self.first, self.active, self.calls = list(first), None, []

    def set_weights(self, w):
        self.active = None if w is None else w["tag"]
        self.calls.append(self.active)

    def generate(self, prompts, settings, progress=None):
        if settings.max_new_tokens == 8:  # first pass
            return [self.first.pop(0) for _ in prompts]
        return [f"answered by {self.active}" for _ in prompts]


def _router(first, strategy="prompt", classifier=None):
    experts = {"math": _Expert("gsm8k"), "reasoning": _Expert("arc_easy")}
    r = Router(ScriptedBackend(first), None, "tiny", experts, strategy, classifier)
    r._weights.update({"math": {"tag": "math"}, "reasoning": {"tag": "reasoning"}, "__classifier__": {"tag": "clf"}})
    return r


def test_others_and_garbage_use_the_base_weights():
    from t2cli.generation import GenerationSettings

    r = _router(["Math.", "others", "blah blah", "reasoning", ""])
    prompts = ["q1", "q2", "q3", "q4", "q5"]
    choices, answers = r.answer(prompts, GenerationSettings(max_new_tokens=16))
    assert [c.route for c in choices] == ["math", None, None, "reasoning", None]
    assert [c.label for c in choices] == ["math", OTHERS, None, "reasoning", None]
    assert answers == ["answered by math", "answered by None", "answered by None", "answered by reasoning",
                       "answered by None"]
    assert r.backend.calls[0] is None  # pass 1 of the prompt strategy runs on the base weights
    assert r.backend.active is None  # restored afterwards


def test_cls_strategy_runs_pass_one_with_the_classifier():
    from t2cli.generation import GenerationSettings

    clf = _Expert("classify", kind="classifier", labels=["math", "reasoning"])
    r = _router(["reasoning", "others"], "cls", clf)
    assert r.labels == ["math", "reasoning"]
    choices, answers = r.answer(["q1", "q2"], GenerationSettings(max_new_tokens=16))
    assert r.backend.calls[0] == "clf"
    assert [c.route for c in choices] == ["reasoning", None]  # "others" is not a classifier label: unparsable → base
    assert answers == ["answered by reasoning", "answered by None"]


def test_cls_needs_a_classifier():
    with pytest.raises(ConfigError, match="--classifier"):
        _router([], "cls", None)
    with pytest.raises(ExpertError, match="classify-train"):
        _router([], "cls", _Expert("gsm8k"))


def test_auto_labels_follow_the_classifier():
    from t2cli.adapt.dispatch import label_experts_for

    experts = [_Expert("gsm8k"), _Expert("arc_easy")]
    by_task = _Expert("classify", kind="classifier", labels=["gsm8k", "arc_easy"])
    assert list(label_experts_for(experts, "auto", by_task)) == ["gsm8k", "arc_easy"]
    by_cat = _Expert("classify", kind="classifier", labels=["math", "reasoning"])
    assert list(label_experts_for(experts, "auto", by_cat)) == ["math", "reasoning"]
