"""Shared helpers for the SVF / expert / RL tests: tiny decomposed models and a fake task."""

from __future__ import annotations

from t2cli.tasks.base import Example, Score


def decomposed(model, tmp_path, targets="all", name="tiny"):
    from t2cli.arch import select_targets
    from t2cli.svd import decompose, find_cache

    model.requires_grad_(False)
    res = decompose(model, name, select_targets(model, targets), out_dir=tmp_path / f"svd-{name}")
    return find_cache(model, name, res.path)


class FakeTask:
    """A task with numbered prompts; ``scorer(completion, example) -> bool`` decides correctness."""

    name = "fake"
    category = "reasoning"
    splits = ("train", "validation")

    def __init__(self, n=8, scorer=None, max_new_tokens=3):
        self.n, self.max_new_tokens = n, max_new_tokens
        self.scorer = scorer or (lambda c, e: c.startswith(e.gold))

    def load(self, split, data_dir=None, limit=None):
        out = [
            Example(f"{split}-{i}", f"q{i}", ({"role": "user", "content": f"What is {i} + {i}?"},), "A",
                    f"The answer is {2 * i}.")
            for i in range(self.n)
        ]
        return out if limit is None else out[:limit]

    def score_batch(self, completions, examples):
        return [Score(bool(self.scorer(c, e)), c) for c, e in zip(completions, examples)]
