"""`t2 transfer` and the LoRA paths of `t2 train` / `t2 eval` end to end on tiny saved models."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli


def _one_error_line(err: str) -> bool:
    """Exactly one ``error:`` line and nothing after it (model-loading progress bars may precede it)."""
    lines = err.replace("\r", "\n").strip().splitlines()
    return sum(line.startswith("error:") for line in lines) == 1 and lines[-1].startswith("error:")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def source_expert(tiny_model_dirs, tmp_path, capsys):
    """An mlp expert for the tiny llama folder (its SVD cache in the default place)."""
    from t2cli import svf
    from t2cli.experts import build_meta, save_expert
    from t2cli.models import load_model
    from t2cli.svd import find_cache

    res = run_cli(capsys, "decompose", tiny_model_dirs["llama"], "--targets", "mlp", "--json")
    assert res.code == 0, res.err
    loaded = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype="float32")
    cache = find_cache(loaded.model, loaded.ref.name)
    params = svf.init_params(cache, list(cache.matrices), seed=1, noise_std=0.3)
    meta = build_meta(base_model=loaded.ref.name, model_fingerprint=cache.fingerprint, targets="mlp", task="gsm8k")
    return save_expert(tmp_path / "math.safetensors", params, meta)


def test_transfer_json_needs_cache_then_writes_compatible_expert(source_expert, tiny_model_dirs, tmp_path, capsys):
    from t2cli.experts import check_compatible, load_expert
    from t2cli.models import load_model
    from t2cli.svd import find_cache, model_fingerprint

    target = tiny_model_dirs["mistral"]
    missing = run_cli(capsys, "transfer", source_expert, "--to", target, "--json")
    assert missing.code != 0 and "--decompose" in missing.err and _one_error_line(missing.err)
    out = tmp_path / "math.mistral.safetensors"
    res = run_cli(capsys, "transfer", source_expert, "--to", target, "--decompose", "--order", "shuffled",
                  "--seed", "4", "--out", out, "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["expert"] == str(out) and summary["matrices"] == 6 and summary["order"] == "shuffled"
    assert summary["rank_handling"] == {"same": 6, "truncated": 0, "padded": 0} and summary["seed"] == 4
    assert summary["source_layers_inferred"] is False  # read from the source's default SVD cache
    expert = load_expert(out)
    tgt = load_model(str(target), device="cpu", dtype="float32")
    check_compatible(expert, model_fingerprint(tgt.model), find_cache(tgt.model, tgt.ref.name), tgt.ref.name)
    assert expert.meta["transfer"]["source_expert"] == str(source_expert)
    default = run_cli(capsys, "transfer", source_expert, "--to", target)  # human line, default output path
    assert default.code == 0 and "math.to-mistral.ordered.safetensors" in default.out


def test_transfer_bad_options_and_layer_mismatch(source_expert, tiny_tokenizer, tmp_path, capsys):
    from conftest import build_model

    bad = run_cli(capsys, "transfer", source_expert, "--to", tmp_path, "--order", "random", "--layer-map", "nearest")
    assert bad.code == 2 and "--order" in bad.err and "--layer-map" in bad.err
    deep = tmp_path / "deep"
    build_model("llama", len(tiny_tokenizer), seed=3, num_layers=3).save_pretrained(deep)
    tiny_tokenizer.save_pretrained(deep)
    strict = run_cli(capsys, "transfer", source_expert, "--to", deep, "--decompose")
    assert strict.code != 0 and "--layer-map linear" in strict.err and _one_error_line(strict.err)
    res = run_cli(capsys, "transfer", source_expert, "--to", deep, "--decompose", "--layer-map", "linear", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["layer_pairs"] == {"0": 0, "1": 1, "2": 1}


def test_train_lora_then_eval_lora(tiny_model_dirs, shared_data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    res = run_cli(capsys, "train", "--method", "lora", "--task", "arc_easy", "-m", tiny_model_dirs["llama"],
                  "--steps", "1", "--batch-size", "2", "--micro-batch-size", "2", "--train-limit", "2",
                  "--val-every", "1", "--val-limit", "2", "--max-new-tokens", "2", "--lora-rank", "4",
                  "--data-dir", shared_data_dir, "--out", run, "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    adapter = run / "lora-arc_easy"
    assert summary["adapter"] == str(adapter) and summary["objective"] == "ntp" and summary["method"] == "lora"
    t = summary["trainable"]
    assert t["svf"]["params"] == 6 * 32 and t["lora"]["params"] == 2 * 4 * (64 + 48) and t["lora"]["modules"] == 4
    assert (adapter / "adapter_config.json").is_file() and (adapter / "t2_meta.json").is_file()

    out = tmp_path / "ev"
    ev = run_cli(capsys, "eval", "--task", "arc_easy", "-m", tiny_model_dirs["llama"], "--lora", adapter, "--with-base",
                 "--limit", "2", "--max-new-tokens", "2", "--out", out, "--data-dir", shared_data_dir, "--json")
    assert ev.code == 0, ev.err
    rows = json.loads(ev.out)["results"]
    assert [(r["label"], r["n"]) for r in rows] == [("base", 2), ("lora-arc_easy", 2)]
    assert (out / "lora-arc_easy" / "arc_easy.jsonl").is_file()

    other = run_cli(capsys, "eval", "--task", "arc_easy", "-m", tiny_model_dirs["mistral"], "--lora", adapter,
                    "--limit", "1", "--out", out, "--data-dir", shared_data_dir)
    assert other.code != 0 and "was trained on" in other.err and _one_error_line(other.err)


def test_train_lora_bad_options_are_clear(tiny_model_dirs, tmp_path, capsys):
    res = run_cli(capsys, "train", "--method", "dora", "--task", "arc_easy", "--out", tmp_path)
    assert res.code == 2 and "svf or lora" in res.err
    res = run_cli(capsys, "train", "--method", "lora", "--task", "arc_easy", "-m", tiny_model_dirs["phi3"],
                  "--out", tmp_path, "--data-dir", tmp_path, "--steps", "1")
    assert res.code != 0 and _one_error_line(res.err)


def test_fewshot_mixes_a_native_and_a_transferred_expert(source_expert, tiny_model_dirs, shared_data_dir, tmp_path,
                                                         capsys):
    """Cross-model few-shot (the paper's Table 3): an expert moved from the Llama onto the Qwen2 model is mixed
    with one of the Qwen2 model's own experts."""
    from t2cli import svf
    from t2cli.experts import build_meta, load_expert, save_expert
    from t2cli.models import load_model
    from t2cli.svd import find_cache

    target = tiny_model_dirs["qwen2"]
    moved = tmp_path / "math.qwen2.safetensors"
    assert run_cli(capsys, "transfer", source_expert, "--to", target, "--decompose", "--out", moved).code == 0
    loaded = load_model(str(target), device="cpu", dtype="float32")
    cache = find_cache(loaded.model, loaded.ref.name)
    params = svf.init_params(cache, list(cache.matrices), seed=2, noise_std=0.3)
    meta = build_meta(base_model=loaded.ref.name, model_fingerprint=cache.fingerprint, targets="mlp", task="arc_easy")
    native = save_expert(tmp_path / "reasoning.qwen2.safetensors", params, meta)
    res = run_cli(capsys, "adapt", "-t", "arc_easy", "--strategy", "fewshot", "--shots", "2", "--population", "2",
                  "--iterations", "1", "-e", moved, "-e", native, "-m", target, "--limit", "2", "--max-new-tokens",
                  "2", "--no-compare", "--out", tmp_path / "fs", "--data-dir", shared_data_dir, "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["meta"]["experts"] == {"math": str(moved), "reasoning": str(native)}
    mixed = load_expert(summary["meta"]["expert_file"])
    assert mixed.meta["training"]["experts"] == [str(moved), str(native)]
    assert load_expert(moved).meta["transfer"]["source_model"] != loaded.ref.name
