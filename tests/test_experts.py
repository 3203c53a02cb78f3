"""Expert files: atomic save/load round trip, metadata, and clear errors for foreign or damaged files."""

from __future__ import annotations

import pytest
import torch

from _svf_helpers import decomposed
from conftest import build_model
from t2cli import svf
from t2cli.errors import ExpertError
from t2cli.experts import build_meta, check_compatible, load_expert, save_expert


@pytest.fixture
def setup(tiny_llama, tmp_path):
    model, _ = tiny_llama
    cache = decomposed(model, tmp_path, targets="mlp")
    params = svf.init_params(cache, list(cache.matrices), seed=5)
    meta = build_meta(base_model="tiny", model_fingerprint=cache.fingerprint, svd_fingerprint=cache.fingerprint,
                      targets="mlp", layers="all", task="gsm8k", training={"lr": 2e-3}, val_score=0.25)
    return model, cache, params, meta


def test_round_trip(setup, tmp_path):
    _, cache, params, meta = setup
    path = save_expert(tmp_path / "e.safetensors", params, meta)
    assert not list(tmp_path.glob(".e.safetensors.*"))  # no temp file left behind
    expert = load_expert(path)
    assert set(expert.params.z) == set(params.z)
    assert all(torch.equal(expert.params.z[n], params.z[n].detach()) for n in params.z)
    assert expert.meta["task"] == "gsm8k" and expert.meta["val_score"] == 0.25
    assert expert.meta["parameterisation"] == "sigmoid" and expert.meta["max_mult"] == 2.0
    assert expert.meta["kind"] == "expert" and expert.meta["t2_version"]
    check_compatible(expert, cache.fingerprint, cache)


def test_other_model_is_rejected_with_fix(setup, tmp_path, tiny_tokenizer):
    _, cache, params, meta = setup
    expert = load_expert(save_expert(tmp_path / "e.safetensors", params, meta))
    with pytest.raises(ExpertError, match="pass --model tiny"):
        check_compatible(expert, "f" * 64)
    other = build_model("qwen2", vocab_size=len(tiny_tokenizer), seed=1, hidden=64)
    other_cache = decomposed(other, tmp_path, targets="mlp", name="other")
    expert.meta["model_fingerprint"] = other_cache.fingerprint
    with pytest.raises(ExpertError):
        check_compatible(expert, other_cache.fingerprint, other_cache)  # rank 32 vs 64 / names differ


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_damaged_files(setup, tmp_path, damage):
    _, _, params, meta = setup
    path = save_expert(tmp_path / "e.safetensors", params, meta)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-20])
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    else:
        path.unlink()
    with pytest.raises(ExpertError):
        load_expert(path)


def test_non_finite_and_bad_meta_are_refused(setup, tmp_path):
    _, _, params, meta = setup
    bad = svf.SVFParams({n: torch.full_like(z, float("nan")) for n, z in params.z.items()})
    with pytest.raises(ExpertError):
        save_expert(tmp_path / "nan.safetensors", bad, meta)
    with pytest.raises(ExpertError):
        save_expert(tmp_path / "x.safetensors", params, {"kind": "expert"})
    assert not (tmp_path / "nan.safetensors").exists()
