"""evaluate_task / write_summary with a fake backend and a fake task whose scorer is known."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pytest

from t2cli.evaluate import TaskResult, evaluate_task, settings_for, write_summary
from t2cli.generation import Backend, GenerationSettings, HFBackend


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    messages: tuple
    gold: str
    solution: str = ""
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    correct: bool
    extracted: str | None


class FakeTask:
    """Correct when the completion ends with the gold answer."""

    name = "fake"
    category = "math"
    max_new_tokens = 5
    splits = ("test",)

    def __init__(self):
        self.scored = 0

    def score_batch(self, completions, examples, workers=2):
        self.scored += len(completions)
        return [Score(c.endswith(e.gold), c[-1:] or None) for c, e in zip(completions, examples)]


class EchoBackend(Backend):
    """Answers the gold for even-numbered questions and a wrong digit otherwise; counts calls."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts, settings, progress=None):
        self.calls += 1
        out = []
        for p in prompts:
            k = int(p[-1]["content"].split()[-1])
            out.append(f"answer {k % 10}" if k % 2 == 0 else "answer x")
        if progress:
            progress(len(prompts))
        return out

    def set_weights(self, weights):
        pass


def make_examples(n):
    return [
        Example(f"q{k}", f"echo {k}", ({"role": "user", "content": f"echo {k}"},), str(k % 10), meta={"split": "test"})
        for k in range(n)
    ]


