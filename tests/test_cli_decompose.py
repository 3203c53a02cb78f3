"""`t2 decompose` end to end on tiny saved models, including every bad input a user can give it."""

import json

import pytest

from cli_helpers import run_cli


def test_help_shows_examples(capsys):
    res = run_cli(capsys, "decompose", "--help")
    assert res.code == 0 and "t2 decompose meta-llama" in res.out


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi3"])
def test_decompose_json_then_noop_then_verify(arch, tiny_model_dirs, tmp_path, capsys):
    out = tmp_path / "cache"
    first = run_cli(capsys, "decompose", tiny_model_dirs[arch], "--out", out, "--json")
    assert first.code == 0, first.err
    summary = json.loads(first.out)
    assert summary["computed"] == summary["matrices"] > 0 and summary["skipped"] == 0
    second = json.loads(run_cli(capsys, "decompose", tiny_model_dirs[arch], "--out", out, "--json", "--verify").out)
    assert second["computed"] == 0 and second["skipped"] == summary["matrices"] and second["verified"] is True


def test_default_location_is_keyed_by_model(tiny_model_dirs, capsys, tmp_path):
    res = run_cli(capsys, "decompose", tiny_model_dirs["llama"], "--targets", "mlp", "--json")
    cache = json.loads(res.out)["cache"]
    assert cache.startswith(str(tmp_path / "t2home" / "svd"))


def test_unknown_model_is_one_line_error(capsys):
    res = run_cli(capsys, "decompose", "no/such-model-anywhere")
    assert res.code != 0
    assert res.err.startswith("error: cannot load model") and res.err.count("\n") == 1


def test_bad_spec_is_one_line_error(capsys):
    res = run_cli(capsys, "decompose", "./not-a-folder")
    assert res.code != 0 and "unknown model" in res.err and res.err.count("\n") == 1


def test_targets_matching_nothing(tiny_model_dirs, capsys):
    res = run_cli(capsys, "decompose", tiny_model_dirs["llama"], "--targets", "nothing_here")
    assert res.code == 2 and "matches no matrix" in res.err


def test_unwritable_output_folder(tiny_model_dirs, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = run_cli(capsys, "decompose", tiny_model_dirs["llama"], "--out", blocker / "cache")
    assert res.code != 0 and "writable --out" in res.err


def test_cache_of_another_model(tiny_model_dirs, tmp_path, capsys):
    out = tmp_path / "cache"
    assert run_cli(capsys, "decompose", tiny_model_dirs["llama"], "--out", out).code == 0
    res = run_cli(capsys, "decompose", tiny_model_dirs["mistral"], "--out", out)
    assert res.code != 0 and "belongs to model" in res.err


def test_truncated_shard_fails_verify(tiny_model_dirs, tmp_path, capsys):
    out = tmp_path / "cache"
    assert run_cli(capsys, "decompose", tiny_model_dirs["llama"], "--out", out).code == 0
    shard = sorted((out / "shards").iterdir())[0]
    shard.write_bytes(shard.read_bytes()[:100])
    res = run_cli(capsys, "decompose", tiny_model_dirs["llama"], "--out", out, "--verify", "--json")
    assert res.code != 0
    assert json.loads(res.out.splitlines()[0])["problems"]
    assert "problems in" in res.err


@pytest.mark.slow
def test_embedded_default_loads_and_answers(capsys):
    from t2cli.models import load_model

    loaded = load_model(None)
    assert loaded.model.config.model_type == "llama" and loaded.ref.kind == "default"
    tok = loaded.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = loaded.model.generate(**ids, max_new_tokens=10, do_sample=False)
    assert "5" in tok.decode(out[0][ids["input_ids"].shape[1]:])
