"""`t2 adapt` (every strategy) and `t2 classify-train` on a tiny saved model with tiny random experts and the real
local data, with --json and --limit."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli
from test_adapt_support import tiny_experts


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup(tiny_model_dirs, tmp_path):
    paths, clf = tiny_experts(tiny_model_dirs["llama"], tmp_path / "experts", classifier_labels=["math", "reasoning"])
    return tiny_model_dirs["llama"], paths, clf


def _labels(summary):
    return [r["label"] for r in summary["results"]]


def test_adapt_prompt_routes_per_example(setup, shared_data_dir, tmp_path, capsys):
    model, paths, _ = setup
    out = tmp_path / "out"
    res = run_cli(capsys, "adapt", "--task", "arc_easy", "--strategy", "prompt", "--experts", paths["gsm8k"],
                  paths["arc_easy"], "-m", model, "--limit", "3", "--max-new-tokens", "3", "--out", out,
                  "--data-dir", shared_data_dir, "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert _labels(summary) == ["adapted-prompt", "base", "expert-math", "expert-reasoning"]
    assert all(r["n"] == 3 for r in summary["results"])
    meta = summary["meta"]
    assert len(meta["per_example_routes"]) == 3 and sum(meta["routes"].values()) == 3
    assert set(meta["routes"]) <= {"math", "reasoning", "base"}
    records = [json.loads(x) for x in (out / "adapted-prompt" / "arc_easy.jsonl").read_text().splitlines()]
    assert len(records) == 3 and {"first_pass", "label", "route", "completion", "correct"} <= set(records[0])
    for r in records:  # a random tiny model never answers a label: every route must be the base weights
        assert (r["route"] == "base") == (r["label"] in (None, "others"))
    assert (out / "base" / "arc_easy.jsonl").is_file() and (out / "adapt-prompt-arc_easy.json").is_file()


def test_adapt_cls_uses_the_classifier(setup, shared_data_dir, tmp_path, capsys):
    model, paths, clf = setup
    res = run_cli(capsys, "adapt", "-t", "gsm8k", "--strategy", "cls", "--classifier", clf, "-e", paths["gsm8k"],
                  "-e", paths["arc_easy"], "-m", model, "--limit", "2", "--max-new-tokens", "2", "--no-compare",
                  "--out", tmp_path / "o", "--data-dir", shared_data_dir, "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert _labels(summary) == ["adapted-cls"] and summary["meta"]["classifier"] == str(clf)


def test_adapt_cls_refuses_a_plain_expert_as_classifier(setup, shared_data_dir, tmp_path, capsys):
    model, paths, _ = setup
    res = run_cli(capsys, "adapt", "-t", "gsm8k", "--strategy", "cls", "--classifier", paths["gsm8k"],
                  "-e", paths["gsm8k"], "-e", paths["arc_easy"], "-m", model, "--limit", "1", "--out", tmp_path,
                  "--data-dir", shared_data_dir)
    assert res.code != 0 and "classify-train" in res.err and res.err.count("\n") == 1


def test_adapt_fewshot_removes_shots_and_saves_z(setup, shared_data_dir, tmp_path, capsys):
    from t2cli.experts import load_expert

    model, paths, _ = setup
    out = tmp_path / "fs"
    res = run_cli(capsys, "adapt", "-t", "arc_easy", "--strategy", "fewshot", "--shots", "3", "--population", "2",
                  "--iterations", "2", "--alpha-mode", "per-layer", "--experts", paths["gsm8k"], paths["arc_easy"],
                  "-m", model, "--limit", "4", "--max-new-tokens", "2", "--out", out, "--data-dir", shared_data_dir,
                  "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    meta = summary["meta"]
    assert _labels(summary) == ["adapted-fewshot", "base", "expert-math", "expert-reasoning"]
    assert len(meta["shots"]) == 3 and set(meta["alphas"]) == {"0", "1"}
    evaluated = [json.loads(x)["id"] for x in (out / "adapted-fewshot" / "arc_easy.jsonl").read_text().splitlines()]
    assert len(evaluated) == 4 and not set(evaluated) & set(meta["shots"])
    traj = [json.loads(x) for x in (out / "cem-arc_easy.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in traj] == [1, 2] and len(traj[0]["fitness"]) == 2
    z = load_expert(meta["expert_file"])
    assert z.meta["training"]["alphas"] == meta["alphas"] and z.meta["training"]["shots"] == meta["shots"]


def test_adapt_bad_options_are_listed_together(tmp_path, capsys):
    res = run_cli(capsys, "adapt", "-t", "arc_easy", "--strategy", "cls", "--limit", "0", "--out", tmp_path)
    assert res.code == 2 and "--classifier" in res.err and "--limit" in res.err and "--experts" in res.err


def test_classify_train_reports_before_and_after(setup, shared_data_dir, tmp_path, capsys):
    from t2cli.experts import load_expert

    model, paths, _ = setup
    res = run_cli(capsys, "classify-train", "--experts", paths["gsm8k"], paths["arc_easy"], "-m", model,
                  "--out", tmp_path / "clf", "--steps", "1", "--batch-size", "2", "--samples-per-prompt", "2",
                  "--per-label-limit", "4", "--heldout-limit", "4", "--val-limit", "2", "--val-every", "1",
                  "--data-dir", shared_data_dir, "--json")
    assert res.code == 0, res.err
    s = json.loads(res.out)
    assert s["labels"] == ["math", "reasoning"] and s["label_tasks"] == {"math": "gsm8k", "reasoning": "arc_easy"}
    assert s["n_train"] == 8 and s["n_heldout"] == 4
    assert 0 <= s["heldout_accuracy_before"] <= 1 and 0 <= s["heldout_accuracy_after"] <= 1
    clf = load_expert(s["classifier"])
    assert clf.meta["kind"] == "classifier" and clf.meta["labels"] == ["math", "reasoning"]


def test_adapt_table_output(setup, shared_data_dir, tmp_path, capsys):
    model, paths, _ = setup
    res = run_cli(capsys, "adapt", "-t", "arc_easy", "--experts", paths["gsm8k"], paths["arc_easy"], "-m", model,
                  "--limit", "1", "--max-new-tokens", "1", "--out", tmp_path / "t", "--data-dir", shared_data_dir)
    assert res.code == 0, res.err
    assert "adapted-prompt" in res.out and "routes:" in res.out
