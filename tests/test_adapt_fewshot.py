"""Few-shot adaptation: shots never overlap the evaluation examples, mixing happens in scale space (one-hot α gives
back the expert exactly), per-layer groups, and the saved z' reproduces the searched weights."""

from __future__ import annotations

import pytest
import torch

from _svf_helpers import decomposed
from t2cli import svf
from t2cli.adapt import fewshot as fs
from t2cli.errors import ConfigError
from t2cli.tasks.base import Example


def _examples(n):
    return [Example(f"ex-{i}", f"q{i}", ({"role": "user", "content": f"q{i}"},), "A", "A") for i in range(n)]


def test_shots_and_evaluation_never_overlap():
    ex = _examples(50)
    shots, rest = fs.draw_shots(ex, 10, seed=3)
    assert len(shots) == 10 and len(rest) == 40
    assert not {e.id for e in shots} & {e.id for e in rest}
    assert {e.id for e in shots} | {e.id for e in rest} == {e.id for e in ex}
    assert [e.id for e in rest] == [e.id for e in ex if e not in shots]  # the split's order is kept
    assert fs.draw_shots(ex, 10, seed=3)[0] == shots  # seeded
    assert fs.draw_shots(ex, 10, seed=4)[0] != shots
    assert shots != ex[:10]  # drawn, not the head of the split
    with pytest.raises(ConfigError, match="fewer shots"):
        fs.draw_shots(ex, 50)


@pytest.fixture
def two_experts(tiny_llama, tmp_path):
    model, _ = tiny_llama
    cache = decomposed(model, tmp_path, targets="mlp")
    factors = svf.Factors.load(cache, list(cache.matrices), model=model)
    experts = [svf.init_params(factors, factors.names, seed=s, noise_std=0.7) for s in (1, 2)]
    return model, factors, experts


class _E:  # the bits of experts.Expert the few-shot code reads
    def __init__(self, params, task="t"):
        self.params, self.meta, self.path = params, {"task": task}, f"{task}.safetensors"


def test_one_hot_mix_in_scale_space_is_the_expert(two_experts):
    _, factors, experts = two_experts
    scales = [svf.scales(p) for p in experts]
    groups = fs.alpha_groups(factors.names, "per-vector")
    mixed = fs.mix(scales, {"all": [0.0, 1.0]}, groups)
    for n in factors.names:
        assert torch.allclose(mixed[n], scales[1][n], atol=1e-7)
    w_mix = svf.merge(factors, mixed, True)
    w_exp = svf.merge(factors, svf.scales(experts[1]), experts[1].renormalise)
    assert all(torch.allclose(w_mix[n], w_exp[n], atol=1e-6) for n in w_exp)
    # the reference code's raw-parameter mix differs from the scale mix for a non-trivial α
    half = fs.mix(scales, {"all": [0.5, 0.5]}, groups)
    raw = {n: torch.sigmoid(0.5 * experts[0].z[n] + 0.5 * experts[1].z[n]) * 2 for n in factors.names}
    assert any(not torch.allclose(half[n], raw[n], atol=1e-4) for n in factors.names)


def test_alpha_vector_layout_and_normalisation(two_experts):
    _, factors, _ = two_experts
    groups = fs.alpha_groups(factors.names, "per-layer")
    order = fs.group_order(groups)
    assert order == ["0", "1"] and groups["model.layers.1.mlp.up_proj.weight"] == "1"
    alphas = fs.vector_to_alphas([1.0, 3.0, 2.0, 2.0], 2, order, normalise=True)
    assert alphas == {"0": [0.25, 0.75], "1": [0.5, 0.5]}
    assert fs.vector_to_alphas([1.0, 3.0], 2, ["all"], normalise=False) == {"all": [1.0, 3.0]}
    assert fs.vector_to_alphas([1.0, -1.0], 2, ["all"], normalise=True) == {"all": [0.5, 0.5]}  # Σα ≈ 0 → uniform


def test_saved_mix_reproduces_the_weights(two_experts, tmp_path):
    from t2cli.experts import load_expert

    _, factors, experts = two_experts
    scales = [svf.scales(p) for p in experts]
    groups = fs.alpha_groups(factors.names, "per-layer")
    alphas = {"0": [0.3, 0.9], "1": [1.2, -0.1]}
    z = fs.mix(scales, alphas, groups)
    w = svf.merge(factors, z, True)
    res = fs.FewShotResult(alphas, [0.5, -1.0], w, z)
    path = fs.save_mixed(tmp_path / "mix.safetensors", factors, res, [_E(p) for p in experts], True,
                         {"base_model": "tiny", "model_fingerprint": "f" * 16}, "arc_easy", fs.FewShotConfig(), ["s1"])
    loaded = load_expert(path)
    assert loaded.params.parameterisation == "linear" and loaded.meta["training"]["alphas"] == alphas
    w2 = svf.merge(factors, svf.scales(loaded.params), loaded.params.renormalise)
    assert all(torch.allclose(w[n], w2[n], atol=1e-5) for n in w)


def test_mixed_parameterisations_are_refused(two_experts):
    _, factors, experts = two_experts
    lin = svf.init_params(factors, factors.names, "linear", seed=3)
    with pytest.raises(ConfigError, match="parameterisations"):
        fs.renormalise_mode([_E(experts[0]), _E(lin)])


def test_bad_options_are_listed_together():
    with pytest.raises(ConfigError) as err:
        fs.FewShotConfig(shots=0, alpha_mode="diag", population=1, iterations=0).validate()
    assert all(k in str(err.value) for k in ("--shots", "--alpha-mode", "population", "iterations"))


def test_search_improves_fitness_on_a_fake_task(two_experts, tiny_tokenizer):
    """End to end on a tiny model: fitness = (accuracy, log-likelihood); the kept α is the best one evaluated."""
    from t2cli.generation import HFBackend
    from _svf_helpers import FakeTask

    model, factors, experts = two_experts
    task = FakeTask(n=4, scorer=lambda c, e: True)
    shots = task.load("train")
    cfg = fs.FewShotConfig(shots=4, population=3, iterations=2, max_new_tokens=2, batch_size=4)
    res = fs.search(HFBackend(model, tiny_tokenizer), model, tiny_tokenizer, factors, [_E(p) for p in experts], task,
                    shots, cfg)
    assert len(res.trajectory) == 2 and res.fitness[0] == 1.0
    assert tuple(res.fitness) == max(tuple(f) for r in res.trajectory for f in r["fitness"])
    assert set(res.alphas) == {"all"} and abs(sum(res.alphas["all"]) - 1) < 1e-9
