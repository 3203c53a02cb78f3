"""Cross-model transfer: ordered is the identity between identical models, shuffled permutes, ranks truncate/pad,
layer counts need --layer-map linear, roles must exist, and the result fits the target (not the source)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from _svf_helpers import decomposed
from conftest import build_model
from t2cli import svf
from t2cli.errors import CacheError, ExpertError
from t2cli.experts import Expert, build_meta, check_compatible, load_expert, save_expert
from t2cli.transfer import map_layer, plan_transfer, transfer_expert


pytestmark = pytest.mark.usefixtures("one_thread")


def _expert(model, tmp_path, name="src", targets="mlp", seed=3, noise=0.5):
    """A saved expert with distinct random values, trained (nominally) on ``model``."""
    cache = decomposed(model, tmp_path, targets=targets, name=name)
    params = svf.init_params(cache, list(cache.matrices), seed=seed, noise_std=noise)
    meta = build_meta(base_model=name, model_fingerprint=cache.fingerprint, svd_fingerprint=cache.fingerprint,
                      targets=targets, layers="all", task="gsm8k", val_score=0.5)
    return load_expert(save_expert(tmp_path / f"{name}.safetensors", params, meta)), cache


def test_ordered_between_identical_models_is_identity(tiny_tokenizer, tmp_path):
    src = build_model("llama", len(tiny_tokenizer), seed=0)
    tgt = build_model("llama", len(tiny_tokenizer), seed=0)
    expert, _ = _expert(src, tmp_path)
    tcache = decomposed(tgt, tmp_path, targets="mlp", name="tgt")
    params, meta = transfer_expert(expert, tgt, "tgt", tcache, order="ordered")
    assert set(params.z) == set(expert.params.z)
    assert all(torch.equal(params.z[n], expert.params.z[n]) for n in params.z)
    t = meta["transfer"]
    assert t["order"] == "ordered" and t["rank_handling"] == {"same": 6, "truncated": 0, "padded": 0}
    assert t["source_expert"] == str(expert.path) and t["source_model"] == "src" and meta["base_model"] == "tgt"


def test_shuffled_keeps_values_changes_order_and_is_seeded(tiny_tokenizer, tmp_path):
    model = build_model("llama", len(tiny_tokenizer), seed=0)
    expert, cache = _expert(model, tmp_path)
    a, meta = transfer_expert(expert, model, "src", cache, order="shuffled", seed=1)
    b, _ = transfer_expert(expert, model, "src", cache, order="shuffled", seed=1)
    c, _ = transfer_expert(expert, model, "src", cache, order="shuffled", seed=2)
    for n, z in expert.params.z.items():
        assert Counter(a.z[n].tolist()) == Counter(z.tolist())
        assert not torch.equal(a.z[n], z)
        assert torch.equal(a.z[n], b.z[n])
    assert any(not torch.equal(a.z[n], c.z[n]) for n in a.z)
    assert meta["transfer"]["seed"] == 1 and meta["transfer"]["order"] == "shuffled"


@pytest.mark.parametrize("src_hidden,tgt_hidden,how", [(64, 32, "truncated"), (32, 64, "padded")])
def test_rank_mismatch_truncates_or_pads(tiny_tokenizer, tmp_path, src_hidden, tgt_hidden, how):
    src = build_model("llama", len(tiny_tokenizer), seed=0, hidden=src_hidden)
    tgt = build_model("llama", len(tiny_tokenizer), seed=1, hidden=tgt_hidden)
    expert, _ = _expert(src, tmp_path)
    tcache = decomposed(tgt, tmp_path, targets="mlp", name="tgt")
    params, meta = transfer_expert(expert, tgt, "tgt", tcache)
    neutral = svf.neutral_value(expert.params.parameterisation, expert.params.max_mult)
    for n, z in params.z.items():
        rank, src_z = tcache.matrices[n]["rank"], expert.params.z[n]
        entry = meta["transfer"]["matrices"][n]
        assert z.shape[0] == rank == entry["target_rank"] and entry["source_rank"] == src_z.shape[0]
        assert entry["rank"] == how
        k = min(rank, src_z.shape[0])
        assert torch.equal(z[:k], src_z[:k])
        assert (z[k:] == neutral).all()
    assert meta["transfer"]["rank_handling"][how] == len(params.z)
    out = save_expert(tmp_path / "t.safetensors", params, meta)
    check_compatible(load_expert(out), tcache.fingerprint, tcache)  # loads and composes on the target
    factors = svf.Factors.load(tcache, params.z, model=tgt)
    assert all(torch.isfinite(w).all() for w in svf.merge(factors, svf.scales(params)).values())


def test_layer_mismatch_needs_linear_map(tiny_tokenizer, tmp_path):
    src = build_model("llama", len(tiny_tokenizer), seed=0, num_layers=2)
    tgt = build_model("llama", len(tiny_tokenizer), seed=1, num_layers=3)
    expert, _ = _expert(src, tmp_path)
    tcache = decomposed(tgt, tmp_path, targets="mlp", name="tgt")
    with pytest.raises(ExpertError, match="--layer-map linear"):
        transfer_expert(expert, tgt, "tgt", tcache)
    params, meta = transfer_expert(expert, tgt, "tgt", tcache, layer_map="linear")
    assert meta["transfer"]["layer_pairs"] == {"0": 0, "1": 1, "2": 1}  # round(j·1/2), half up
    assert meta["transfer"]["source_layers_inferred"] is True  # the source cache is not in the default folder
    src_down1 = next(n for n in expert.params.z if ".layers.1." in n and "down_proj" in n)
    tgt_down2 = next(n for n in params.z if ".layers.2." in n and "down_proj" in n)
    assert torch.equal(params.z[tgt_down2], expert.params.z[src_down1])
    assert len(params.z) == 9 and meta["layers"] == "0,1,2"


def test_linear_layer_map_formula():
    assert [map_layer(j, 32, 32) for j in range(32)] == list(range(32))
    assert [map_layer(j, 4, 2) for j in range(2)] == [0, 3]
    assert [map_layer(j, 3, 5) for j in range(5)] == [0, 1, 1, 2, 2]  # 0.5 and 1.5 round half up
    assert map_layer(0, 7, 1) == 0


def test_missing_roles_are_named(tiny_tokenizer, tmp_path):
    src = build_model("llama", len(tiny_tokenizer), seed=0)
    tgt = build_model("phi3", len(tiny_tokenizer), seed=1)
    expert, _ = _expert(src, tmp_path, targets="all")
    with pytest.raises(ExpertError) as err:
        plan_transfer(expert, tgt)
    for role in ("gate_proj", "k_proj", "q_proj", "up_proj", "v_proj"):
        assert role in str(err.value)


def test_output_fits_target_not_source_and_needs_target_cache(tiny_tokenizer, tmp_path):
    src = build_model("llama", len(tiny_tokenizer), seed=0)
    tgt = build_model("mistral", len(tiny_tokenizer), seed=1)
    expert, scache = _expert(src, tmp_path)
    tcache = decomposed(tgt, tmp_path, targets="attn", name="tgt")  # the target cache lacks the mlp matrices
    with pytest.raises(CacheError, match="decompose"):
        transfer_expert(expert, tgt, "tgt", tcache)
    tcache = decomposed(tgt, tmp_path, targets="all", name="tgt")
    params, meta = transfer_expert(expert, tgt, "tgt", tcache)
    loaded = load_expert(save_expert(tmp_path / "out.safetensors", params, meta))
    check_compatible(loaded, tcache.fingerprint, tcache)
    with pytest.raises(ExpertError):
        check_compatible(loaded, scache.fingerprint, scache)
    assert loaded.meta["transfer"]["source_fingerprint"] == scache.fingerprint
    assert loaded.meta["svd_fingerprint"] == tcache.fingerprint and loaded.meta["val_score"] is None


def test_inferred_layer_count_is_recorded(tiny_tokenizer, tmp_path):
    model = build_model("llama", len(tiny_tokenizer), seed=0)
    expert, cache = _expert(model, tmp_path)
    bare = Expert(expert.params, {**expert.meta, "base_model": "elsewhere"}, expert.path)  # no local source cache
    plan = plan_transfer(bare, model)
    assert plan.source_layers_inferred and plan.source_num_layers == 2
    assert plan_transfer(bare, model, source_num_layers=2).source_layers_inferred is False
