"""Two-pass adaptation costs on the embedded default model (or --model), measured in one run.

    python benchmarks/adapt.py                      # SmolLM2-135M-Instruct, 16 ARC-Challenge test prompts
    python benchmarks/adapt.py --n 32 --cem-population 8 --cem-iterations 1

Experts are random SVF vectors (noise std 0.5; their quality does not matter for timing). Prints one JSON object:

* ``two_pass_overhead`` = (pass 1 + one expert switch) / pass 2 — pass 1 is the prompt strategy's classification
  (<= 8 new tokens per prompt, base weights), pass 2 the answers with an expert's weights (task budget, greedy).
* ``switch_over_answer`` = one cached-expert switch (``set_weights``) / one answer's generation time (pass 2 time /
  prompts, i.e. amortised over the batch — the conservative denominator). Target <= 5%.
* ``compose_s`` = composing one expert's W' (done once per expert, then cached).
* ``cem_seconds_per_iteration`` for ``--cem-population`` fitness evaluations on ``--shots`` shots.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--task", default="arc_challenge")
    ap.add_argument("--n", type=int, default=16, help="prompts for pass 1 / pass 2")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--switches", type=int, default=20)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--cem-population", type=int, default=4)
    ap.add_argument("--cem-iterations", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="answer budget (default: the task's)")
    ap.add_argument("--targets", default="mlp")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--data-dir", default=os.environ.get("T2_DATA_DIR", str(ROOT.parent / "shared" / "datasets")))
    args = ap.parse_args()

    import torch

    from t2cli import svf
    from t2cli.adapt import fewshot as fs
    from t2cli.adapt.dispatch import Router
    from t2cli.evaluate import settings_for
    from t2cli.experts import Expert, build_meta
    from t2cli.generation import GenerationSettings, HFBackend
    from t2cli.models import load_model
    from t2cli.recipes import ensure_cache
    from t2cli.tasks import get_task

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device="cpu", dtype="float32")
    cache, chosen = ensure_cache(loaded, args.targets, "all", None, build=True)
    names = [t.name for t in chosen]
    experts = {}
    for i, (label, task_name) in enumerate([("math", "gsm8k"), ("reasoning", "arc_easy"), ("code", "mbpp")]):
        params = svf.init_params(cache, names, seed=i + 1, noise_std=0.5)
        meta = build_meta(base_model=loaded.ref.name, model_fingerprint=cache.fingerprint,
                          svd_fingerprint=cache.fingerprint, task=task_name, targets=args.targets, layers="all")
        experts[label] = Expert(params.detached(), meta, None)
    task = get_task(args.task)
    examples = task.load("test", args.data_dir)
    prompts = [e.messages for e in examples[: args.n]]
    backend = HFBackend(loaded.model, loaded.tokenizer)
    router = Router(backend, loaded.model, loaded.ref.name, experts, "prompt", None, cache.path, args.batch_size)
    settings = settings_for(task, GenerationSettings(batch_size=args.batch_size), args.max_new_tokens)

    def note(what, seconds):
        print(f"{what}: {seconds:.2f}s", file=sys.stderr, flush=True)

    backend.generate(prompts[:1], GenerationSettings(max_new_tokens=2))  # warm-up: the first call pays one-off costs
    t = time.perf_counter()
    router.weights("math")
    compose_s = time.perf_counter() - t
    note("compose one expert", compose_s)
    for label in experts:
        router.weights(label)

    labels = list(experts)
    backend.set_weights(router.weights(labels[0]))  # warm the base copies
    backend.set_weights(None)
    t = time.perf_counter()
    for k in range(args.switches):
        backend.set_weights(router.weights(labels[k % len(labels)]))
    switch_s = (time.perf_counter() - t) / args.switches
    backend.set_weights(None)

    t = time.perf_counter()
    choices = router.choose(prompts)
    pass1_s = time.perf_counter() - t
    note("pass 1", pass1_s)

    backend.set_weights(router.weights("reasoning"))
    t = time.perf_counter()
    answers = backend.generate(prompts, settings)
    pass2_s = time.perf_counter() - t
    note("pass 2", pass2_s)
    backend.set_weights(None)
    answer_s = pass2_s / len(prompts)

    shots, _ = fs.draw_shots(examples, args.shots, 0)
    factors = svf.Factors.load(cache, names, model=loaded.model)
    cfg = fs.FewShotConfig(shots=args.shots, population=args.cem_population, iterations=args.cem_iterations,
                           batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    res = fs.search(backend, loaded.model, loaded.tokenizer, factors, list(experts.values()), task, shots, cfg)

    tokens = sum(len(loaded.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    print(json.dumps({
        "model": loaded.ref.name, "task": args.task, "prompts": len(prompts), "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "matrices": len(names),
        "pass1_s": round(pass1_s, 3), "pass2_s": round(pass2_s, 3), "switch_s": round(switch_s, 5),
        "compose_s": round(compose_s, 3), "answer_s": round(answer_s, 3), "pass2_tokens": tokens,
        "two_pass_overhead": round((pass1_s + switch_s) / pass2_s, 4),
        "switch_over_answer": round(switch_s / answer_s, 5),
        "first_pass_routes": {str(k): sum(c.route == k for c in choices) for k in {c.route for c in choices}},
        "cem_population": args.cem_population, "shots": args.shots,
        "cem_seconds_per_iteration": round(res.seconds_per_iteration, 2),
    }))


if __name__ == "__main__":
    main()
