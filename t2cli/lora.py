"""LoRA baseline through PEFT: settings, parameter counts, adapter folders and their weights for evaluation.

The paper compares SVF with LoRA fine-tuned by next-token prediction on the tasks' official solutions (its main
baseline) and also reports LoRA trained with the same RL objective. We use PEFT's ``LoraConfig`` as is (rank 16,
alpha 32, dropout 0.05 on ``q_proj``/``v_proj`` by default, PEFT's usual starting point; the paper's LoRA
hyper-parameters are not in the public reference code, which has no LoRA implementation at all). The trainer lives
in :mod:`t2cli.lora_train`.

An adapter is a standard PEFT folder (``adapter_config.json`` + ``adapter_model.safetensors``, loadable with
``peft.PeftModel.from_pretrained``) plus ``t2_meta.json`` (base model name and weight fingerprint, task, objective,
settings, validation score, trainable parameter count). Folders are written to a temporary sibling and renamed.
For evaluation the adapter is loaded onto the base model, PEFT's own ``get_delta_weight`` gives every
W + (α/r)·B·A, the LoRA layers are unloaded again (the base model is left exactly as it was), and the merged
weights go through the same ``Backend.set_weights`` path as SVF experts — so LoRA rows use the identical
generation and scoring code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from .errors import ConfigError, ExpertError

log = logging.getLogger(__name__)

META_FILE = "t2_meta.json"
FORMAT = 1
DEFAULT_RANK = 16
DEFAULT_ALPHA = 32.0
DEFAULT_DROPOUT = 0.05
DEFAULT_TARGETS = ("q_proj", "v_proj")
ADAPTER = "default"


@dataclass(frozen=True)
class LoraSettings:
    rank: int = DEFAULT_RANK
    alpha: float = DEFAULT_ALPHA
    dropout: float = DEFAULT_DROPOUT
    targets: tuple = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", parse_targets(self.targets))
        else:
            object.__setattr__(self, "targets", tuple(self.targets))
        p = []
        if not isinstance(self.rank, int) or self.rank < 1:
            p.append(f"--lora-rank {self.rank!r} (use an integer >= 1)")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            p.append(f"--lora-alpha {self.alpha!r} (use a positive number)")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            p.append(f"--lora-dropout {self.dropout!r} (use 0 <= dropout < 1)")
        if not self.targets:
            p.append("--lora-targets is empty (use module names such as q_proj,v_proj)")
        if p:
            raise ConfigError("bad LoRA options: " + "; ".join(p))

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.targets), bias="none", task_type="CAUSAL_LM")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d


def parse_targets(spec: str | Iterable[str]) -> tuple:
    """``"q_proj,v_proj"`` -> ("q_proj", "v_proj")."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    return tuple(p.strip() for p in parts if p.strip())


def _linear_leaf_names(model) -> list[str]:
    import torch

    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def check_targets(model, settings: LoraSettings) -> None:
    """Every LoRA target must name a linear module of ``model``; the error lists the ones it has."""
    have = set(_linear_leaf_names(model))
    missing = [t for t in settings.targets if t not in have]
    if missing:
        raise ConfigError(f"--lora-targets {','.join(missing)} match no linear module of this model: "
                          f"use some of {','.join(sorted(have))}")


def trainable_counts(model, svf_targets, lora_config) -> dict:
    """Trainable parameters of SVF (Σ rank = min(m, n) of each targeted matrix) and LoRA (Σ r·(in+out) of each
    module ``lora_config`` targets), side by side. ``svf_targets``: ``arch.Target`` objects; ``lora_config``: a
    ``peft.LoraConfig`` or :class:`LoraSettings`. ``model`` is the plain (unwrapped) model."""
    import torch
    from peft.tuners.tuners_utils import check_target_module_exists

    if isinstance(lora_config, LoraSettings):
        lora_config = lora_config.peft_config()
    svf_targets = list(svf_targets)
    svf_params = sum(min(t.shape) for t in svf_targets)
    modules, lora_params = 0, 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".lora_" in name:
            continue
        found = check_target_module_exists(lora_config, name)
        if found and type(found).__name__ != "_ExcludedModule":
            r = lora_config.r
            if lora_config.rank_pattern:  # PEFT's own lookup, as LoraModel does when it builds the layer
                from peft.utils.other import get_pattern_key

                r = lora_config.rank_pattern.get(get_pattern_key(lora_config.rank_pattern.keys(), name), r)
            modules += 1
            lora_params += r * (module.in_features + module.out_features)
    return {
        "svf": {"matrices": len(svf_targets), "params": svf_params},
        "lora": {"modules": modules, "params": lora_params, "rank": lora_config.r,
                 "targets": sorted(lora_config.target_modules) if not isinstance(lora_config.target_modules, str)
                 else lora_config.target_modules},
        "lora_over_svf": round(lora_params / svf_params, 3) if svf_params else None,
    }


