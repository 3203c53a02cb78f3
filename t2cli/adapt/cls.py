"""Strategy ``cls``: a classification expert z^c (trained by `t2 classify-train`) does pass 1.

Same prompt layout and strict parsing as the ``prompt`` strategy, but W'(z^c) answers it and the label set is the
classifier's own (stored in its metadata), without "others": the classifier was trained to pick one of the experts.
A classifier label with no matching expert, and any unparsable answer, routes to the base weights (never to the
last loaded expert, as the public reference code did). z^c is composed once and cached like every expert.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import ExpertError
from .dispatch import Router

__all__ = ["load_classifier", "cls_router"]


def load_classifier(path: str | Path):
    """Load a classifier expert; a plain expert (or one without labels) is an ExpertError with the fix."""
    from ..experts import load_expert

    clf = load_expert(path)
    if clf.meta.get("kind") != "classifier" or not clf.meta.get("labels"):
        raise ExpertError(f"{path} is a {clf.meta.get('kind')} expert, not a classifier: pass a file made by "
                          "`t2 classify-train` to --classifier")
    return clf


def cls_router(backend: Any, model: Any, model_name: str, experts: Mapping[str, Any], classifier, svd_cache=None,
               batch_size: int = 8) -> Router:
    """A router whose pass 1 is the classifier expert answering the adaptation prompt."""
    return Router(backend, model, model_name, experts, "cls", classifier, svd_cache, batch_size)
