"""Worker for the data-parallel test: one rank of a gloo process group training on a tiny model."""

from __future__ import annotations


def run_rank(rank: int, world: int, init_file: str, model_dir: str, cache_dir: str, run_dir: str, cfg_kw: dict) -> None:
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from _svf_helpers import FakeTask
    from t2cli.rl import TrainConfig, train
    from t2cli.svd import find_cache

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(model_dir)
        cache = find_cache(model, "tiny", cache_dir)
        train(TrainConfig(run_dir=run_dir, **cfg_kw), model, tok, "tiny", cache, FakeTask(n=8))
    finally:
        dist.destroy_process_group()
