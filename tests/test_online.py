"""`t2 generate`: prompts from arguments or JSONL on stdin, one JSONL record per prompt with the chosen expert;
composed weights are cached per expert."""

from __future__ import annotations

import io
import json

import pytest

from cli_helpers import run_cli
from t2cli.errors import ConfigError
from t2cli.online import read_prompts
from test_adapt_support import tiny_experts


pytestmark = pytest.mark.usefixtures("one_thread")


def test_read_prompts_keeps_extra_fields_and_rejects_bad_lines():
    recs = read_prompts(['{"prompt": "a", "id": 7}', "", '{"messages": [{"role": "user", "content": "b"}]}'])
    assert recs[0] == {"prompt": "a", "id": 7} and "messages" in recs[1]
    with pytest.raises(ConfigError, match="line 1"):
        read_prompts(["not json"])
    with pytest.raises(ConfigError, match="prompt"):
        read_prompts(['{"text": "a"}'])


@pytest.fixture
def setup(tiny_model_dirs, tmp_path):
    paths, clf = tiny_experts(tiny_model_dirs["llama"], tmp_path / "experts", classifier_labels=["math", "reasoning"])
    return tiny_model_dirs["llama"], paths, clf


def test_generate_from_arguments(setup, capsys):
    model, paths, _ = setup
    res = run_cli(capsys, "generate", "What is 2 + 3?", "Which choice is correct?", "-e", paths["gsm8k"],
                  "-e", paths["arc_easy"], "-m", model, "--max-new-tokens", "3", "--json")
    assert res.code == 0, res.err
    recs = [json.loads(x) for x in res.out.splitlines()]
    assert [r["prompt"] for r in recs] == ["What is 2 + 3?", "Which choice is correct?"]
    for r in recs:
        assert {"expert", "label", "first_pass", "answer"} <= set(r)
        assert r["expert"] in ("math", "reasoning", "base")
        assert (r["expert"] == "base") == (r["label"] in (None, "others"))


def test_generate_reads_jsonl_from_stdin_with_cls(setup, capsys, monkeypatch, tmp_path):
    model, paths, clf = setup
    lines = "".join(json.dumps({"prompt": f"What is {i} + {i}?", "id": i}) + "\n" for i in range(3))
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    out = tmp_path / "answers.jsonl"
    res = run_cli(capsys, "generate", "--experts", f"{paths['gsm8k']},{paths['arc_easy']}", "--strategy", "cls",
                  "--classifier", clf, "-m", model, "--max-new-tokens", "2", "--out", out)
    assert res.code == 0, res.err
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in recs] == [0, 1, 2] and "prompts" in res.err


def test_weights_are_composed_once_per_expert(setup, monkeypatch):
    from t2cli import evaluate
    from t2cli.adapt.dispatch import Router
    from t2cli.experts import load_expert
    from t2cli.generation import GenerationSettings, HFBackend
    from t2cli.models import load_model

    model_dir, paths, _ = setup
    loaded = load_model(str(model_dir), device="cpu", dtype="float32")
    calls = []
    real = evaluate.expert_weights
    monkeypatch.setattr(evaluate, "expert_weights", lambda e, *a, **k: calls.append(e.name) or real(e, *a, **k))
    experts = {"math": load_expert(paths["gsm8k"]), "reasoning": load_expert(paths["arc_easy"])}
    router = Router(HFBackend(loaded.model, loaded.tokenizer), loaded.model, loaded.ref.name, experts)
    from t2cli.adapt.dispatch import Choice

    # two expert groups in a row: the second expert is composed (and its fit to the model checked) while the
    # first one's weights are still set, so composing must see the base weights
    forced = [Choice("math", "math", "math"), Choice("reasoning", "reasoning", "reasoning"), Choice("x", None, None)]
    settings = GenerationSettings(max_new_tokens=2)
    for _ in range(3):
        _, answers = router.answer(["a", "b", "c"], settings, choices=forced)
    assert sorted(calls) == ["arc_easy", "gsm8k"]
    assert router.backend.replaced == ()  # base weights restored after every batch
    alone = Router(HFBackend(loaded.model, loaded.tokenizer), loaded.model, loaded.ref.name, experts)
    assert alone.answer(["b"], settings, choices=[forced[1]])[1] == answers[1:2]


def test_generate_without_prompts_says_how_to_pass_them(capsys, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty())
    res = run_cli(capsys, "generate", "-e", "x.safetensors")
    assert res.code == 2 and "stdin" in res.err
