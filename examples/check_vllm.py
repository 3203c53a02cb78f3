"""Check the vLLM backend on a GPU machine: generation, weight swap, exact restore, agreement with HF.

    pip install 't2cli[vllm]'
    python examples/check_vllm.py [MODEL_PATH] [--tp 1] [--dtype bfloat16] [--inprocess]

MODEL_PATH is an HF folder with safetensors (default: the embedded SmolLM2-135M-Instruct, converted once).
Steps: greedy completions for 4 prompts; zero q_proj of the first two layers through ``set_weights`` and check
the completions change; ``set_weights(None)`` and check they are identical to the first; then the same prompts
greedy with HFBackend (same dtype) and report agreement (informative: kernels differ, so bf16 may diverge).
Prints one JSON object; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--tp", type=int, default=1, help="tensor_parallel_size")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--inprocess", action="store_true", help="VLLM_ENABLE_V1_MULTIPROCESSING=0")
    args = ap.parse_args()
    if args.inprocess:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

    import torch

    from t2cli.generation import GenerationSettings, HFBackend, make_backend

    path = args.model
    if path is None:
        from t2cli import models

        path = models.local_path(models.resolve(None))
    prompts = [
        [{"role": "user", "content": "What is 12 * 7? Answer with the number."}],
        [{"role": "user", "content": "Name the capital of France."}],
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a haiku about rain."},
        ],
        [{"role": "user", "content": "Write a Python function that returns the square of x."}],
    ]
    s = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=4)
    report: dict = {"model": str(path), "tp": args.tp, "dtype": args.dtype, "checks": {}}
    checks = report["checks"]

    t0 = time.perf_counter()
    vb = make_backend("vllm", str(path), dtype=args.dtype, tensor_parallel_size=args.tp, gpu_memory_utilization=0.5)
    report["load_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    base = vb.generate(prompts, s)
    report["generate_s"] = round(time.perf_counter() - t0, 2)
    checks["nonempty"] = all(isinstance(c, str) for c in base) and any(c.strip() for c in base)

    names = [f"model.layers.{i}.self_attn.q_proj.weight" for i in (0, 1)]
    orig = vb.checkpoint_tensors(names)
    t0 = time.perf_counter()
    vb.set_weights({n: torch.zeros_like(t) for n, t in orig.items()})
    report["set_weights_s"] = round(time.perf_counter() - t0, 2)
    modified = vb.generate(prompts, s)
    checks["modified_changes_output"] = modified != base

    vb.set_weights(None)
    restored = vb.generate(prompts, s)
    checks["restore_identical"] = restored == base

    # HF on the same prompts and GPU (vLLM was given half of the GPU memory)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).to("cuda").eval()
    hf = HFBackend(model, tok).generate(prompts, s)
    same = [a == b for a, b in zip(base, hf)]
    prefix = [len(os.path.commonprefix([a, b])) / max(1, len(a), len(b)) for a, b in zip(base, hf)]
    report["hf_agreement"] = {"identical": sum(same), "of": len(same), "mean_common_prefix": round(sum(prefix) / 4, 3)}
    report["samples"] = {"vllm": base[:2], "hf": hf[:2], "modified": modified[:2]}
    report["ok"] = all(checks.values())
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one JSON line either way, so a driver script can parse the outcome
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
