"""Several samples per prompt (RL rollouts): prompt sharing against doing every row from scratch, in one run.

    python benchmarks/rollouts.py                 # embedded default model, ARC-Easy prompts, 8 prompts x 4 samples
    python benchmarks/rollouts.py --tiny          # tiny random Llama (no model files needed)

Two measurements on the same prompts, interleaved, best of ``--repeats``:
* ``generate`` — ``HFBackend.generate`` with sampled rollouts, each prompt repeated ``--samples`` times: the shared
  prefill (``share_prompts=True``, each distinct prompt prefilled once) vs ``share_prompts=False``.
* ``loss`` — forward + backward of the RL loss over those completions with the MLP matrices trainable:
  packed rows (``build_batch(pack=True)``, the prompt once per row) vs one row per sequence.
Prints one JSON line with seconds and ``speedup`` (baseline ÷ shared) for each, and the max |Δ log π| between the
packed and plain loss (they compute the same numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _models import load_benchmark_model  # noqa: E402
from t2cli import rl_loss  # noqa: E402
from t2cli.generation import GenerationSettings, HFBackend  # noqa: E402


def arc_prompts(n: int) -> list:
    from t2cli.tasks import get_task

    data = Path(os.environ.get("T2_DATA_DIR", ROOT.parent / "shared" / "datasets"))
    if (data / "arc_easy").is_dir():
        return [e.messages for e in get_task("arc_easy_text").load("train", data, limit=n)]
    return [({"role": "user", "content": f"Question {k}: which of these is a metal?\nChoices:\n- iron\n- wood\n- "
                                         f"glass\n- paper\nAnswer with the correct choice."},) for k in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--micro", type=int, default=16, help="sequences per loss forward")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    model, tok, name = load_benchmark_model(args.model, args.tiny, device="cpu", dtype="float32")
    backend = HFBackend(model, tok)
    rows = [p for p in arc_prompts(args.prompts) for _ in range(args.samples)]
    s = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0, batch_size=args.micro)
    backend.generate(rows[: args.samples], s)  # warm-up
    completions = backend.generate(rows, s)
    finished = [len(tok(c, add_special_tokens=False)["input_ids"]) < args.max_new_tokens for c in completions]
    names = [n for n, _ in model.named_parameters() if ".mlp." in n]
    params = dict(model.named_parameters())

    def gen(share: bool) -> float:
        backend.share_prompts = share
        t0 = time.perf_counter()
        backend.generate(rows, s)
        return time.perf_counter() - t0

    logps = {}

    def loss(pack: bool) -> float:
        leaves = {n: params[n].detach().clone().requires_grad_(True) for n in names}
        t0 = time.perf_counter()
        out = []
        for i in range(0, len(rows), args.micro):
            b = rl_loss.build_batch(tok, rows[i : i + args.micro], completions[i : i + args.micro],
                                    finished[i : i + args.micro], pack=pack)
            logp, _, _ = rl_loss.sequence_terms(model, leaves, b, kl=False)
            logp.sum().backward()
            out.append(logp.detach())
        logps[pack] = torch.cat(out)
        return time.perf_counter() - t0

    best = {k: float("inf") for k in ("gen_shared", "gen_plain", "loss_packed", "loss_plain")}
    for _ in range(args.repeats):
        best["gen_plain"] = min(best["gen_plain"], gen(False))
        best["gen_shared"] = min(best["gen_shared"], gen(True))
        best["loss_plain"] = min(best["loss_plain"], loss(False))
        best["loss_packed"] = min(best["loss_packed"], loss(True))
    print(json.dumps({
        "bench": "rollouts", "model": name, "threads": torch.get_num_threads(), "prompts": args.prompts,
        "samples_per_prompt": args.samples, "max_new_tokens": args.max_new_tokens, "micro": args.micro,
        **{f"{k}_s": round(v, 3) for k, v in best.items()},
        "generate_speedup": round(best["gen_plain"] / best["gen_shared"], 3),
        "loss_speedup": round(best["loss_plain"] / best["loss_packed"], 3),
        "max_abs_logp_diff": float((logps[True] - logps[False]).abs().max()),
    }))


if __name__ == "__main__":
    main()
