"""Expert files: one safetensors file per expert (or classifier), self-describing through its metadata.

Tensors: one 1-D float32 vector per adapted matrix, keyed by the HF parameter name, holding the *raw* parameters
(pre-sigmoid p for ``sigmoid``, z for ``linear``) so training can continue from them; ``svf.scales`` turns them into
scales. Metadata (safetensors allows only str -> str; every value is JSON): format, kind (expert|classifier),
base_model, model_fingerprint, svd_fingerprint, targets, layers, parameterisation, max_mult, task, labels,
training, val_score, t2_version. Files are written to a temporary sibling and renamed, so a crash never leaves
a half-written expert under the final name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ExpertError
from .paths import temp_path_for
from .svf import SVFParams

FORMAT = 1
KINDS = ("expert", "classifier")
REQUIRED = ("format", "kind", "base_model", "model_fingerprint", "parameterisation", "max_mult")


@dataclass
class Expert:
    params: SVFParams
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.meta.get("task") or (self.path.stem if self.path else "expert")


def build_meta(
    *,
    kind: str = "expert",
    base_model: str,
    model_fingerprint: str,
    svd_fingerprint: str | None = None,
    targets: str | list | None = None,
    layers: str | None = None,
    task: str | None = None,
    labels: list[str] | None = None,
    training: dict | None = None,
    val_score: float | None = None,
) -> dict:
    """The metadata dict ``save_expert`` expects (parameterisation and max_mult are filled from the params)."""
    if kind not in KINDS:
        raise ExpertError(f"unknown expert kind {kind!r}: use one of {', '.join(KINDS)}")
    return {
        "kind": kind, "base_model": base_model, "model_fingerprint": model_fingerprint,
        "svd_fingerprint": svd_fingerprint or model_fingerprint, "targets": targets, "layers": layers,
        "task": task, "labels": labels, "training": training or {}, "val_score": val_score,
    }


def save_expert(path, params: SVFParams, meta: dict) -> Path:
    """Write ``params`` and ``meta`` to ``path`` atomically (temporary file + rename)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    meta = dict(meta)
    meta.update(format=FORMAT, parameterisation=params.parameterisation, max_mult=float(params.max_mult),
                t2_version=__version__)
    meta.setdefault("kind", "expert")
    missing = [k for k in REQUIRED if meta.get(k) in (None, "")]
    if missing:
        raise ExpertError(f"expert metadata lacks {', '.join(missing)}: build it with t2cli.experts.build_meta")
    tensors = {n: t.detach().to("cpu", torch.float32).contiguous() for n, t in params.z.items()}
    bad = [n for n, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise ExpertError(f"refusing to save an expert with non-finite values in {bad[0]}: the training run diverged")
    try:
        encoded = {k: json.dumps(v) for k, v in meta.items()}
    except TypeError as exc:
        raise ExpertError(f"expert metadata is not JSON-serialisable ({exc}): pass plain values") from None
    tmp = temp_path_for(path)
    try:
        save_file(tensors, str(tmp), metadata=encoded)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_expert(path, device="cpu") -> Expert:
    """Read an expert file; a missing, truncated or foreign file is an ExpertError that says what to do."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ExpertError(f"expert file {path} not found: check the path or train one with `t2 train`")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            raw_meta = fh.metadata() or {}
            z = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise ExpertError(f"expert file {path} is corrupt or not a safetensors file ({exc}): re-train or re-copy it") from None
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except json.JSONDecodeError:
        raise ExpertError(f"expert file {path} has unreadable metadata: it was not written by t2; re-train it") from None
    missing = [k for k in REQUIRED if k not in meta]
    if missing or not z:
        what = f"metadata {', '.join(missing)}" if missing else "vectors"
        raise ExpertError(f"expert file {path} lacks {what}: it was not written by t2 (format {FORMAT}); re-train it")
    if meta["format"] != FORMAT:
        raise ExpertError(f"expert file {path} has format {meta['format']}, this t2 reads {FORMAT}: upgrade t2 or re-train it")
    if any(t.dim() != 1 for t in z.values()):
        raise ExpertError(f"expert file {path} holds non-vector tensors: it is not an SVF expert")
    params = SVFParams(z, meta["parameterisation"], float(meta["max_mult"]))
    return Expert(params, meta, path)


def check_compatible(expert: Expert, model_fingerprint: str, cache=None, model_name: str | None = None) -> None:
    """Raise ExpertError unless ``expert`` was trained on this model (and fits ``cache``'s SVD, if given)."""
    meta = expert.meta
    where = expert.path or "the expert"
    if meta.get("model_fingerprint") != model_fingerprint:
        raise ExpertError(
            f"{where} was trained on {meta.get('base_model')!r} (fingerprint {str(meta.get('model_fingerprint'))[:12]}), "
            f"not on {model_name or 'this model'} ({model_fingerprint[:12]}): pass --model {meta.get('base_model')} "
            "or train an expert for this model (`t2 transfer` moves experts between models)"
        )
    if cache is None:
        return
    if meta.get("svd_fingerprint") not in (None, cache.fingerprint):
        raise ExpertError(f"{where} was trained against another SVD cache than {cache.path}: run `t2 decompose` for its base model")
    missing = [n for n in expert.params.z if n not in cache.matrices]
    if missing:
        raise ExpertError(
            f"{where} adapts {len(missing)} matrices absent from the SVD cache {cache.path} (e.g. {missing[0]}): "
            f"run `t2 decompose` with --targets {meta.get('targets') or 'all'} --layers {meta.get('layers') or 'all'}"
        )
    for n, z in expert.params.z.items():
        rank = int(cache.matrices[n]["rank"])
        if z.shape[0] != rank:
            raise ExpertError(f"{where}: {n} has {z.shape[0]} values but the cached SVD has rank {rank}: it belongs to another model")


def describe(expert: Expert) -> dict[str, Any]:
    """A short summary for `t2 info`-style output."""
    m = expert.meta
    return {"kind": m.get("kind"), "task": m.get("task"), "base_model": m.get("base_model"),
            "matrices": len(expert.params.z), "params": expert.params.num_params(),
            "parameterisation": m.get("parameterisation"), "val_score": m.get("val_score")}
