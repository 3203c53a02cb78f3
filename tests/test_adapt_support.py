"""Helpers shared by the adaptation tests (tiny decomposed models, tiny experts and classifiers made on the fly),
plus a check that the helpers themselves make loadable, compatible experts."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_experts(model_dir: Path, out: Path, tasks=("gsm8k", "arc_easy"), noise=0.5, classifier_labels=None,
                 parameterisation="sigmoid", targets="mlp"):
    """Decompose the saved tiny model into its default cache (under the per-test T2_HOME) and write one random
    expert per task (plus a classifier when ``classifier_labels`` is given). Returns ({task: path}, clf path|None)."""
    from t2cli import svf
    from t2cli.arch import select_targets
    from t2cli.experts import build_meta, save_expert
    from t2cli.models import load_model
    from t2cli.svd import decompose, find_cache

    loaded = load_model(str(model_dir), device="cpu", dtype="float32")
    name = loaded.ref.name
    chosen = select_targets(loaded.model, targets)
    decompose(loaded.model, name, chosen)
    cache = find_cache(loaded.model, name)
    names = [t.name for t in chosen]
    base = dict(base_model=name, model_fingerprint=cache.fingerprint, svd_fingerprint=cache.fingerprint,
                targets=targets, layers="all")
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, task in enumerate(tasks):
        params = svf.init_params(cache, names, parameterisation, seed=i + 1, noise_std=noise)
        paths[task] = save_expert(out / f"{task}.safetensors", params, build_meta(task=task, **base))
    clf = None
    if classifier_labels:
        params = svf.init_params(cache, names, parameterisation, seed=99, noise_std=noise)
        clf = save_expert(out / "classifier.safetensors", params,
                          build_meta(kind="classifier", task="classify", labels=list(classifier_labels), **base))
    return paths, clf


def test_helpers_make_compatible_experts(tiny_model_dirs, tmp_path):
    from t2cli.evaluate import expert_weights
    from t2cli.experts import load_expert
    from t2cli.models import load_model

    paths, clf = tiny_experts(tiny_model_dirs["llama"], tmp_path / "ex", classifier_labels=["math", "reasoning"])
    loaded = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype="float32")
    w = expert_weights(load_expert(paths["gsm8k"]), loaded.model, loaded.ref.name)
    params = dict(loaded.model.named_parameters())
    assert w and all(n.endswith("mlp.down_proj.weight") or "mlp" in n for n in w)
    assert any(not torch.allclose(w[n], params[n]) for n in w)
    assert load_expert(clf).meta["labels"] == ["math", "reasoning"]