def wrap(model, settings: LoraSettings, seed: int = 0):
    """``peft.get_peft_model`` with a seeded LoRA-A initialisation (the global RNG is left untouched)."""
    import torch
    from peft import get_peft_model

    check_targets(model, settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, settings.peft_config())


def save_adapter(peft_model, path: Path, meta: dict) -> Path:
    """``save_pretrained`` into a temporary sibling folder with ``t2_meta.json``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = None
    try:
        peft_model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
        (tmp / META_FILE).write_text(json.dumps({"format": FORMAT, "kind": "lora", **meta}, indent=2, sort_keys=True) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def read_meta(path: Path) -> dict | None:
    """The adapter's ``t2_meta.json`` (None for a foreign PEFT adapter without one); a non-adapter is an error."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise ExpertError(f"{path} is not a PEFT adapter folder (no adapter_config.json): train one with `t2 train --method lora`")
    mp = path / META_FILE
    if not mp.is_file():
        return None
    try:
        return json.loads(mp.read_text())
    except json.JSONDecodeError:
        raise ExpertError(f"{mp} is unreadable: re-train the adapter or delete {META_FILE} to use it unchecked") from None


def check_adapter(path: Path, fingerprint: str, model_name: str | None = None) -> dict | None:
    """Raise ExpertError unless the adapter at ``path`` was trained on the model with ``fingerprint``."""
    meta = read_meta(path)
    if meta is None:
        log.warning("%s has no %s: cannot check that it was made for %s", path, META_FILE, model_name or "this model")
        return None
    if meta.get("model_fingerprint") != fingerprint:
        raise ExpertError(
            f"LoRA adapter {path} was trained on {meta.get('base_model')!r} (fingerprint "
            f"{str(meta.get('model_fingerprint'))[:12]}), not on {model_name or 'this model'} ({fingerprint[:12]}): "
            f"pass --model {meta.get('base_model')} or train a LoRA for this model"
        )
    return meta


def load_adapter(path: Path, model, model_name: str | None = None, is_trainable: bool = False):
    """``PeftModel.from_pretrained`` on ``model`` (modified in place: call ``.unload()`` to get it back) after the
    fingerprint check."""
    from peft import PeftModel

    from .svd import model_fingerprint

    check_adapter(path, model_fingerprint(model), model_name)
    return PeftModel.from_pretrained(model, str(path), adapter_name=ADAPTER, is_trainable=is_trainable)


def lora_weights(path: Path, model, model_name: str | None = None) -> dict:
    """Merged weights {HF parameter name: W + ΔW} of the adapter at ``path``; ``model`` is left unchanged.

    A non-finite merged weight is an ExpertError (as PEFT's ``safe_merge``); only plain LoRA on linear layers is
    supported (DoRA and other variants change more than the weight).
    """
    import torch
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    peft_model = load_adapter(path, model, model_name)
    try:
        if getattr(peft_model.peft_config[ADAPTER], "use_dora", False):
            raise ExpertError(f"{path} is a DoRA adapter: only plain LoRA adapters can be evaluated")
        out = {}
        with torch.no_grad():
            for name, module in peft_model.get_base_model().named_modules():
                if not isinstance(module, LoraLayer) or ADAPTER not in getattr(module, "lora_A", {}):
                    continue
                if not isinstance(module, LoraLinear):
                    raise ExpertError(f"{path} adapts {name} ({type(module).__name__}): only linear LoRA layers are supported")
                base = module.get_base_layer().weight
                w = (base.float() + module.get_delta_weight(ADAPTER).float()).to(base.dtype)
                if not bool(torch.isfinite(w).all()):
                    raise ExpertError(f"merged LoRA weight of {name} is not finite: the adapter {path} is corrupt")
                out[f"{name}.weight"] = w
    finally:
        peft_model.unload()
    if not out:
        raise ExpertError(f"{path} adapts no module of this model: it was made for another architecture")
    return out


__all__ = ["LoraSettings", "trainable_counts", "wrap", "save_adapter", "read_meta", "check_adapter", "load_adapter",
           "lora_weights", "parse_targets", "META_FILE"]
