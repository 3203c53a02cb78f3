"""Cross-model transfer of SVF experts: map the vectors of an expert trained on model A onto model B.

Each vector z of a source matrix (layer ℓ, role r — e.g. ``mlp.down_proj``) is given to the target matrix with the
same role at the mapped layer. Entry i of z scales the i-th largest singular value, so ``order="ordered"`` keeps
that canonical (descending σ) alignment; ``order="shuffled"`` is the control: every vector is permuted by its own
seeded permutation before mapping, so component i of the source lands on an arbitrary component of the target.

Rank mismatches (target rank ≠ source rank, e.g. different hidden sizes): an ordered vector is **truncated** to its
first (largest-σ) entries, or **padded** with the parameterisation's neutral value (``svf.neutral_value``: scale 1,
the base weights) for the target's extra small-σ components. Shuffled vectors are permuted first, then truncated or
padded the same way. What happened to every matrix is recorded in the output's ``transfer`` metadata.

Layer counts: ``layer_map="strict"`` needs the same number of layers and maps ℓ → ℓ; ``"linear"`` gives target layer
j the source layer round(j·(Ls−1)/(Lt−1)) (rounded half up; Lt = 1 takes layer 0), duplicating or dropping source
layers as needed. The source's layer count comes from its SVD cache manifest when that cache is on this machine,
else from ``source_num_layers``, else it is inferred as (highest adapted layer + 1) and recorded as inferred.

Departures from the paper: the paper transfers Llama-3-8B experts to Mistral-7B (same depth and widths) and compares
ordered vs shuffled components only; it describes no layer-count or rank adaptation, and the public reference code
has no transfer implementation at all. Truncate/pad and the linear layer map are our extensions, reported per
matrix so results can be filtered. A transferred expert has no validation score on the target (``val_score`` is
None); the source's score is kept in the provenance.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, ExpertError

log = logging.getLogger(__name__)

ORDERS = ("ordered", "shuffled")
LAYER_MAPS = ("strict", "linear")
_LAYER_RE = re.compile(r"\.layers\.(\d+)\.")


@dataclass(frozen=True)
class TransferPlan:
    """Which source vector feeds which target matrix: ``pairs`` maps target parameter name -> source name."""

    pairs: dict
    layer_pairs: dict  # target layer -> source layer
    source_num_layers: int
    source_layers_inferred: bool
    target_num_layers: int
    unused_source: list  # source names no target matrix takes (linear map to fewer layers)


def _layer_role(name: str) -> tuple[int, str]:
    match = _LAYER_RE.search(name)
    if not match or not name.endswith(".weight"):
        raise ExpertError(f"expert vector {name!r} is not a per-layer weight matrix: the expert is not an SVF expert of a decoder")
    return int(match.group(1)), name[: -len(".weight")].rsplit(".", 1)[-1]


def check_choices(order: str, layer_map: str) -> None:
    problems = []
    if order not in ORDERS:
        problems.append(f"--order {order!r} (use {' or '.join(ORDERS)})")
    if layer_map not in LAYER_MAPS:
        problems.append(f"--layer-map {layer_map!r} (use {' or '.join(LAYER_MAPS)})")
    if problems:
        raise ConfigError("bad transfer options: " + "; ".join(problems))


def source_layer_count(expert, source_num_layers: int | None = None) -> tuple[int, bool]:
    """(Ls, inferred): the source model's layer count from the caller, its local SVD cache, or the expert itself."""
    if source_num_layers:
        return int(source_num_layers), False
    meta = expert.meta
    try:
        from .svd import SVDCache, default_cache_dir

        path = default_cache_dir(str(meta.get("base_model")), str(meta.get("model_fingerprint")))
        if (path / "manifest.json").is_file():
            n = SVDCache.open(path).manifest.get("architecture", {}).get("num_hidden_layers")
            if n:
                return int(n), False
    except Exception:  # noqa: BLE001 - an unreadable cache only means we fall back to inference
        log.debug("no usable source SVD cache for %s", meta.get("base_model"))
    return max(_layer_role(n)[0] for n in expert.params.z) + 1, True


def map_layer(j: int, source_layers: int, target_layers: int) -> int:
    """Linear layer map: round(j·(Ls−1)/(Lt−1)), rounded half up."""
    if target_layers <= 1:
        return 0
    return int(math.floor(j * (source_layers - 1) / (target_layers - 1) + 0.5))


