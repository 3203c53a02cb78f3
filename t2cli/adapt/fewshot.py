"""Strategy ``fewshot``: search mixing coefficients α with CEM so that z' = Σ_k α_k z_k answers a few shots well.

Pass 1 of the paper's third strategy. ``shots`` examples are drawn (seeded, by a sha256 order of their ids) from the
evaluation split and **removed** from it: they are never scored afterwards (the public reference code drew its
few-shot examples from the evaluation set and then scored them too). Fitness of α = greedy accuracy on the shots,
ties broken by the mean token log-likelihood of the gold solutions (``Example.solution``) under W'(z').

Mixing happens in **scale space**: z' = Σ α_k · scales(z_k) (``svf.mix_scales`` of ``svf.scales``), never on raw
pre-sigmoid parameters (another reference-code defect: sigmoid(Σ α p_k) is not a mixture of the experts). W'(z') is
composed with ``svf.merge``, renormalised (ΣS unchanged) when the experts use the sigmoid parameterisation.

α layout (``alpha_mode``): ``per-vector`` — one α_k per expert, shared by every matrix (the paper's K numbers);
``per-layer`` — one α_k per expert and transformer layer (matrices without a layer index share one group).
``normalise`` divides α by Σα (the mix stays an interpolation; with a sum near 0 the mix falls back to uniform).
Defaults are sized for a CPU: population 8, 10 iterations (the paper runs up to 100), init mean 1/K, init std 0.3.

The result is saved as an ordinary expert with the ``linear`` parameterisation whose vectors are the mixed scales
with the renormalisation factor already multiplied in, so loading it reproduces exactly the searched W'(z').
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import ConfigError

log = logging.getLogger(__name__)

ALPHA_MODES = ("per-vector", "per-layer")
_LAYER_RE = re.compile(r"\.layers?\.(\d+)\.|\.h\.(\d+)\.|\.blocks?\.(\d+)\.")


@dataclass
class FewShotConfig:
    shots: int = 10
    alpha_mode: str = "per-vector"
    normalise: bool = True
    population: int = 8
    elite_frac: float = 0.25
    iterations: int = 10
    init_mean: float | None = None  # None: 1/K
    init_std: float = 0.3
    seed: int = 0
    max_new_tokens: int | None = None
    batch_size: int = 8

    def validate(self) -> None:
        from .cem import check_cem

        p = []
        if self.shots < 1:
            p.append(f"--shots {self.shots} (use >= 1)")
        if self.alpha_mode not in ALPHA_MODES:
            p.append(f"--alpha-mode {self.alpha_mode} (use {' or '.join(ALPHA_MODES)})")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            p.append(f"--max-new-tokens {self.max_new_tokens} (use >= 1)")
        if self.init_mean is not None and not math.isfinite(self.init_mean):
            p.append(f"--init-mean {self.init_mean} (use a finite number)")
        try:
            check_cem(1, self.population, self.elite_frac, self.iterations, self.init_std)
        except ConfigError as exc:
            p.append(str(exc).removeprefix("bad CEM settings: "))
        if p:
            raise ConfigError("bad few-shot options: " + "; ".join(p))


def draw_shots(examples: Sequence, shots: int, seed: int = 0) -> tuple[list, list]:
    """(shots, rest): ``shots`` examples chosen by a seeded sha256 order of their ids, and every other example in
    its original order. The two never share an id."""
    from ..tasks.base import seeded_order

    if shots >= len(examples):
        raise ConfigError(f"--shots {shots} leaves nothing to evaluate in a split of {len(examples)}: use fewer shots")
    chosen = set(seeded_order([e.id for e in examples], seed)[:shots])
    picked = [examples[i] for i in sorted(chosen)]
    rest = [e for i, e in enumerate(examples) if i not in chosen]
    assert not {e.id for e in picked} & {e.id for e in rest}
    return picked, rest


def layer_key(name: str) -> str:
    m = _LAYER_RE.search(name)
    return next(g for g in m.groups() if g is not None) if m else "other"


def alpha_groups(names: Sequence[str], mode: str) -> dict[str, str]:
    """{matrix name: group}; one group for ``per-vector``, one per layer for ``per-layer``."""
    if mode == "per-vector":
        return {n: "all" for n in names}
    if mode == "per-layer":
        return {n: layer_key(n) for n in names}
    raise ConfigError(f"alpha mode {mode!r}: use {' or '.join(ALPHA_MODES)}")


def group_order(groups: dict[str, str]) -> list[str]:
    return sorted(set(groups.values()), key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g))


def vector_to_alphas(x: Sequence[float], n_experts: int, order: Sequence[str], normalise: bool) -> dict[str, list[float]]:
    """The CEM vector (len(order) × K, group-major) as {group: [α_1..α_K]}, divided by Σα when ``normalise``."""
    out = {}
    for g_i, g in enumerate(order):
        a = [float(v) for v in x[g_i * n_experts : (g_i + 1) * n_experts]]
        if normalise:
            s = sum(a)
            a = [v / s for v in a] if abs(s) > 1e-6 else [1.0 / n_experts] * n_experts
        out[g] = a
    return out


def mix(expert_scales: Sequence[dict], alphas: dict[str, list[float]], groups: dict[str, str]) -> dict:
    """z' per matrix: Σ_k α_{group(name),k} · scale_k[name] (in scale space, via ``svf.mix_scales``)."""
    from .. import svf

    return svf.mix_scales(expert_scales, {n: alphas[g] for n, g in groups.items()})