def test_evaluate_writes_records_and_counts(tmp_path):
    task, backend, ex = FakeTask(), EchoBackend(), make_examples(7)
    seen = []
    res = evaluate_task(backend, task, ex, GenerationSettings(), out_dir=tmp_path, label="base", progress=seen.append)
    assert (res.task, res.split, res.n, res.correct) == ("fake", "test", 7, 4)
    assert res.accuracy == pytest.approx(4 / 7)
    assert res.stderr == pytest.approx(math.sqrt((4 / 7) * (3 / 7) / 7))
    assert sum(seen) == 7
    lines = (tmp_path / "base" / "fake.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["id"] for r in recs] == [e.id for e in ex]
    assert set(recs[0]) == {"id", "messages", "completion", "extracted", "gold", "correct"}
    assert recs[0]["messages"] == [{"role": "user", "content": "echo 0"}]
    assert [r["correct"] for r in recs] == [k % 2 == 0 for k in range(7)]
    assert not [p for p in (tmp_path / "base").iterdir() if p.name.endswith(".tmp")]

    path = write_summary(tmp_path, [res], {"model": "tiny"})
    summary = json.loads(path.read_text())
    assert summary["meta"] == {"model": "tiny"}
    assert summary["results"][0]["correct"] == 4 and summary["results"][0]["n"] == 7


def test_resume_reuses_matching_file_and_regenerates_otherwise(tmp_path):
    task, backend, ex = FakeTask(), EchoBackend(), make_examples(5)
    s = GenerationSettings(max_new_tokens=5)
    first = evaluate_task(backend, task, ex, s, out_dir=tmp_path)
    again = evaluate_task(backend, task, ex, s, out_dir=tmp_path)
    assert backend.calls == 1 and task.scored == 5 and again == first

    evaluate_task(backend, task, ex, GenerationSettings(max_new_tokens=6), out_dir=tmp_path)  # other settings
    assert backend.calls == 2
    evaluate_task(backend, task, list(reversed(ex)), GenerationSettings(max_new_tokens=6), out_dir=tmp_path)
    assert backend.calls == 3  # same ids, other order
    evaluate_task(backend, task, ex[:3], GenerationSettings(max_new_tokens=6), out_dir=tmp_path)
    assert backend.calls == 4

    # a truncated JSONL (e.g. edited or damaged by hand) is not trusted
    jsonl = tmp_path / "base" / "fake.jsonl"
    jsonl.write_text(jsonl.read_text().splitlines()[0] + "\n")
    evaluate_task(backend, task, ex[:3], GenerationSettings(max_new_tokens=6), out_dir=tmp_path)
    assert backend.calls == 5
    assert len(jsonl.read_text().splitlines()) == 3


def test_labels_get_their_own_folder_and_no_out_dir_writes_nothing(tmp_path):
    task, backend, ex = FakeTask(), EchoBackend(), make_examples(3)
    evaluate_task(backend, task, ex, GenerationSettings(), out_dir=tmp_path, label="expert-math")
    assert (tmp_path / "expert-math" / "fake.jsonl").exists()
    res = evaluate_task(backend, task, ex, GenerationSettings())
    assert res.n == 3 and backend.calls == 2


def test_empty_examples():
    res = evaluate_task(EchoBackend(), FakeTask(), [], GenerationSettings())
    assert res == TaskResult("fake", "test", 0, 0, 0.0, 0.0)


def test_settings_for_uses_task_budget_unless_overridden():
    base = GenerationSettings(max_new_tokens=256, temperature=0.5)
    assert settings_for(FakeTask(), base).max_new_tokens == 5
    assert settings_for(FakeTask(), base, max_new_tokens=9).max_new_tokens == 9
    assert settings_for(FakeTask(), base).temperature == 0.5


def test_evaluate_with_hf_backend(tmp_path, tiny_llama):
    model, tok = tiny_llama
    task, ex = FakeTask(), make_examples(4)
    res = evaluate_task(HFBackend(model, tok), task, ex, settings_for(task, GenerationSettings(batch_size=3)), tmp_path)
    recs = [json.loads(x) for x in (tmp_path / "base" / "fake.jsonl").read_text().splitlines()]
    assert res.n == 4 and res.correct == sum(r["correct"] for r in recs)


class DyingBackend(EchoBackend):
    """Raises on its ``die_at``-th call, like a run interrupted in the middle of a long evaluation."""

    def __init__(self, die_at):
        super().__init__()
        self.die_at = die_at

    def generate(self, prompts, settings, progress=None):
        if self.calls + 1 == self.die_at:
            self.calls += 1
            raise KeyboardInterrupt
        return super().generate(prompts, settings, progress)


def test_interrupted_evaluation_resumes_after_the_last_chunk(tmp_path, monkeypatch):
    from t2cli import evaluate

    monkeypatch.setattr(evaluate, "CHUNK", 3)
    task, ex, s = FakeTask(), make_examples(8), GenerationSettings()
    with pytest.raises(KeyboardInterrupt):
        evaluate_task(DyingBackend(die_at=3), task, ex, s, out_dir=tmp_path, variant_id="w1")
    partial = tmp_path / "base" / "fake.partial.jsonl"
    assert len(partial.read_text().splitlines()) == 1 + 6  # header + two finished chunks
    assert not (tmp_path / "base" / "fake.jsonl").exists()  # nothing half-written where results go
    with open(partial, "a") as fh:
        fh.write('{"id": "q6", "compl')  # torn line
    backend, seen = EchoBackend(), []
    res = evaluate_task(backend, task, ex, s, out_dir=tmp_path, variant_id="w1", progress=seen.append)
    assert backend.calls == 1 and seen == [6, 2]  # only the last chunk is generated
    assert (res.n, res.correct) == (8, 4)
    recs = [json.loads(x) for x in (tmp_path / "base" / "fake.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == [e.id for e in ex] and not partial.exists()


def test_partial_file_of_other_weights_is_not_resumed(tmp_path, monkeypatch):
    from t2cli import evaluate

    monkeypatch.setattr(evaluate, "CHUNK", 3)
    task, ex, s = FakeTask(), make_examples(8), GenerationSettings()
    with pytest.raises(KeyboardInterrupt):
        evaluate_task(DyingBackend(die_at=2), task, ex, s, out_dir=tmp_path, variant_id="w1")
    backend = EchoBackend()
    evaluate_task(backend, task, ex, s, out_dir=tmp_path, variant_id="w2")
    assert backend.calls == 3  # every chunk generated again
