"""Data-parallel training (2 gloo processes on CPU) matches one process on the same global batch."""

import sys
from pathlib import Path

import pytest
from _svf_helpers import FakeTask, decomposed
from conftest import build_model
from t2cli.experts import load_expert
from t2cli.rl import TrainConfig, train
from t2cli.svf import init_params

# Greedy rollouts are identical in both runs; the z gradients differ only by the order of float sums across
# ranks (all-reduce), so after 2 AdamW steps the vectors agree to well below this.
TOLERANCE = 1e-5

CFG = dict(steps=2, batch_size=4, micro_batch_size=2, samples_per_prompt=1, rollout="greedy", baseline="mean",
           kl_coef=0.1, val_every=0, checkpoint_every=0, lr=1e-2, grad_clip=1.0, targets="all")


@pytest.mark.timeout(180)
def test_two_processes_match_one(tiny_tokenizer, tmp_path):
    import torch.multiprocessing as mp

    model = build_model("llama", len(tiny_tokenizer))
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    cache = decomposed(model, tmp_path, name="tiny")

    single = train(TrainConfig(run_dir=tmp_path / "single", **CFG), model, tiny_tokenizer, "tiny", cache, FakeTask(n=8))

    tests_dir = str(Path(__file__).parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from _dist_worker import run_rank

    mp.start_processes(run_rank, args=(2, str(tmp_path / "pg"), str(model_dir), str(cache.path),
                                       str(tmp_path / "dp"), CFG), nprocs=2, join=True, start_method="fork")

    a = load_expert(single.expert_path).params.z
    b = load_expert(tmp_path / "dp" / "expert.safetensors").params.z
    assert a.keys() == b.keys()
    moved = max(float((a[n] - b[n]).abs().max()) for n in a)
    assert moved < TOLERANCE
    init = init_params(cache, list(a), seed=0).z
    assert max(float((a[n] - init[n].detach()).abs().max()) for n in a) > 100 * TOLERANCE, "training must move z"
    assert len((tmp_path / "dp" / "metrics.jsonl").read_text().splitlines()) == CFG["steps"]