def renormalise_mode(experts: Sequence) -> bool:
    """True for sigmoid experts (ΣS kept), False for linear ones; a mixture of both is a ConfigError."""
    kinds = {e.params.parameterisation for e in experts}
    if len(kinds) > 1:
        raise ConfigError("the experts use different parameterisations (sigmoid and linear): mix experts of one kind")
    from .. import svf

    return svf.renormalises(kinds.pop())


def baked_scales(factors, scale_map: dict, renormalise: bool) -> dict:
    """Scales that give the same W' with no renormalisation: scale · ΣS / Σ(S ⊙ scale) per matrix."""
    if not renormalise:
        return {n: s.detach().float().cpu().clone() for n, s in scale_map.items()}
    out = {}
    for n, s in scale_map.items():
        S = factors.S(n).float().cpu()
        s = s.detach().float().cpu()
        out[n] = s * (S.sum() / (S * s).sum())
    return out


def mean_loglik(model, tokenizer, weights: dict, examples: Sequence, batch_size: int = 8) -> float:
    """Mean over examples of the mean token log-likelihood of ``Example.solution`` under ``weights``."""
    import torch

    from .. import rl_loss

    device = next(model.parameters()).device
    vals = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            batch = rl_loss.build_batch(tokenizer, [e.messages for e in chunk], [e.solution for e in chunk],
                                        [True] * len(chunk), device=device)
            logp, _, _ = rl_loss.sequence_terms(model, weights, batch, kl=False, norm="mean")
            vals.extend(float(v) for v in logp)
    return sum(vals) / max(1, len(vals))


@dataclass
class FewShotResult:
    alphas: dict  # {group: [α_k]}
    fitness: list  # [accuracy, mean log-likelihood] of the best α on the shots
    weights: dict  # composed W'(z') (detached)
    scales: dict  # z' (mixed scales, before renormalisation)
    trajectory: list = field(default_factory=list)
    seconds_per_iteration: float = 0.0


def search(backend, model, tokenizer, factors, experts: Sequence, task, shots: Sequence, cfg: FewShotConfig,
           on_iteration: Callable[[dict], None] | None = None, progress: Callable[[int], None] | None = None) -> FewShotResult:
    """CEM over α; every fitness call composes W'(z'), answers the shots greedily and scores them."""
    import time

    from .. import svf
    from ..evaluate import settings_for
    from ..generation import GenerationSettings
    from .cem import cem

    cfg.validate()
    renorm = renormalise_mode(experts)
    expert_scales = [{n: s.detach() for n, s in svf.scales(e.params).items()} for e in experts]
    names = list(dict.fromkeys(n for s in expert_scales for n in s))
    groups = alpha_groups(names, cfg.alpha_mode)
    order = group_order(groups)
    k = len(experts)
    settings = settings_for(task, GenerationSettings(batch_size=cfg.batch_size, seed=cfg.seed), cfg.max_new_tokens)
    shots = list(shots)

    def weights_for(x):
        alphas = vector_to_alphas(x, k, order, cfg.normalise)
        z = mix(expert_scales, alphas, groups)
        return alphas, z, svf.merge(factors, z, renorm)

    def fitness(x) -> tuple[float, float]:
        _, _, w = weights_for(x)
        backend.set_weights(w)
        try:
            outs = backend.generate([list(e.messages) for e in shots], settings)
        finally:
            backend.set_weights(None)
        acc = sum(s.correct for s in task.score_batch(outs, shots)) / len(shots)
        ll = mean_loglik(model, tokenizer, w, shots, cfg.batch_size)
        if progress is not None:
            progress(1)
        return (acc, ll if math.isfinite(ll) else -math.inf)

    def logged(record):
        record["alphas"] = vector_to_alphas(record["best_x"], k, order, cfg.normalise)
        record["seconds"] = time.perf_counter() - t_iter[0]
        t_iter[0] = time.perf_counter()
        if on_iteration is not None:
            on_iteration(record)

    t_iter = [time.perf_counter()]
    t0 = time.perf_counter()
    init_mean = cfg.init_mean if cfg.init_mean is not None else 1.0 / k
    best_x, trajectory = cem(fitness, len(order) * k, cfg.population, cfg.elite_frac, cfg.iterations, init_mean,
                             cfg.init_std, seed=cfg.seed, on_iteration=logged)
    alphas, z, w = weights_for(best_x)
    return FewShotResult(alphas, trajectory[-1]["best"], w, z, trajectory,
                         (time.perf_counter() - t0) / max(1, len(trajectory)))


def save_mixed(path: Path, factors, result: FewShotResult, experts: Sequence, renorm: bool, meta_base: dict,
               task_name: str, cfg: FewShotConfig, shot_ids: Sequence[str]) -> Path:
    """Save z' as a ``linear`` expert whose scales include the renormalisation (so it loads to the same W')."""
    from .. import svf
    from ..experts import build_meta, save_expert

    params = svf.SVFParams(baked_scales(factors, result.scales, renorm), "linear", svf.DEFAULT_MAX_MULT)
    training = {"method": "fewshot-cem", "alphas": result.alphas, "alpha_mode": cfg.alpha_mode,
                "experts": [str(e.path) for e in experts], "expert_tasks": [e.meta.get("task") for e in experts],
                "renormalised_from_sigmoid": renorm, "shots": list(shot_ids), "fitness": result.fitness,
                "config": asdict(cfg)}
    meta = build_meta(kind="expert", task=task_name, training=training, val_score=result.fitness[0],
                      targets=experts[0].meta.get("targets"), layers=experts[0].meta.get("layers"), **meta_base)
    return save_expert(path, params, meta)


def write_trajectory(path: Path, trajectory: Sequence[dict]) -> Path:
    from ..paths import atomic_write_text

    atomic_write_text(Path(path), "".join(json.dumps(r) + "\n" for r in trajectory))
    return Path(path)
