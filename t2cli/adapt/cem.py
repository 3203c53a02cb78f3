"""A small, generic cross-entropy method (CEM) maximiser over real vectors.

Each iteration samples ``population`` vectors from N(mean, std²) (diagonal), evaluates ``fitness`` on each, keeps the
top ``elite_frac`` and refits the mean to the elites and the std to ``smoothing`` · old std + (1 − smoothing) · elite
std (floored at ``min_std``): plain refitting collapsed the std within a few iterations on a 3-D quadratic and
stopped short of the optimum; smoothing the std (a standard CEM variant) fixes it. The best vector ever evaluated is returned, with a trajectory of one record per iteration.

``fitness`` returns a float or a tuple compared lexicographically (the few-shot search returns
(accuracy, mean log-likelihood) so that ties in accuracy on 10 shots are broken by likelihood). Sampling uses a
private ``numpy`` generator seeded with ``seed``; the global RNGs are untouched. The paper runs up to 100 iterations;
the caller picks the budget.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from ..errors import ConfigError


def _plain(value):
    return tuple(float(v) for v in value) if isinstance(value, (tuple, list)) else float(value)


def _key(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def check_cem(dim: int, population: int, elite_frac: float, iterations: int, init_std) -> None:
    p = []
    if dim < 1:
        p.append(f"dim={dim} (use >= 1)")
    if population < 2:
        p.append(f"population={population} (use >= 2)")
    if not 0 < elite_frac <= 1:
        p.append(f"elite_frac={elite_frac} (use 0 < elite_frac <= 1)")
    elif max(1, int(round(population * elite_frac))) < 1:
        p.append("elite_frac keeps no vector: raise it or the population")
    if iterations < 1:
        p.append(f"iterations={iterations} (use >= 1)")
    stds = init_std if isinstance(init_std, Sequence) else [init_std]
    if any(not (math.isfinite(s) and s > 0) for s in stds):
        p.append(f"init_std={init_std} (use a positive number)")
    if p:
        raise ConfigError("bad CEM settings: " + "; ".join(p))


def cem(fitness: Callable, dim: int, population: int = 8, elite_frac: float = 0.25, iterations: int = 10,
        init_mean: float | Sequence[float] = 0.0, init_std: float | Sequence[float] = 0.5, min_std: float = 1e-3,
        smoothing: float = 0.5, seed: int = 0, on_iteration: Callable[[dict], None] | None = None):
    """Maximise ``fitness(x)`` over x in R^dim; returns (best x as a list, trajectory).

    ``trajectory[-1]["best"]`` is the best fitness (as a list); every record holds the iteration's sampling mean and
    std, all fitness values, the iteration's best and the best so far."""
    import numpy as np

    check_cem(dim, population, elite_frac, iterations, init_std)
    rng = np.random.default_rng(seed)
    mean = np.broadcast_to(np.asarray(init_mean, dtype=float), (dim,)).copy()
    std = np.broadcast_to(np.asarray(init_std, dtype=float), (dim,)).copy()
    n_elite = max(1, int(round(population * elite_frac)))
    best_x, best_f, trajectory = None, None, []
    for it in range(iterations):
        xs = mean + std * rng.standard_normal((population, dim))
        fs = [_plain(fitness(x.copy())) for x in xs]
        order = sorted(range(population), key=lambda i: _key(fs[i]), reverse=True)
        elites = xs[order[:n_elite]]
        if best_f is None or _key(fs[order[0]]) > _key(best_f):
            best_x, best_f = xs[order[0]].copy(), fs[order[0]]
        record = {"iteration": it + 1, "mean": mean.tolist(), "std": std.tolist(),
                  "fitness": [list(_key(f)) for f in fs], "iteration_best": list(_key(fs[order[0]])),
                  "best": list(_key(best_f)), "best_x": best_x.tolist()}
        mean = elites.mean(axis=0)
        std = np.maximum(smoothing * std + (1 - smoothing) * elites.std(axis=0), min_std)
        trajectory.append(record)
        if on_iteration is not None:
            on_iteration(record)
    return best_x.tolist(), trajectory
