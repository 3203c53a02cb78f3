"""The SVD cache: W = U diag(S) Vᵀ for every targeted matrix, computed once and stored on disk.

Layout: ``<dir>/manifest.json`` plus one safetensors shard per matrix (``shards/<param>.safetensors`` holding
``U``, ``S``, ``Vh``). SVD runs in float32 (as PEFT does) and the factors are stored in a chosen dtype. Each shard is
written to a temporary file and renamed, then recorded in the manifest with its SHA-256, so an interrupted run resumes
where it stopped and never leaves a shard that looks complete but is not. Only one matrix's factors are in memory at
a time. The default folder is keyed by the model's name and weight fingerprint, so later commands find it unaided.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import __version__
from .arch import Target, all_targets
from .errors import CacheError
from .paths import atomic_write_json, slug, t2_home, temp_path_for

log = logging.getLogger(__name__)

FORMAT = 1
DTYPES = ("float32", "bfloat16", "float16")


def model_fingerprint(model) -> str:
    """SHA-256 over the names, shapes and a strided sample of every adaptable matrix.

    Samples are rounded to bfloat16 first, so the same checkpoint loaded in float32 or bfloat16 gets the same
    fingerprint; reading a sample (not the whole tensor) keeps this cheap for multi-billion-parameter models.
    """
    import torch

    params = dict(model.named_parameters())
    h = hashlib.sha256()
    for target in all_targets(model):
        w = params[target.name].detach().reshape(-1)
        step = max(1, w.numel() // 4096)
        sample = w[::step][:4096].to("cpu", torch.bfloat16).view(torch.int16).numpy().tobytes()
        h.update(f"{target.name}:{tuple(target.shape)}".encode())
        h.update(sample)
    return h.hexdigest()


def default_cache_dir(model_name: str, fingerprint: str) -> Path:
    return t2_home() / "svd" / f"{slug(model_name)}-{fingerprint[:12]}"


def _write_bytes(path: Path, blob: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(blob)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _shard_rel(name: str) -> str:
    return f"shards/{name}.safetensors"


@dataclass
class SVDCache:
    """A cache folder and its manifest."""

    path: Path
    manifest: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.manifest["model_fingerprint"]

    @property
    def matrices(self) -> dict[str, dict]:
        return self.manifest["matrices"]

    @classmethod
    def open(cls, path: Path) -> "SVDCache":
        mpath = Path(path) / "manifest.json"
        if not mpath.is_file():
            raise CacheError(f"no SVD cache at {path}: run `t2 decompose MODEL --out {path}`")
        try:
            manifest = json.loads(mpath.read_text())
            manifest["model_fingerprint"], manifest["matrices"]  # noqa: B018 - presence check
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CacheError(f"SVD cache manifest {mpath} is corrupt ({exc}): delete {path} and run `t2 decompose` again") from None
        if manifest.get("format") != FORMAT:
            raise CacheError(f"SVD cache {path} has format {manifest.get('format')}, expected {FORMAT}: re-run `t2 decompose --force`")
        return cls(Path(path), manifest)

    def check_model(self, fingerprint: str, model_name: str) -> None:
        if self.fingerprint != fingerprint:
            raise CacheError(
                f"SVD cache {self.path} belongs to model {self.manifest.get('model')!r} "
                f"(fingerprint {self.fingerprint[:12]}), not {model_name!r} ({fingerprint[:12]}): "
                "point to the right cache or run `t2 decompose` for this model"
            )

    def require(self, names: list[str]) -> None:
        missing = [n for n in names if n not in self.matrices]
        if missing:
            raise CacheError(
                f"SVD cache {self.path} lacks {len(missing)} matrices (e.g. {missing[0]}): "
                f"run `t2 decompose {self.manifest.get('model')}` with the same --targets/--layers"
            )

    def load(self, name: str, device="cpu", dtype=None):
        """(U, S, Vh) of one matrix; a truncated or unreadable shard is a CacheError."""
        from safetensors.torch import load_file

        if name not in self.matrices:
            self.require([name])
        shard = self.path / self.matrices[name]["shard"]
        try:
            tensors = load_file(shard, device=str(device))
        except Exception as exc:  # safetensors raises several types for truncated files
            raise CacheError(f"SVD shard {shard} is unreadable ({exc}): run `t2 decompose --verify` then re-run `t2 decompose`") from None
        out = tuple(tensors[k] for k in ("U", "S", "Vh"))
        if dtype is not None:
            out = tuple(t.to(dtype) for t in out)
        return out

    def verify(self, model=None, checksums: bool = True) -> list[str]:
        """Problems found (empty list = good): missing or corrupt shards, shape mismatches, wrong model."""
        problems = []
        params = dict(model.named_parameters()) if model is not None else {}
        if model is not None and model_fingerprint(model) != self.fingerprint:
            problems.append(f"cache belongs to another model ({self.manifest.get('model')})")
        for name, entry in self.matrices.items():
            shard = self.path / entry["shard"]
            if not shard.is_file():
                problems.append(f"{name}: shard missing")
                continue
            if checksums and _sha256(shard) != entry["sha256"]:
                problems.append(f"{name}: shard checksum mismatch (truncated or modified)")
                continue
            try:
                U, S, Vh = self.load(name)
            except CacheError as exc:
                problems.append(f"{name}: {exc}")
                continue
            shape = tuple(entry["shape"])
            if (U.shape[0], Vh.shape[1]) != shape or S.shape[0] != entry["rank"]:
                problems.append(f"{name}: factor shapes do not match {shape}")
            if name in params:
                w = params[name].detach().float().cpu()
                err = float(((U.float() * S.float()) @ Vh.float() - w).norm() / w.norm().clamp_min(1e-12))
                if err > max(10 * entry["rel_error"], 1e-4):
                    problems.append(f"{name}: reconstruction error {err:.2e} vs recorded {entry['rel_error']:.2e}")
        return problems


ERROR_COLUMNS = 128


def _sampled_rel_error(w, U, S, Vh) -> float:
    """Relative Frobenius reconstruction error of the stored factors, from up to ERROR_COLUMNS seeded columns.

    The full product costs about a tenth of the SVD itself; the column sample is an unbiased estimate of the squared
    error at a fraction of that. ``SVDCache.verify`` recomputes the error exactly over every column.
    """
    import torch

    n = w.shape[1]
    cols = torch.randperm(n, generator=torch.Generator().manual_seed(n))[:ERROR_COLUMNS].to(w.device) if n > ERROR_COLUMNS else slice(None)
    part = w[:, cols]
    approx = (U.float() * S.float()) @ Vh.float()[:, cols]
    scale = n / part.shape[1]
    err2 = float((approx - part).pow(2).sum()) * scale
    return (err2 ** 0.5) / max(float(w.norm()), 1e-12)


@dataclass
class DecomposeResult:
    path: Path
    computed: int
    skipped: int
    seconds: float
    max_rel_error: float


def _new_manifest(model, model_name: str, fingerprint: str, dtype: str) -> dict:
    return {
        "format": FORMAT,
        "t2_version": __version__,
        "model": model_name,
        "model_fingerprint": fingerprint,
        "architecture": {"model_type": model.config.model_type, "class": type(model).__name__,
                         "num_hidden_layers": model.config.num_hidden_layers},
        "dtype": dtype,
        "matrices": {},
    }


def decompose(
    model,
    model_name: str,
    targets: list[Target],
    out_dir: Path | None = None,
    dtype: str = "float32",
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> DecomposeResult:
    """SVD every target matrix of ``model`` into the cache, skipping those already there."""
    import torch
    from safetensors.torch import save

    if dtype not in DTYPES:
        raise CacheError(f"unknown cache dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    fingerprint = model_fingerprint(model)
    path = Path(out_dir) if out_dir else default_cache_dir(model_name, fingerprint)
    try:
        (path / "shards").mkdir(parents=True, exist_ok=True)
        probe = temp_path_for(path / ".write-test")
        probe.unlink()
    except OSError as exc:
        raise CacheError(f"cannot write the SVD cache to {path} ({exc.strerror}): choose a writable --out") from None

    if (path / "manifest.json").is_file() and not force:
        cache = SVDCache.open(path)
        cache.check_model(fingerprint, model_name)
        if cache.manifest["dtype"] != dtype:
            raise CacheError(f"SVD cache {path} stores {cache.manifest['dtype']}, not {dtype}: pass --dtype {cache.manifest['dtype']} or --force")
        manifest = cache.manifest
    else:
        manifest = _new_manifest(model, model_name, fingerprint, dtype)
    store_dtype = getattr(torch, dtype)
    params = dict(model.named_parameters())
    start, computed, skipped = time.perf_counter(), 0, 0

    def commit(target: Target, blob: bytes, rank: int, rel: float) -> None:
        """Write one shard (temp file + rename), then record it in the manifest; runs on the writer thread."""
        shard = path / _shard_rel(target.name)
        tmp = temp_path_for(shard)
        try:
            _write_bytes(tmp, blob)
            tmp.replace(shard)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        manifest["matrices"][target.name] = {
            "shard": _shard_rel(target.name), "shape": list(target.shape), "rank": rank,
            "layer": target.layer, "role": target.role, "group": target.group,
            "rel_error": rel, "sha256": hashlib.sha256(blob).hexdigest(),
        }
        atomic_write_json(path / "manifest.json", manifest)
        if progress:
            progress(1)

    # One writer thread overlaps disk I/O with the next SVD; at most one shard waits in memory. Leaving the
    # ``with`` block (also on an interruption) waits for the shard in flight, which is then complete or absent.
    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="t2-svd-writer") as writer:
        for target in targets:
            entry = manifest["matrices"].get(target.name)
            if entry and (path / entry["shard"]).is_file():
                skipped += 1
                if progress:
                    progress(1)
                continue
            with torch.no_grad():
                w = params[target.name].detach().float()
                U, S, Vh = torch.linalg.svd(w, full_matrices=False)
                U, S, Vh = U.to(store_dtype), S.to(store_dtype), Vh.to(store_dtype)
                rel = _sampled_rel_error(w, U, S, Vh)
                blob = save({"U": U.contiguous().cpu(), "S": S.cpu(), "Vh": Vh.contiguous().cpu()})
            rank = int(S.shape[0])
            del U, S, Vh, w
            if pending is not None:
                pending.result()
            pending = writer.submit(commit, target, blob, rank, rel)
            computed += 1
        if pending is not None:
            pending.result()
    if not (path / "manifest.json").is_file():
        atomic_write_json(path / "manifest.json", manifest)
    errors = [manifest["matrices"][t.name]["rel_error"] for t in targets]
    return DecomposeResult(path, computed, skipped, time.perf_counter() - start, max(errors, default=0.0))


def find_cache(model, model_name: str, path: Path | None = None) -> SVDCache:
    """The cache for ``model``: ``path`` if given, else the default folder; wrong model or missing is an error."""
    fingerprint = model_fingerprint(model)
    path = Path(path) if path else default_cache_dir(model_name, fingerprint)
    if not (path / "manifest.json").is_file():
        raise CacheError(f"no SVD cache for {model_name!r} at {path}: run `t2 decompose {model_name}` first")
    cache = SVDCache.open(path)
    cache.check_model(fingerprint, model_name)
    return cache
