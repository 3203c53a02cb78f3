"""The generic CEM: finds the optimum of a synthetic fitness, breaks ties lexicographically, is seeded, and lists
every bad setting at once."""

from __future__ import annotations

import pytest

from t2cli.adapt.cem import cem
from t2cli.errors import ConfigError


def test_cem_finds_the_optimum_of_a_quadratic():
    target = [0.7, -1.2, 2.0]

    def fitness(x):
        return -sum((a - b) ** 2 for a, b in zip(x, target))

    best, traj = cem(fitness, 3, population=32, elite_frac=0.25, iterations=25, init_mean=0.0, init_std=1.5, seed=1)
    assert all(abs(a - b) < 0.05 for a, b in zip(best, target))
    assert len(traj) == 25 and traj[-1]["best"][0] > -0.01
    assert [r["iteration"] for r in traj] == list(range(1, 26))
    bests = [r["best"][0] for r in traj]
    assert bests == sorted(bests)  # the best so far never gets worse


def test_ties_are_broken_by_the_second_fitness_value():
    # accuracy-like plateau: only the sign of x matters for the first value; the second prefers x near 3
    best, traj = cem(lambda x: (float(x[0] > 0), -abs(x[0] - 3)), 1, population=16, iterations=15,
                     init_mean=-1.0, init_std=2.0, seed=0)
    assert best[0] > 0 and abs(best[0] - 3) < 0.2
    assert traj[-1]["best"][0] == 1.0


def test_cem_is_deterministic_for_a_seed():
    f = lambda x: -(x[0] - 1) ** 2  # noqa: E731
    assert cem(f, 1, iterations=3, seed=5)[0] == cem(f, 1, iterations=3, seed=5)[0]
    assert cem(f, 1, iterations=3, seed=5)[0] != cem(f, 1, iterations=3, seed=6)[0]


def test_bad_settings_are_listed_together():
    with pytest.raises(ConfigError) as err:
        cem(lambda x: 0.0, 0, population=1, elite_frac=0, iterations=0, init_std=-1)
    msg = str(err.value)
    assert all(k in msg for k in ("dim", "population", "elite_frac", "iterations", "init_std"))