def plan_transfer(expert, target_model, layer_map: str = "strict", source_num_layers: int | None = None) -> TransferPlan:
    """Pair every target matrix with the source vector it receives (no SVD needed yet)."""
    from .arch import all_targets

    check_choices("ordered", layer_map)
    by_layer_role = {}
    for name in expert.params.z:
        by_layer_role[_layer_role(name)] = name
    src_roles = sorted({role for _, role in by_layer_role})
    targets = all_targets(target_model)
    tgt_index = {(t.layer, t.role): t.name for t in targets}
    tgt_roles = {t.role for t in targets}
    missing = [r for r in src_roles if r not in tgt_roles]
    if missing:
        raise ExpertError(
            f"the target model has no {', '.join(missing)} matrices (it has {', '.join(sorted(tgt_roles))}): "
            "transfer needs the same matrix roles; pick a target of the same family layout"
        )
    ls, inferred = source_layer_count(expert, source_num_layers)
    lt = int(getattr(target_model.config, "num_hidden_layers", 0) or (max(t.layer for t in targets) + 1))
    if layer_map == "strict":
        if ls != lt:
            raise ExpertError(
                f"the source model has {ls} layers{' (inferred from the expert)' if inferred else ''} and the target "
                f"{lt}: pass --layer-map linear to map layers proportionally"
                + ("" if not inferred else " (or --source-layers N if the count is wrong)")
            )
        layer_pairs = {j: j for j in range(lt)}
    else:
        layer_pairs = {j: map_layer(j, ls, lt) for j in range(lt)}
    pairs = {}
    for j, s in layer_pairs.items():
        for role in src_roles:
            src = by_layer_role.get((s, role))
            if src is not None and (j, role) in tgt_index:
                pairs[tgt_index[(j, role)]] = src
    if not pairs:
        raise ExpertError("no target matrix receives a vector under this layer map: check --layer-map / --source-layers")
    used = set(pairs.values())
    return TransferPlan(pairs, layer_pairs, ls, inferred, lt, [n for n in expert.params.z if n not in used])


def permutation(n: int, seed: int, name: str):
    """A seeded permutation of range(n) for one matrix (seed and source name, so it is stable across runs)."""
    import torch

    key = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & ((1 << 63) - 1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(key))


def fit_rank(vector, rank: int, fill: float):
    """``vector`` truncated to ``rank`` entries or padded with ``fill``; returns (new vector, how)."""
    import torch

    k = int(vector.shape[0])
    if k == rank:
        return vector.clone(), "same"
    if k > rank:
        return vector[:rank].clone(), "truncated"
    pad = torch.full((rank - k,), float(fill), dtype=vector.dtype)
    return torch.cat([vector, pad]), "padded"


def transfer_expert(expert, target_model, target_name: str, target_cache, order: str = "ordered", seed: int = 0,
                    layer_map: str = "strict", source_num_layers: int | None = None):
    """Map ``expert`` onto ``target_model`` -> (SVFParams, metadata for ``experts.save_expert``).

    ``target_cache`` is the target model's SVD cache (checked against the model); it gives each target rank.
    """
    from . import svf
    from .experts import build_meta
    from .svd import model_fingerprint

    check_choices(order, layer_map)
    plan = plan_transfer(expert, target_model, layer_map, source_num_layers)
    fingerprint = model_fingerprint(target_model)
    target_cache.check_model(fingerprint, target_name)
    target_cache.require(list(plan.pairs))
    src = expert.params
    fill = svf.neutral_value(src.parameterisation, src.max_mult)
    z, matrices = {}, {}
    for tgt, name in plan.pairs.items():
        v = src.z[name].detach().to("cpu").float()
        if order == "shuffled":
            v = v[permutation(int(v.shape[0]), seed, name)]
        rank = int(target_cache.matrices[tgt]["rank"])
        z[tgt], how = fit_rank(v, rank, fill)
        matrices[tgt] = {"source": name, "source_rank": int(v.shape[0]), "target_rank": rank, "rank": how}
    params = svf.SVFParams(z, src.parameterisation, src.max_mult)
    m = expert.meta
    layers = ",".join(str(i) for i in sorted({_layer_role(n)[0] for n in z}))
    counts = {k: sum(1 for e in matrices.values() if e["rank"] == k) for k in ("same", "truncated", "padded")}
    provenance = {
        "source_expert": str(expert.path) if expert.path else None,
        "source_model": m.get("base_model"), "source_fingerprint": m.get("model_fingerprint"),
        "source_val_score": m.get("val_score"), "order": order, "seed": seed if order == "shuffled" else None,
        "layer_map": layer_map, "source_num_layers": plan.source_num_layers,
        "source_layers_inferred": plan.source_layers_inferred, "target_num_layers": plan.target_num_layers,
        "layer_pairs": {str(j): s for j, s in plan.layer_pairs.items()}, "unused_source": plan.unused_source,
        "rank_handling": counts, "fill_value": fill, "matrices": matrices,
    }
    meta = build_meta(kind=m.get("kind") or "expert", base_model=target_name, model_fingerprint=fingerprint,
                      svd_fingerprint=target_cache.fingerprint, targets=m.get("targets"), layers=layers,
                      task=m.get("task"), labels=m.get("labels"), training=m.get("training"), val_score=None)
    meta["transfer"] = provenance
    return params, meta


def default_out_path(source: Path, target_name: str, order: str) -> Path:
    """``<source stem>.to-<target>.<order>.safetensors`` next to the source expert."""
    from .paths import slug

    target = slug(Path(target_name).name or target_name)[:48]
    return Path(source).with_name(f"{Path(source).stem}.to-{target}.{order}.safetensors")


def names_regex(names) -> str:
    """An anchored regex selecting exactly ``names`` (for ``arch.select_targets`` / ``recipes.ensure_cache``)."""
    return "^(?:" + "|".join(re.escape(n) for n in sorted(names)) + ")$"
