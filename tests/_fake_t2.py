#!/usr/bin/env python
"""Stub `t2` for dry runs of examples/reproduce_*.sh (tests/test_report.py, slow): parses argv with the real CLI
(an unknown flag fails), fabricates the outputs, logs the call to $FAKE_LOG, and runs the real `t2 report`."""
import json, os, random, sys
from pathlib import Path
import typer
from t2cli.cli import app, main

args = sys.argv[1:]
if args and args[0] == "report":
    main(); sys.exit(0)
cmd = typer.main.get_command(app)
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(" ".join(args) + "\n")
ctx = cmd.make_context("t2", list(args), resilient_parsing=False)
sub = cmd.get_command(ctx, args[0])
sctx = sub.make_context(args[0], list(args[1:]))
p = sctx.params
name = args[0]
rnd = random.Random(" ".join(args))
def row(label, task, n):
    c = rnd.randint(0, n); acc = c / n
    return {"label": label, "task": task, "split": "test", "n": n, "correct": c, "accuracy": acc, "stderr": (acc*(1-acc)/n) ** .5}
if name == "eval":
    out = Path(p["out"]); out.mkdir(parents=True, exist_ok=True)
    labels = [Path(e).parent.name if Path(e).stem == "expert" else Path(e).stem for e in p["expert"]] + [Path(l).name for l in p["lora"]]
    if p["with_base"] or not labels: labels = ["base"] + labels
    for e in list(p["expert"]) + list(p["lora"]):
        assert Path(e).exists(), f"missing input {e}"
    (out / "summary.json").write_text(json.dumps({"meta": {"model": p["model"] or "smollm2"}, "results": [row(l, t, p["limit"] or 100) for l in labels for t in p["task"]]}))
elif name == "train":
    out = Path(p["out"]); out.mkdir(parents=True, exist_ok=True)
    if p["method"] == "lora":
        (out / f"lora-{p['task']}").mkdir(exist_ok=True)
    else:
        (out / "expert.safetensors").write_text("x")
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward": rnd.random(), "kl": 0.01, "val_accuracy": rnd.random()}) + "\n" for s in range(1, p["steps"] + 1)))
elif name == "classify-train":
    out = Path(p["out"]); out.mkdir(parents=True, exist_ok=True); (out / "expert.safetensors").write_text("x")
elif name == "adapt":
    out = Path(p["out"]); out.mkdir(parents=True, exist_ok=True)
    for e in p["experts"]: assert Path(e).exists(), f"missing expert {e}"
    rows = [row(f"adapted-{p['strategy']}", p["task"], p["limit"] or 100)]
    if p["compare"]: rows.append(row("base", p["task"], p["limit"] or 100))
    (out / f"adapt-{p['strategy']}-{p['task']}.json").write_text(json.dumps({"meta": {"model": p["model"] or "smollm2"}, "results": rows}))
    if p["strategy"] == "fewshot":
        (out / f"cem-{p['task']}.jsonl").write_text("".join(json.dumps({"iteration": i, "fitness": [[rnd.random(), -1]] * p["population"], "best": [0.5, -1]}) + "\n" for i in range(1, p["iterations"] + 1)))
elif name == "transfer":
    assert Path(p["source"]).exists(); Path(p["out"]).write_text("x")
