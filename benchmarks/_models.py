"""Model loading shared by the benchmarks: the embedded default (or any spec) via t2, or a tiny random Llama."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark_model(model: str | None, tiny: bool, device: str | None = None, dtype: str | None = None):
    """(model, tokenizer, name) with gradients off; ``tiny`` builds the tests' tiny Llama (hidden 64), no files."""
    if tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_model, build_tokenizer

        tok = build_tokenizer()
        net = build_model("llama", len(tok), hidden=64)
        net.requires_grad_(False)
        return net, tok, "tiny-llama"
    from t2cli.models import load_model

    lm = load_model(model, device=device, dtype=dtype)
    return lm.model, lm.tokenizer, lm.ref.name
