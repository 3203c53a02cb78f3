"""HFBackend throughput against a bare ``model.generate`` loop (same prompts, batch size, greedy) in one run.

    python benchmarks/generation.py                    # embedded default model (t2cli.models.load_model(None))
    python benchmarks/generation.py --model PATH       # any HF folder
    python benchmarks/generation.py --tiny             # tiny random Llama (no files needed)

Prints one JSON line; ``ratio`` = backend tokens/s ÷ baseline tokens/s (target >= 0.95).
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
from t2cli.generation import GenerationSettings, HFBackend  # noqa: E402


def load(args):
    return load_benchmark_model(args.model, args.tiny, device=args.device)


def prompts(n: int) -> list[list[dict]]:
    path = Path(os.environ.get("T2_DATA_DIR", ROOT.parent / "shared" / "datasets")) / "gsm8k" / "test.jsonl"
    if path.exists():
        qs = [json.loads(line)["question"] for line in path.read_text().splitlines()[:n]]
    else:
        qs = [f"What is {k} + {k * 7}? Explain step by step. " * (1 + k % 4) for k in range(n)]
    return [[{"role": "user", "content": q}] for q in qs]


def baseline(model, tok, texts, s: GenerationSettings) -> tuple[int, float]:
    """The plain loop a user would write: batches in the given order, left padding, model.generate."""
    from transformers import GenerationConfig

    tok.padding_side = "left"
    eos = tok.eos_token_id
    cfg = GenerationConfig(
        max_new_tokens=s.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos
    )
    device = next(model.parameters()).device
    outs, t0 = [], time.perf_counter()
    for i in range(0, len(texts), s.batch_size):
        batch = tok(texts[i : i + s.batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(**batch, generation_config=cfg)
        new = out[:, batch["input_ids"].shape[1] :]
        outs += tok.batch_decode(new, skip_special_tokens=True)
    dt = time.perf_counter() - t0
    return count_tokens(tok, outs), dt


def count_tokens(tok, outs: list[str]) -> int:
    """Generated tokens, counted the same way for both sides (re-tokenised completions)."""
    return sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    model, tok, name = load(args)
    torch.manual_seed(0)
    ps = prompts(args.n)
    s = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    backend = HFBackend(model, tok)
    texts = [backend.render(p) for p in ps]
    backend.generate(ps[: args.batch_size], s)  # warm-up

    def ours(settings):
        t0 = time.perf_counter()
        outs = backend.generate(ps, settings)
        dt = time.perf_counter() - t0
        return count_tokens(tok, outs), dt

    best = {"baseline": 0.0, "backend": 0.0, "backend_stop": 0.0}
    tokens = {}
    for _ in range(args.repeats):  # interleaved, best of N: less noise from the machine
        for key, fn in (
            ("baseline", lambda: baseline(model, tok, texts, s)),
            ("backend", lambda: ours(s)),
            ("backend_stop", lambda: ours(GenerationSettings(**{**s.__dict__, "stop": ("\n\n\n\n",)}))),
        ):
            n_tok, dt = fn()
            best[key] = max(best[key], n_tok / dt)
            tokens[key] = n_tok
    print(json.dumps({
        "bench": "generation", "model": name, "device": str(next(model.parameters()).device),
        "prompts": len(ps), "batch_size": s.batch_size, "max_new_tokens": s.max_new_tokens,
        "baseline_tok_s": round(best["baseline"], 1), "backend_tok_s": round(best["backend"], 1),
        "backend_stop_tok_s": round(best["backend_stop"], 1),
        "tokens": tokens, "ratio": round(best["backend"] / best["baseline"], 3),
        "ratio_with_stop": round(best["backend_stop"] / best["baseline"], 3),
    }))


if __name__ == "__main__":
    main()
