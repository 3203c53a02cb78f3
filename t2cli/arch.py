"""Which weight matrices SVF adapts, per model family.

A small registry maps a family's ``model_type`` to the roles of its attention and MLP projections. Families not in
the registry fall back to the common Llama-style names; a model with none of them is a clear error that lists the
linear modules it does have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ArchitectureError, ConfigError

LLAMA_STYLE = {"attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
PHI3_STYLE = {"attn": ("qkv_proj", "o_proj"), "mlp": ("gate_up_proj", "down_proj")}

REGISTRY: dict[str, dict[str, tuple[str, ...]]] = {
    "llama": LLAMA_STYLE,
    "mistral": LLAMA_STYLE,
    "mixtral": LLAMA_STYLE,
    "qwen2": LLAMA_STYLE,
    "qwen3": LLAMA_STYLE,
    "gemma": LLAMA_STYLE,
    "gemma2": LLAMA_STYLE,
    "gemma3_text": LLAMA_STYLE,
    "olmo2": LLAMA_STYLE,
    "phi3": PHI3_STYLE,
}

_LAYER_RE = re.compile(r"\.layers\.(\d+)\.")


@dataclass(frozen=True)
class Target:
    """One adaptable matrix: its parameter name, layer index, role (e.g. ``q_proj``) and group (attn|mlp)."""

    name: str
    layer: int
    role: str
    group: str
    shape: tuple[int, int]


def roles_for(model_type: str) -> dict[str, tuple[str, ...]]:
    return REGISTRY.get(model_type, LLAMA_STYLE)


def all_targets(model) -> list[Target]:
    """Every matrix SVF can adapt in ``model``, in layer order."""
    model_type = getattr(model.config, "model_type", "?")
    groups = roles_for(model_type)
    role_group = {role: group for group, roles in groups.items() for role in roles}
    found = []
    for name, param in model.named_parameters():
        if not name.endswith(".weight") or param.dim() != 2:
            continue
        match = _LAYER_RE.search(name)
        role = name[: -len(".weight")].rsplit(".", 1)[-1]
        if match and role in role_group:
            found.append(Target(name, int(match.group(1)), role, role_group[role], tuple(param.shape)))
    if not found:
        linear = sorted({n[: -len(".weight")].rsplit(".", 1)[-1] for n, p in model.named_parameters()
                         if n.endswith(".weight") and p.dim() == 2})
        raise ArchitectureError(
            f"architecture {model_type!r} is not supported: no attention/MLP projections found among its matrices "
            f"({', '.join(linear)}); add it to t2cli.arch.REGISTRY"
        )
    return found


def parse_layers(spec: str | None, num_layers: int) -> list[int]:
    """``all`` | ``half`` (every other layer, from 0) | ``A-B`` | ``0,2,5`` | a mix of ranges and indices."""
    if spec is None or spec in ("", "all"):
        return list(range(num_layers))
    if spec == "half":
        return list(range(0, num_layers, 2))
    layers: set[int] = set()
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                layers.update(range(lo, hi + 1))
            else:
                layers.add(int(part))
    except ValueError:
        raise ConfigError(f"bad --layers {spec!r}: use all, half, a range like 0-11, or a list like 0,2,4") from None
    bad = sorted(i for i in layers if not 0 <= i < num_layers)
    if bad or not layers:
        raise ConfigError(f"--layers {spec!r} selects layers {bad or 'none'} outside 0-{num_layers - 1}")
    return sorted(layers)


def select_targets(model, targets: str = "all", layers: str | None = None) -> list[Target]:
    """Filter :func:`all_targets` by group (mlp|attn|all), role names (``q_proj,v_proj``) or a regex, and layers."""
    found = all_targets(model)
    num_layers = max(t.layer for t in found) + 1
    keep_layers = set(parse_layers(layers, num_layers))
    spec = (targets or "all").strip()
    roles = sorted({t.role for t in found})
    if spec == "all":
        chosen = found
    elif spec in ("mlp", "attn"):
        chosen = [t for t in found if t.group == spec]
    elif all(part.strip() in roles for part in spec.split(",")):
        wanted = {part.strip() for part in spec.split(",")}
        chosen = [t for t in found if t.role in wanted]
    else:
        try:
            pattern = re.compile(spec)
        except re.error:
            pattern = None
        chosen = [t for t in found if pattern and pattern.search(t.name)]
    chosen = [t for t in chosen if t.layer in keep_layers]
    if not chosen:
        raise ConfigError(
            f"--targets {spec!r} with --layers {layers or 'all'} matches no matrix: use mlp, attn, all, "
            f"role names ({', '.join(roles)}) or a regular expression over parameter names"
        )
    return chosen
