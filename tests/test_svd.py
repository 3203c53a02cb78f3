"""The SVD cache: round trip, manifest, resume, and the errors a user can run into."""

import json
import os

import pytest
import torch

from conftest import build_model
from t2cli import svd as svd_mod
from t2cli.arch import select_targets
from t2cli.errors import CacheError
from t2cli.svd import SVDCache, decompose, find_cache, model_fingerprint

# float32 SVD of a 64x32 matrix reconstructs to ~1e-7 relative Frobenius error; 1e-5 leaves room.
RECONSTRUCTION_TOL = 1e-5


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "phi3", "gemma"])
def test_round_trip_reconstructs_every_matrix(arch, tiny_tokenizer, tmp_path):
    model = build_model(arch, len(tiny_tokenizer))
    targets = select_targets(model)
    result = decompose(model, arch, targets, tmp_path / "cache")
    cache = SVDCache.open(result.path)
    params = dict(model.named_parameters())
    for t in targets:
        U, S, Vh = cache.load(t.name)
        w = params[t.name].detach()
        rel = ((U * S) @ Vh - w).norm() / w.norm()
        assert rel < RECONSTRUCTION_TOL, (t.name, float(rel))
        assert torch.all(S[:-1] >= S[1:]), "singular values must be in descending order"
    assert result.computed == len(targets) and result.max_rel_error < RECONSTRUCTION_TOL


def test_manifest_records_model_shapes_errors_and_version(tiny_llama, tmp_path):
    model, _ = tiny_llama
    targets = select_targets(model, "mlp")
    decompose(model, "tiny-llama", targets, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model"] == "tiny-llama"
    assert manifest["model_fingerprint"] == model_fingerprint(model)
    assert manifest["architecture"]["model_type"] == "llama"
    assert manifest["dtype"] == "float32" and manifest["t2_version"]
    assert set(manifest["matrices"]) == {t.name for t in targets}
    entry = manifest["matrices"][targets[0].name]
    assert entry["shape"] == list(targets[0].shape) and entry["rank"] == min(targets[0].shape)
    assert 0 <= entry["rel_error"] < RECONSTRUCTION_TOL and len(entry["sha256"]) == 64


def test_second_run_is_a_no_op(tiny_llama, tmp_path):
    model, _ = tiny_llama
    targets = select_targets(model)
    decompose(model, "m", targets, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").iterdir()}
    again = decompose(model, "m", targets, tmp_path)
    assert (again.computed, again.skipped) == (0, len(targets))
    assert before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").iterdir()}


def test_interrupted_run_resumes_to_the_same_cache(tiny_llama, tmp_path, monkeypatch):
    model, _ = tiny_llama
    targets = select_targets(model)
    decompose(model, "m", targets, tmp_path / "clean")

    original = svd_mod._write_bytes
    calls = {"n": 0}

    def dies_mid_write(path, blob):
        calls["n"] += 1
        if calls["n"] == 4:  # half of the 4th shard reaches the disk, then the process is interrupted
            original(path, blob[: len(blob) // 2])
            raise KeyboardInterrupt
        original(path, blob)

    monkeypatch.setattr(svd_mod, "_write_bytes", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        decompose(model, "m", targets, tmp_path / "resumed")
    monkeypatch.setattr(svd_mod, "_write_bytes", original)
    leftovers = [p for p in (tmp_path / "resumed" / "shards").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, "no temporary file may survive an interruption"
    partial = SVDCache.open(tmp_path / "resumed")
    assert len(partial.matrices) == 3
    result = decompose(model, "m", targets, tmp_path / "resumed")
    assert (result.computed, result.skipped) == (len(targets) - 3, 3)
    clean, resumed = SVDCache.open(tmp_path / "clean"), SVDCache.open(tmp_path / "resumed")
    assert clean.matrices.keys() == resumed.matrices.keys()
    for name in clean.matrices:
        for a, b in zip(clean.load(name), resumed.load(name)):
            assert torch.equal(a, b)
    assert resumed.verify(model) == []


def test_cache_of_another_model_is_rejected(tiny_tokenizer, tmp_path):
    a = build_model("llama", len(tiny_tokenizer), seed=0)
    b = build_model("llama", len(tiny_tokenizer), seed=1)
    decompose(a, "a", select_targets(a), tmp_path)
    with pytest.raises(CacheError, match="belongs to model 'a'"):
        decompose(b, "b", select_targets(b), tmp_path)
    with pytest.raises(CacheError, match="belongs to model"):
        find_cache(b, "b", tmp_path)
    assert SVDCache.open(tmp_path).verify(b) != []


def test_truncated_shard_is_detected(tiny_llama, tmp_path):
    model, _ = tiny_llama
    targets = select_targets(model)
    decompose(model, "m", targets, tmp_path)
    shard = tmp_path / "shards" / f"{targets[0].name}.safetensors"
    size = shard.stat().st_size
    with open(shard, "r+b") as fh:
        fh.truncate(size // 2)
    cache = SVDCache.open(tmp_path)
    assert any("checksum" in p for p in cache.verify(model))
    with pytest.raises(CacheError, match="unreadable"):
        cache.load(targets[0].name)


def test_fingerprint_ignores_dtype(tiny_llama):
    model, _ = tiny_llama
    fp32 = model_fingerprint(model)
    assert model_fingerprint(model.to(torch.bfloat16)) == fp32


def test_missing_cache_says_to_run_decompose(tiny_llama, tmp_path):
    model, _ = tiny_llama
    with pytest.raises(CacheError, match="t2 decompose"):
        find_cache(model, "m")


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="corrupt"):
        SVDCache.open(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_core(tiny_llama, tmp_path):
    model, _ = tiny_llama
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(CacheError, match="writable"):
        decompose(model, "m", select_targets(model), ro / "cache")


def test_cache_files_get_normal_permissions(tiny_llama, tmp_path):
    model, _ = tiny_llama
    old = os.umask(0o022)
    try:
        decompose(model, "m", select_targets(model, "mlp"), tmp_path)
    finally:
        os.umask(old)
    for f in [tmp_path / "manifest.json", *(tmp_path / "shards").iterdir()]:
        assert f.stat().st_mode & 0o777 == 0o644, f
