"""Benchmark `t2 decompose` against a bare loop of torch.linalg.svd over the same matrices, in the same run.

Reports the wall-time ratio (target <= 1.15) and the peak RSS of a full `t2 decompose` process (model load included)
against the model's size (target <= size + 1 GiB). Usage: python benchmarks/decompose.py [--layers 0-5] [--model SPEC]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=None)
    ap.add_argument("--layers", default="all")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    import torch

    from t2cli.arch import select_targets
    from t2cli.models import load_model
    from t2cli.svd import decompose

    loaded = load_model(args.model, device="cpu", dtype="float32")
    targets = select_targets(loaded.model, "all", args.layers)
    params = dict(loaded.model.named_parameters())
    model_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())

    bare, ours = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for t in targets:
            torch.linalg.svd(params[t.name].detach().float(), full_matrices=False)
        bare.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            decompose(loaded.model, loaded.ref.name, targets, Path(tmp) / "cache")
            ours.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "t2cli.cli", "decompose", *([args.model] if args.model else []),
               "--layers", args.layers, "--out", str(Path(tmp) / "cache"), "--json", "--device", "cpu"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    result = {
        "benchmark": "decompose", "model": loaded.ref.name, "matrices": len(targets),
        "bare_svd_s": round(min(bare), 2), "t2_decompose_s": round(min(ours), 2),
        "ratio": round(min(ours) / min(bare), 3), "ratio_target": 1.15,
        "peak_rss_gib": round(peak_kib / 2**20, 3), "model_gib": round(model_bytes / 2**30, 3),
        "memory_target_gib": round(model_bytes / 2**30 + 1, 3),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
