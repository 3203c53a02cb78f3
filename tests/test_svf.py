"""SVF composition: identity at the neutral scale, mixing in scale space, merge checks, in-place apply/restore."""

from __future__ import annotations

import math

import pytest
import torch

from _svf_helpers import decomposed
from conftest import build_model
from t2cli import svf
from t2cli.errors import ConfigError, ExpertError

IDENTITY_TOL = 1e-4  # max |Δlogit| on a tiny float32 model (SVD reconstruction error is ~1e-6 relative)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("parameterisation", ["sigmoid", "linear"])
def test_neutral_scale_reproduces_base_logits(arch, parameterisation, tiny_tokenizer, tmp_path):
    model = build_model(arch, vocab_size=len(tiny_tokenizer))
    cache = decomposed(model, tmp_path)
    factors = svf.Factors.load(cache, cache.matrices, model=model)
    params = svf.init_params(factors, factors.names, parameterisation, noise_std=0.0)
    assert all(torch.allclose(s, torch.ones_like(s)) for s in svf.scales(params).values())
    weights = svf.merge(factors, svf.scales(params), params.renormalise)
    ids = torch.tensor([tiny_tokenizer("What is 2 + 3? The answer is 5.")["input_ids"]])
    base = _logits(model, ids)
    with svf.applied(model, weights):
        adapted = _logits(model, ids)
    assert (adapted - base).abs().max().item() < IDENTITY_TOL
    functional = svf.functional_forward(model, weights, input_ids=ids).logits.detach()
    assert (functional - base).abs().max().item() < IDENTITY_TOL
    assert torch.equal(_logits(model, ids), base)  # restored exactly


def test_sigmoid_renormalisation_makes_any_uniform_scale_neutral(tiny_llama, tmp_path):
    model, _ = tiny_llama
    cache = decomposed(model, tmp_path, targets="mlp")
    factors = svf.Factors.load(cache, cache.matrices, model=model)
    params = svf.init_params(factors, factors.names, "sigmoid", noise_std=0.0, max_mult=1.0)  # reference setting
    name = factors.names[0]
    w = svf.merge(factors, svf.scales(params), True)[name]
    assert torch.allclose(w, dict(model.named_parameters())[name], atol=1e-5)
    assert svf.neutral_value("sigmoid", 2.0) == 0.0
    assert math.isclose(svf.neutral_value("sigmoid", 4.0), math.log(1 / 3))


def test_init_noise_is_seeded_and_leaves_global_rng(tiny_llama, tmp_path):
    model, _ = tiny_llama
    cache = decomposed(model, tmp_path, targets="mlp")
    state = torch.get_rng_state()
    a = svf.init_params(cache, list(cache.matrices), seed=3)
    b = svf.init_params(cache, list(cache.matrices), seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a.z[n], b.z[n]) for n in a.z)
    assert all(abs(float(z.detach().mean())) < 0.01 and z.requires_grad for z in a.z.values())


def test_mix_one_hot_equals_expert_and_mixes_scales_not_raw(tiny_llama, tmp_path):
    model, _ = tiny_llama
    cache = decomposed(model, tmp_path, targets="mlp")
    names = list(cache.matrices)
    e1 = svf.init_params(cache, names, seed=1, noise_std=1.0)
    e2 = svf.init_params(cache, names, seed=2, noise_std=1.0)
    s1, s2 = svf.scales(e1), svf.scales(e2)
    mixed = svf.mix_scales([s1, s2], [1.0, 0.0])
    assert all(torch.equal(mixed[n], s1[n].float()) for n in names)
    half = svf.mix_scales([s1, s2], [0.5, 0.5])
    n0 = names[0]
    assert torch.allclose(half[n0], 0.5 * s1[n0] + 0.5 * s2[n0])
    assert not torch.allclose(half[n0], torch.sigmoid(0.5 * e1.z[n0] + 0.5 * e2.z[n0]) * 2)
    per_layer = svf.mix_scales([s1, s2], {n: [0.0, 1.0] for n in names})
    assert torch.equal(per_layer[n0], s2[n0].float())
    partial = svf.mix_scales([{n0: s1[n0]}, s2], [0.5, 0.5])  # an expert without a matrix counts as scale 1
    assert torch.allclose(partial[names[1]], 0.5 + 0.5 * s2[names[1]])
    with pytest.raises(ConfigError):
        svf.mix_scales([s1, s2], [1.0])


def test_compose_is_differentiable_and_merge_rejects_non_finite(tiny_llama, tmp_path):
    model, _ = tiny_llama
    cache = decomposed(model, tmp_path, targets="mlp")
    factors = svf.Factors.load(cache, cache.matrices, model=model)
    params = svf.init_params(factors, factors.names, "sigmoid")
    weights = svf.compose_params(factors, params)
    sum(w.square().sum() for w in weights.values()).backward()
    assert all(z.grad is not None and z.grad.abs().sum() > 0 for z in params.z.values())
    bad = {n: torch.full_like(s, float("nan")) for n, s in svf.scales(params).items()}
    with pytest.raises(ExpertError):
        svf.merge(factors, bad, True)
    with pytest.raises(ConfigError):
        svf.init_params(factors, factors.names, "tanh")
