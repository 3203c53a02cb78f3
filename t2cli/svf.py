"""Singular value fine-tuning (SVF): one vector per matrix that rescales its singular values.

For every targeted matrix W = U diag(S) Vᵀ a vector z (one entry per singular value) gives
W'(z) = U diag(S ⊙ scale(z)) Vᵀ · c. Two named parameterisations:

* ``sigmoid`` (the public reference code, **default**): scale = sigmoid(p) · max_mult and
  c = ΣS / Σ(S ⊙ scale), so the sum of singular values (a proxy for the matrix's overall magnitude) is unchanged.
  Neutral value: p = logit(1 / max_mult) (= 0 for the default max_mult = 2), where every scale is exactly 1.
  Because of the renormalisation *any* constant p is neutral too (a uniform scale cancels), which is why the
  reference code can start at p = 0.1 with max_mult = 1. We start at the exact neutral value plus Gaussian noise
  (std 0.01, as the released code; the paper writes variance 1e-3) so scales live around 1 — the same space as
  the ``linear`` parameterisation, which makes experts of both kinds mixable.
  Default because it bounds every scale to (0, max_mult) so one bad step cannot flip or blow up a direction,
  and because it is what the released experts were trained with.
* ``linear`` (the paper's formula): scale = z, z starts at 1 (+ noise), no renormalisation.

Mixing (``mix_scales``) happens in *scale* space, z' = Σ α_k scale_k — never on raw pre-sigmoid parameters (a known
defect of the reference code: sigmoid(Σ α p_k) is not a mixture of the experts).

``Factors`` holds U, S, Vh once (float32, on the model's device). ``compose`` is differentiable in the scales,
so the trainer composes W' once per optimiser step and back-propagates into z through it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .errors import ConfigError, ExpertError

PARAMETERISATIONS = ("sigmoid", "linear")
DEFAULT_PARAMETERISATION = "sigmoid"
DEFAULT_MAX_MULT = 2.0
DEFAULT_NOISE_STD = 0.01


def check_parameterisation(parameterisation: str, max_mult: float) -> None:
    if parameterisation not in PARAMETERISATIONS:
        raise ConfigError(f"unknown parameterisation {parameterisation!r}: use one of {', '.join(PARAMETERISATIONS)}")
    if parameterisation == "sigmoid" and not (max_mult > 0 and math.isfinite(max_mult)):
        raise ConfigError(f"max_mult={max_mult} must be a positive number (default {DEFAULT_MAX_MULT})")


def neutral_value(parameterisation: str = DEFAULT_PARAMETERISATION, max_mult: float = DEFAULT_MAX_MULT) -> float:
    """The raw parameter value that reproduces the base weights: logit(1/max_mult) (scale 1) or 1 (linear).

    For max_mult <= 1 a scale of exactly 1 is unreachable; 0 is returned (uniform scale max_mult/2, which the
    sigmoid parameterisation's renormalisation cancels exactly).
    """
    check_parameterisation(parameterisation, max_mult)
    if parameterisation == "linear":
        return 1.0
    if max_mult <= 1:
        return 0.0
    q = 1.0 / max_mult
    return math.log(q / (1 - q))


def renormalises(parameterisation: str) -> bool:
    """Whether W' is rescaled so that ΣS is unchanged (sigmoid: yes, linear: no)."""
    return parameterisation == "sigmoid"


@dataclass
class SVFParams:
    """The trainable vectors of one expert: ``z[name]`` (raw parameters, 1-D, one entry per singular value)."""

    z: dict
    parameterisation: str = DEFAULT_PARAMETERISATION
    max_mult: float = DEFAULT_MAX_MULT

    def __post_init__(self) -> None:
        check_parameterisation(self.parameterisation, self.max_mult)

    @property
    def names(self) -> list[str]:
        return list(self.z)

    @property
    def renormalise(self) -> bool:
        return renormalises(self.parameterisation)

    def parameters(self) -> list:
        return list(self.z.values())

    def requires_grad_(self, flag: bool = True) -> "SVFParams":
        for t in self.z.values():
            t.requires_grad_(flag)
        return self

    def detached(self, device="cpu") -> "SVFParams":
        return SVFParams({n: t.detach().to(device).clone() for n, t in self.z.items()}, self.parameterisation, self.max_mult)

    def num_params(self) -> int:
        return sum(int(t.numel()) for t in self.z.values())


def _rank_of(source, name: str) -> int:
    if isinstance(source, Factors):
        return int(source.S(name).shape[0])
    if hasattr(source, "matrices"):  # SVDCache
        return int(source.matrices[name]["rank"])
    raise TypeError(f"need an SVDCache or Factors, got {type(source).__name__}")


def _names(targets: Iterable) -> list[str]:
    return [t if isinstance(t, str) else t.name for t in targets]


def init_params(
    source,
    targets: Iterable,
    parameterisation: str = DEFAULT_PARAMETERISATION,
    seed: int = 0,
    noise_std: float = DEFAULT_NOISE_STD,
    max_mult: float = DEFAULT_MAX_MULT,
    device="cpu",
) -> SVFParams:
    """Fresh vectors at the neutral value + N(0, noise_std²) noise, one per target (``source``: SVDCache or Factors).

    The noise comes from a private generator seeded with ``seed``, so the global RNG is untouched.
    """
    import torch

    names = _names(targets)
    if hasattr(source, "require"):
        source.require(names)
    centre = neutral_value(parameterisation, max_mult)
    gen = torch.Generator().manual_seed(int(seed))
    z = {}
    for name in names:
        noise = torch.randn(_rank_of(source, name), generator=gen, dtype=torch.float32) * float(noise_std)
        z[name] = (noise + centre).to(device).requires_grad_(True)
    return SVFParams(z, parameterisation, max_mult)


def scales(params: SVFParams) -> dict:
    """Post-transform scales per matrix (the space mixing happens in); differentiable in ``params.z``."""
    import torch

    if params.parameterisation == "linear":
        return dict(params.z)
    return {n: torch.sigmoid(p) * params.max_mult for n, p in params.z.items()}


def neutral_scales(source, names: Iterable[str]) -> dict:
    """Scales of exactly 1 for ``names`` (the base weights)."""
    import torch

    return {n: torch.ones(_rank_of(source, n)) for n in names}


class Factors:
    """U, S, Vh of the targeted matrices, loaded once (float32 by default, on one device)."""

    def __init__(self, factors: Mapping[str, tuple], dtypes: Mapping[str, object] | None = None):
        self._f = dict(factors)
        self.dtypes = dict(dtypes or {})  # name -> dtype of the model parameter (compose casts to it)

    @classmethod
    def load(cls, cache, names: Iterable, device="cpu", dtype=None, model=None) -> "Factors":
        import torch

        names = _names(names)
        cache.require(names)
        dtype = dtype or torch.float32
        params = dict(model.named_parameters()) if model is not None else {}
        f = {n: cache.load(n, device=device, dtype=dtype) for n in names}
        return cls(f, {n: params[n].dtype for n in names if n in params})

    @property
    def names(self) -> list[str]:
        return list(self._f)

    def __contains__(self, name: str) -> bool:
        return name in self._f

    def __getitem__(self, name: str) -> tuple:
        return self._f[name]

    def S(self, name: str):
        return self._f[name][1]

    @property
    def device(self):
        return next(iter(self._f.values()))[0].device


def compose_one(U, S, Vh, scale, renormalise: bool):
    """U diag(S ⊙ scale) Vᵀ, times ΣS / Σ(S ⊙ scale) when ``renormalise``."""
    s = S * scale.to(S.dtype)
    w = (U * s) @ Vh
    if renormalise:
        w = w * (S.sum() / s.sum())
    return w


def compose(factors: Factors, scale_map: Mapping[str, object], renormalise: bool = True, dtype=None) -> dict:
    """W' for every name in ``scale_map`` (cast to ``dtype`` or the model parameter's dtype); keeps autograd."""
    unknown = [n for n in scale_map if n not in factors]
    if unknown:
        raise ExpertError(f"no SVD factors loaded for {unknown[0]} (and {len(unknown) - 1} more): decompose these targets first")
    out = {}
    for name, sc in scale_map.items():
        U, S, Vh = factors[name]
        if sc.shape[0] != S.shape[0]:
            raise ExpertError(f"{name}: vector has {sc.shape[0]} entries but the matrix has {S.shape[0]} singular values")
        w = compose_one(U, S, Vh, sc.to(U.device), renormalise)
        target_dtype = dtype or factors.dtypes.get(name)
        out[name] = w.to(target_dtype) if target_dtype is not None and target_dtype != w.dtype else w
    return out


def compose_params(factors: Factors, params: SVFParams, dtype=None) -> dict:
    """Shorthand: ``compose(factors, scales(params), params.renormalise)``."""
    return compose(factors, scales(params), params.renormalise, dtype)


def mix_scales(scale_list: Sequence[Mapping[str, object]], alphas) -> dict:
    """z' = Σ_k α_k · scale_k, per matrix. ``alphas``: one weight per expert, or {name: [α_k]} per matrix.

    A matrix that an expert does not adapt counts as scale 1 (its base weights) for that expert.
    """
    import torch

    if not scale_list:
        raise ConfigError("mix_scales needs at least one expert")
    names = list(dict.fromkeys(n for s in scale_list for n in s))
    per_name = isinstance(alphas, Mapping)
    if not per_name and len(alphas) != len(scale_list):
        raise ConfigError(f"got {len(alphas)} mixing weights for {len(scale_list)} experts: pass one per expert")
    out = {}
    for name in names:
        a = alphas.get(name) if per_name else alphas
        if a is None or len(a) != len(scale_list):
            raise ConfigError(f"mixing weights for {name} must list one value per expert ({len(scale_list)})")
        ref = next(s[name] for s in scale_list if name in s)
        total = torch.zeros_like(ref, dtype=torch.float32)
        for alpha, s in zip(a, scale_list):
            v = s[name].float() if name in s else torch.ones_like(total)
            total = total + (alpha if not torch.is_tensor(alpha) else alpha.to(total)) * v.to(total.device)
        out[name] = total
    return out


def merge(factors: Factors, scale_map: Mapping[str, object], renormalise: bool = True, dtype=None) -> dict:
    """Plain (detached) weights W' for ``scale_map``; a non-finite result is an ExpertError, never written."""
    import torch

    with torch.no_grad():
        weights = compose(factors, scale_map, renormalise, dtype)
    bad = [n for n, w in weights.items() if not bool(torch.isfinite(w).all())]
    if bad:
        raise ExpertError(f"merged weights of {bad[0]} (and {len(bad) - 1} more) are not finite: the expert is corrupt or the mix weights are extreme")
    return weights


@contextlib.contextmanager
def applied(model, weights: Mapping[str, object]):
    """Copy ``weights`` into ``model``'s parameters in place for the ``with`` block, then restore them exactly."""
    import torch

    params = dict(model.named_parameters())
    unknown = [n for n in weights if n not in params]
    if unknown:
        raise ExpertError(f"{unknown[0]} is not a parameter of this model: the expert was made for another architecture")
    saved = {}
    try:
        with torch.no_grad():
            for n, w in weights.items():
                saved[n] = params[n].detach().clone()
                params[n].copy_(w)
        yield model
    finally:
        with torch.no_grad():
            for n, w in saved.items():
                params[n].copy_(w)


def functional_forward(model, weights: Mapping[str, object], *args, **kwargs):
    """``model(*args, **kwargs)`` with ``weights`` substituted (no in-place change; gradients flow into them)."""
    from torch.func import functional_call

    return functional_call(model, dict(weights), args, kwargs, strict=False)


def merge_into(model, weights: Mapping[str, object]) -> None:
    """Write ``weights`` permanently into ``model`` (after :func:`merge`'s finiteness check)."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w)


__all__ = [
    "PARAMETERISATIONS", "DEFAULT_PARAMETERISATION", "DEFAULT_MAX_MULT", "SVFParams", "Factors", "init_params",
    "neutral_value", "scales", "neutral_scales", "compose", "compose_params", "mix_scales", "merge", "applied",
    "functional_forward", "merge_into", "renormalises",
]
