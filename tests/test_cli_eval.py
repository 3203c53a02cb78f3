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


def test_retrained_expert_under_same_name_is_evaluated_again(tiny_model_dirs, shared_data_dir, tmp_path, capsys):
    """Stored records are keyed by the exact weights: a new expert file at the same path is not served stale."""
    import torch

    from t2cli.arch import select_targets
    from t2cli.evaluate import file_digest
    from t2cli.experts import build_meta, save_expert
    from t2cli.models import load_model
    from t2cli.svd import SVDCache, decompose, model_fingerprint
    from t2cli.svf import init_params

    loaded = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype="float32")
    targets = select_targets(loaded.model, "mlp")
    res = decompose(loaded.model, loaded.ref.name, targets)
    fp = model_fingerprint(loaded.model)
    path = tmp_path / "e" / "expert.safetensors"
    path.parent.mkdir()
    args = ["eval", "-t", "arc_easy", "-m", tiny_model_dirs["llama"], "--expert", path, "--limit", "2",
            "--max-new-tokens", "3", "--out", tmp_path / "ev", "--data-dir", shared_data_dir, "--json"]
    meta = build_meta(base_model=loaded.ref.name, model_fingerprint=fp, targets="mlp")
    for seed, value in ((0, 0.0), (1, 6.0)):
        params = init_params(SVDCache.open(res.path), targets, seed=seed)
        with torch.no_grad():
            for z in params.z.values():
                z.fill_(value)
        save_expert(path, params, meta)
        assert run_cli(capsys, *args).code == 0
        sidecar = json.loads((tmp_path / "ev" / "e" / "arc_easy.meta.json").read_text())
        assert file_digest(path) in sidecar["fingerprint"]["variant"]


def test_second_eval_into_a_folder_keeps_its_rows(tiny_model_dirs, shared_data_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    common = ["-m", tiny_model_dirs["llama"], "--limit", "2", "--max-new-tokens", "2", "--out", out,
              "--data-dir", shared_data_dir, "--json"]
    assert run_cli(capsys, "eval", "-t", "arc_easy", "-t", "gsm8k", *common).code == 0
    res = run_cli(capsys, "eval", "-t", "arc_easy_text", "-t", "gsm8k", *common)
    assert res.code == 0, res.err
    assert [r["task"] for r in json.loads(res.out)["results"]] == ["arc_easy_text", "gsm8k"]  # this run only
    stored = json.loads((out / "summary.json").read_text())
    assert [(r["label"], r["task"]) for r in stored["results"]] == [("base", "arc_easy"), ("base", "arc_easy_text"),
                                                                    ("base", "gsm8k")]
    other = run_cli(capsys, "eval", "-t", "gsm8k", "--split", "train", *common)  # another split: a new summary
    assert other.code == 0, other.err
    assert [r["task"] for r in json.loads((out / "summary.json").read_text())["results"]] == ["gsm8k"]
