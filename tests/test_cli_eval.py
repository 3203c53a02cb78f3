"""`t2 eval` on a tiny saved model and the real local data."""

import json

from cli_helpers import run_cli


def test_eval_writes_records_summary_and_json(tiny_model_dirs, shared_data_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    res = run_cli(capsys, "eval", "--task", "arc_easy", "--task", "gsm8k", "--model", tiny_model_dirs["llama"],
                  "--limit", "3", "--max-new-tokens", "4", "--out", out, "--data-dir", shared_data_dir, "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert [(r["task"], r["label"], r["n"]) for r in summary["results"]] == [("arc_easy", "base", 3), ("gsm8k", "base", 3)]
    for r in summary["results"]:
        assert r["correct"] == round(r["accuracy"] * r["n"])
    assert json.loads((out / "summary.json").read_text()) == summary
    lines = (out / "base" / "arc_easy.jsonl").read_text().splitlines()
    assert len(lines) == 3 and {"completion", "extracted", "gold", "correct"} <= set(json.loads(lines[0]))


def test_eval_table_output(tiny_model_dirs, shared_data_dir, tmp_path, capsys):
    res = run_cli(capsys, "eval", "-t", "arc_challenge", "-m", tiny_model_dirs["qwen2"], "--limit", "2",
                  "--max-new-tokens", "2", "--out", tmp_path, "--data-dir", shared_data_dir)
    assert res.code == 0, res.err
    assert "arc_challenge" in res.out and "accuracy" in res.out


def test_unknown_task_lists_known_ones(capsys, tmp_path):
    res = run_cli(capsys, "eval", "--task", "nope", "--out", tmp_path)
    assert res.code != 0 and "arc_easy" in res.err and res.err.count("\n") == 1


def test_missing_data_says_how_to_provide_it(tiny_model_dirs, tmp_path, capsys):
    res = run_cli(capsys, "eval", "--task", "arc_easy", "-m", tiny_model_dirs["llama"], "--data-dir", tmp_path / "empty",
                  "--out", tmp_path)
    assert res.code != 0 and "T2_DATA_DIR" in res.err


def test_bad_options_are_listed_together(capsys, tmp_path):
    res = run_cli(capsys, "eval", "--task", "arc_easy", "--limit", "0", "--backend", "tpu", "--out", tmp_path)
    assert res.code == 2 and "--limit" in res.err and "--backend" in res.err


def test_vllm_backend_without_vllm_is_a_clear_error(capsys, tmp_path, tiny_model_dirs):
    res = run_cli(capsys, "eval", "--task", "arc_easy", "-m", tiny_model_dirs["llama"], "--backend", "vllm", "--out", tmp_path)
    assert res.code != 0 and "vllm" in res.err.lower() and res.err.count("\n") == 1
