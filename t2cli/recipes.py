"""Recipes: the few lines that turn a command's options into calls of the core library (load, cache, train).

Kept apart from ``cli.py`` so commands stay thin and the same flow is scriptable from Python.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from .errors import CacheError

log = logging.getLogger(__name__)


def ensure_cache(loaded, targets: str, layers: str, cache_path: Path | None, build: bool,
                 progress: Callable[[int], None] | None = None):
    """The model's SVD cache holding every selected matrix; built on request (``build``), else a clear error."""
    from .arch import select_targets
    from .svd import decompose, find_cache

    chosen = select_targets(loaded.model, targets, layers)
    try:
        cache = find_cache(loaded.model, loaded.ref.name, cache_path)
        cache.require([t.name for t in chosen])
        return cache, chosen
    except CacheError:
        if not build:
            raise
    log.info("building the SVD cache for %s", loaded.ref.name)
    decompose(loaded.model, loaded.ref.name, chosen, cache_path, progress=progress)
    return find_cache(loaded.model, loaded.ref.name, cache_path), chosen


def maybe_init_distributed() -> tuple[int, int]:
    """Join the process group when launched by ``torchrun`` (gloo on CPU, NCCL on GPU); returns (rank, world)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _load_for_training(model: str | None, device: str, dtype: str):
    """Join the process group under torchrun (one GPU per rank), then load the model."""
    from .models import load_model

    _, world = maybe_init_distributed()
    if world > 1 and device == "auto":
        import torch

        device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    return load_model(model, device=device, dtype=dtype)


def run_train(config, model: str | None, task_name: str, device: str = "auto", dtype: str = "auto",
              cache_path: Path | None = None, build_cache: bool = False,
              progress: Callable[[int], None] | None = None):
    """Train one SVF expert: load the model, find (or build) its SVD cache, run REINFORCE or NTP."""
    from .rl import train
    from .tasks import get_task

    task = get_task(task_name)
    config.validate()
    loaded = _load_for_training(model, device, dtype)
    cache, _ = ensure_cache(loaded, config.targets, config.layers, cache_path, build_cache)
    return train(config, loaded.model, loaded.tokenizer, loaded.ref.name, cache, task, progress=progress)


def run_transfer(source: Path, target: str | None, order: str = "ordered", seed: int = 0, layer_map: str = "strict",
                 out: Path | None = None, source_num_layers: int | None = None, device: str = "cpu",
                 dtype: str = "float32", cache_path: Path | None = None, build_cache: bool = False,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Transfer an expert file to another model: plan the mapping, find (or build) the target's SVD cache for the
    mapped matrices, map the vectors, write the expert. Returns a summary (path, counts, provenance)."""
    from .experts import load_expert, save_expert
    from .models import load_model
    from .transfer import check_choices, default_out_path, names_regex, plan_transfer, transfer_expert

    check_choices(order, layer_map)
    expert = load_expert(source)
    loaded = load_model(target, device=device, dtype=dtype)
    plan = plan_transfer(expert, loaded.model, layer_map, source_num_layers)
    try:
        cache, _ = ensure_cache(loaded, names_regex(plan.pairs), "all", cache_path, build_cache, progress)
    except CacheError as exc:
        raise CacheError(f"{exc} (or pass --decompose to build it now)") from None
    params, meta = transfer_expert(expert, loaded.model, loaded.ref.name, cache, order, seed, layer_map, source_num_layers)
    path = save_expert(out or default_out_path(Path(source), loaded.ref.name, order), params, meta)
    t = meta["transfer"]
    return {"expert": str(path), "source": str(source), "source_model": t["source_model"], "target_model": loaded.ref.name,
            "svd_cache": str(cache.path), "order": order, "seed": t["seed"], "layer_map": layer_map,
            "matrices": len(params.z), "params": params.num_params(), "rank_handling": t["rank_handling"],
            "layer_pairs": t["layer_pairs"], "source_num_layers": t["source_num_layers"],
            "source_layers_inferred": t["source_layers_inferred"], "unused_source": len(t["unused_source"])}


def run_train_lora(config, model: str | None, task_name: str, lora_settings, device: str = "auto", dtype: str = "auto",
                   progress: Callable[[int], None] | None = None):
    """Train one LoRA adapter (the baseline): load the model, wrap it with PEFT, run NTP or REINFORCE."""
    from .lora_train import train_lora
    from .tasks import get_task

    task = get_task(task_name)
    config.validate()
    loaded = _load_for_training(model, device, dtype)
    return train_lora(config, lora_settings, loaded.model, loaded.tokenizer, loaded.ref.name, task, progress=progress)
