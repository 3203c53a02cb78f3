"""Cost of one SVF training step against a plain forward+backward of the same tokens, measured in one run.

    python benchmarks/train_step.py                 # embedded default model (SmolLM2-135M), batch 32, CPU
    python benchmarks/train_step.py --tiny          # tiny random Llama (no files needed)

Variants (each in its own child process, so peak RSS is its own):
* ``plain``   — the targeted matrices W themselves are the trainable leaves (what full fine-tuning of those
                matrices costs): forward, sliced log-probs at completion positions, backward. No SVF.
* ``svf``     — compose W'(z) once, micro-batches through functional_call on detached leaves, backward through the
                composition into z; the same loss. No KL.
* ``svf_kl``  — as ``svf`` plus exact KL to the base model (one extra no-grad forward).
Prints one JSON object: seconds per step (median of --repeats after a warm-up), peak RSS (MiB), ratios vs plain
(target for ``svf``: <= 1.15).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _models import load_benchmark_model  # noqa: E402


def load(args):
    return load_benchmark_model(args.model, args.tiny, device="cpu", dtype="float32")


def get_cache(model, name, targets, args):
    from t2cli.errors import CacheError
    from t2cli.svd import decompose, find_cache

    out = Path(args.cache) if args.cache else None
    try:
        cache = find_cache(model, name, out)
        cache.require([t.name for t in targets])
        return cache
    except CacheError:
        return find_cache(model, name, decompose(model, name, targets, out_dir=out).path)


def run_variant(args) -> dict:
    import torch

    from t2cli import rl_loss, svf
    from t2cli.arch import select_targets

    torch.manual_seed(0)
    model, tok, name = load(args)
    targets = select_targets(model, args.targets)
    cache = get_cache(model, name, targets, args)
    names = [t.name for t in targets]
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (args.batch, args.prompt_len + args.completion_len))
    labels = ids.clone()
    labels[:, : args.prompt_len] = rl_loss.IGNORE
    mask = torch.ones_like(ids)
    adv = torch.randn(args.batch)
    params_now = dict(model.named_parameters())
    factors = svf.Factors.load(cache, names, model=model) if args.variant != "plain" else None
    z = svf.init_params(factors, names) if factors else None
    kl = args.kl_coef if args.variant == "svf_kl" else 0.0

    def step():
        if args.variant == "plain":
            leaves = {n: params_now[n].detach().clone().requires_grad_(True) for n in names}
            composed = None
        else:
            composed = svf.compose_params(factors, z)
            leaves = {n: w.detach().requires_grad_(True) for n, w in composed.items()}
        for s in range(0, args.batch, args.micro):
            b = rl_loss.Batch(ids[s : s + args.micro], mask[s : s + args.micro], labels[s : s + args.micro])
            loss, _ = rl_loss.micro_batch_loss(model, leaves, b, adv[s : s + args.micro], kl, "mean", args.batch)
            loss.backward()
        if composed is not None:
            torch.autograd.backward(list(composed.values()), grad_tensors=[leaves[n].grad for n in composed])
            for p in z.parameters():
                p.grad = None

    times = []
    for i in range(args.repeats + 1):
        t0 = time.perf_counter()
        step()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": statistics.median(times), "peak_rss_mib": round(rss, 1), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--cache", default=None, help="SVD cache folder (default: the model's default cache)")
    ap.add_argument("--targets", default="mlp")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=96)
    ap.add_argument("--completion-len", type=int, default=64)
    ap.add_argument("--kl-coef", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", choices=["plain", "svf", "svf_kl"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    argv = [a for a in sys.argv[1:]]
    res = {}
    for v in ("plain", "svf", "svf_kl"):
        out = subprocess.run([sys.executable, __file__, *argv, "--variant", v], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"variant {v} failed:\n{out.stderr[-3000:]}")
        res[v] = json.loads(out.stdout.strip().splitlines()[-1])
    base = res["plain"]["seconds"]
    summary = {
        "model": args.model or ("tiny-llama" if args.tiny else "default"), "targets": args.targets,
        "batch": args.batch, "micro": args.micro, "tokens_per_seq": args.prompt_len + args.completion_len,
        **{f"{v}_s": round(r["seconds"], 3) for v, r in res.items()},
        **{f"{v}_peak_rss_mib": r["peak_rss_mib"] for v, r in res.items()},
        "ratio_svf": round(res["svf"]["seconds"] / base, 3),
        "ratio_svf_kl": round(res["svf_kl"]["seconds"] / base, 3),
        "target_ratio": 1.15,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
