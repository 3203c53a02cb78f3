"""`t2 report` on fabricated run folders: paper tables from the folder convention, numbers, n and stderr
formatting, PNGs, atomic output, --json, errors; and `bash -n` of the reproduction scripts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from t2cli.errors import ConfigError, DataError
from t2cli.report import MATPLOTLIB_MISSING, build_report

ROOT = Path(__file__).resolve().parents[1]


def _row(label, task, n, correct, split="test"):
    p = correct / n
    return {"label": label, "task": task, "split": split, "n": n, "correct": correct, "accuracy": p,
            "stderr": math.sqrt(p * (1 - p) / n)}


def _summary(path: Path, rows, model="smollm2-135m-instruct"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": {"model": model}, "results": rows}))


def _metrics(path: Path, steps=6):
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = [{"step": 0, "val_accuracy": 0.25}]
    for s in range(1, steps + 1):
        rec = {"step": s, "reward": -1 + 0.2 * s, "accuracy": 0.1 * s, "kl": 0.001 * s, "grad_norm": 0.01,
               "lr": 2e-3, "seconds": 30.0, "loss": 0.5, "logp": -1.0}
        if s % 3 == 0:
            rec["val_accuracy"] = 0.25 + 0.05 * (s // 3)
        recs.append(rec)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def _cem(path: Path, iterations=3, population=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    best = None
    lines = []
    for it in range(1, iterations + 1):
        fits = [[0.1 * it + 0.1 * i / population, -1.0 + 0.1 * i] for i in range(population)]
        ib = max(fits)
        best = ib if best is None or ib > best else best
        lines.append(json.dumps({"iteration": it, "mean": [0.5, 0.5], "std": [0.3, 0.3], "fitness": fits,
                                 "iteration_best": ib, "best": best, "best_x": [0.4, 0.6]}))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "run"
    # Table 1: base, lora, svf on two tasks (one eval with --with-base gives base + expert rows in one summary)
    _summary(run / "table1/base/summary.json", [_row("base", "arc_easy", 200, 50), _row("base", "gsm8k", 100, 3)])
    _summary(run / "table1/lora/summary.json", [_row("lora-arc_easy", "arc_easy", 200, 56)])
    _summary(run / "table1/svf/summary.json", [_row("arc_easy", "arc_easy", 200, 60), _row("arc_easy", "gsm8k", 100, 4)])
    # Table 2: base + an adapt summary with --compare rows, and a fewshot run with a CEM trajectory
    _summary(run / "table2/base/summary.json", [_row("base", "arc_challenge", 100, 20)])
    _summary(run / "table2/prompt/adapt-prompt-arc_challenge.json",
             [_row("adapted-prompt", "arc_challenge", 100, 22), _row("base", "arc_challenge", 100, 20)])
    _summary(run / "table2/fewshot/adapt-fewshot-arc_challenge.json", [_row("adapted-fewshot", "arc_challenge", 90, 27)])
    _cem(run / "table2/fewshot/cem-arc_challenge.jsonl")
    # training runs
    _metrics(run / "train/arc_easy/metrics.jsonl")
    _metrics(run / "train/gsm8k/metrics.jsonl", steps=4)
    # noise that must be ignored: per-example records and an eval sidecar
    (run / "table1/base/base").mkdir(parents=True)
    (run / "table1/base/base/arc_easy.jsonl").write_text(json.dumps({"id": 1, "correct": True}) + "\n")
    (run / "table1/base/base/arc_easy.meta.json").write_text(json.dumps({"fingerprint": {}, "result": {}}))
    return run


def test_paper_tables_numbers_n_and_stderr(run_dir):
    rep = build_report(run_dir, plots=False)
    t1 = rep.table("table1")
    assert t1.columns == ["method", "gsm8k", "arc_easy"]  # paper task order, not alphabetical
    assert [r[0] for r in t1.rows] == ["base model (`base`)", "LoRA (next-token) (`lora`)", "SVF (RL) (`svf`)"]
    # base ARC-Easy: 50/200 = 25.0%, stderr sqrt(.25*.75/200) = 3.06% -> "3.1"
    assert t1.rows[0][2] == "25.0 ± 3.1 (n=200)"
    # SVF: 60/200 = 30.0 ± 3.2, ratio to base 1.20
    assert t1.rows[2][2] == "30.0 ± 3.2 (n=200) ×1.20"
    assert t1.rows[1][1] == "—"  # LoRA has no gsm8k cell
    svf_cell = next(d for d in t1.data if d["row"] == "svf" and d["task"] == "arc_easy")
    assert svf_cell["n"] == 200 and svf_cell["correct"] == 60 and abs(svf_cell["ratio_to_base"] - 1.2) < 1e-9

    t2 = rep.table("table2")
    rows = [r[0] for r in t2.rows]
    # known rows first in the paper's order; an adapt --compare summary's extra label gets its own row
    assert rows[:3] == ["base model (`base`)", "T² prompt (`prompt`)", "T² few-shot (CEM) (`fewshot`)"]
    assert "`prompt/base`" in rows
    assert t2.rows[1][1] == "22.0 ± 4.1 (n=100) ×1.10"
    assert t2.rows[2][1] == "30.0 ± 4.8 (n=90) ×1.50"
    assert rep.table("table3") is None and rep.table("table5") is None  # no data: skipped

    text = rep.report_path.read_text()
    assert "## Table 1 — fine-tuning" in text and "## Table 3" not in text
    assert "No data for: Table 3" in text
    assert "| base model (`base`) | 3.0 ± 1.7 (n=100) | 25.0 ± 3.1 (n=200) |" in text


def test_results_training_and_cem_tables(run_dir):
    rep = build_report(run_dir, plots=False)
    res = rep.table("results")
    assert len(res.rows) == 9 and all(r[0].endswith(".json") for r in res.rows)
    assert ["table1/base/summary.json", "base", "arc_easy", "test", "200", "25.0", "3.1"] in res.rows

    tr = rep.table("training")
    assert [r[0] for r in tr.rows] == ["train/arc_easy", "train/gsm8k"]
    arc = tr.data[0]
    assert arc["steps"] == 6 and arc["best_val_accuracy"] == pytest.approx(0.35) and arc["best_step"] == 6
    assert arc["val_accuracy_start"] == 0.25 and arc["train_minutes"] == pytest.approx(3.0)
    assert arc["reward_start"] == pytest.approx((-0.8 - 0.6 - 0.4) / 3)  # window = min(5, 6 // 2) = 3 steps
    assert tr.rows[0][3] == "25.0 → 35.0 (step 6)"

    cem = rep.table("cem")
    assert cem.rows[0][:3] == ["table2/fewshot/cem-arc_challenge.jsonl", "3", "4"]
    assert cem.data[0]["best"] == pytest.approx(0.3 + 0.075)
    assert cem.rows[0][4] == "37.5"


def test_pngs_written_and_referenced(run_dir):
    rep = build_report(run_dir)
    names = sorted(p.name for p in rep.plots)
    assert "bars-table1.png" in names and "bars-table2.png" in names and "bars-all.png" in names
    assert "train-train--arc_easy.png" in names and any(n.startswith("cem-") for n in names)
    text = rep.report_path.read_text()
    for p in rep.plots:
        assert p.parent == run_dir / "report" and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000
        assert f"]({p.name})" in text
    assert not [p for p in (run_dir / "report").iterdir() if p.name.startswith(".")]  # no temp files left


def test_atomic_output_keeps_previous_report_on_failure(run_dir, monkeypatch):
    rep = build_report(run_dir)
    before = rep.report_path.read_text()
    import t2cli.report as report_mod

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod, "_cem_plot", boom)
    _summary(run_dir / "table1/svf/summary.json", [_row("arc_easy", "arc_easy", 200, 70)])
    with pytest.raises(RuntimeError):
        build_report(run_dir)
    assert rep.report_path.read_text() == before  # report.md is written last, through a temp file
    assert not [p for p in (run_dir / "report").iterdir() if p.name.startswith(".")]


def test_report_folder_is_not_read_back_and_rerun_is_stable(run_dir, tmp_path):
    first = build_report(run_dir, plots=False).report_path.read_text()
    (run_dir / "report" / "summary.json").write_text(json.dumps({"meta": {}, "results": [_row("x", "gsm8k", 1, 1)]}))
    assert build_report(run_dir, plots=False).report_path.read_text() == first


def test_duplicate_cell_keeps_larger_n_and_notes_it(run_dir):
    _summary(run_dir / "table1/svf/rerun/summary.json", [_row("arc_easy", "arc_easy", 50, 40)])
    t1 = build_report(run_dir, plots=False).table("table1")
    assert t1.rows[2][2].startswith("30.0 ± 3.2 (n=200)")
    assert any("table1/svf/rerun/summary.json" in n and "kept table1/svf/summary.json" in n for n in t1.notes)


def test_split_other_than_test_is_its_own_column(tmp_path):
    run = tmp_path / "r"
    _summary(run / "table5/mlp-rl/summary.json", [_row("e", "arc_easy", 40, 20, split="validation")])
    _summary(run / "table5/attn-rl/summary.json", [_row("e", "arc_easy", 40, 10)])
    t5 = build_report(run, plots=False).table("table5")
    assert t5.columns == ["method", "arc_easy", "arc_easy (validation)"]
    assert [r[0] for r in t5.rows] == ["SVF · MLP · RL (`mlp-rl`)", "SVF · attention · RL (`attn-rl`)"]


def test_without_matplotlib_tables_only_with_warning(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    rep = build_report(run_dir, out=run_dir / "plain")
    assert rep.plots == [] and rep.warnings == [MATPLOTLIB_MISSING]
    assert not list((run_dir / "plain").glob("*.png"))
    assert "## Table 1" in rep.report_path.read_text() and MATPLOTLIB_MISSING in rep.report_path.read_text()


def test_malformed_files_are_warnings_not_crashes(tmp_path):
    run = tmp_path / "r"
    _summary(run / "a/summary.json", [_row("base", "gsm8k", 10, 1), {"label": "broken"}])
    (run / "b").mkdir()
    (run / "b/summary.json").write_text("{not json")
    rep = build_report(run, plots=False)
    assert len(rep.table("results").rows) == 1
    assert any("a/summary.json: skipped 1 malformed" in w for w in rep.warnings)
    assert any(w.startswith("b/summary.json: unreadable") for w in rep.warnings)


def test_nothing_to_report_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="nothing to report in .*point `t2 report` at the folder"):
        build_report(tmp_path / "empty")
    with pytest.raises(ConfigError, match="is not a folder"):
        build_report(tmp_path / "missing")


def test_cli_json_and_errors(run_dir, tmp_path, capsys):
    r = run_cli(capsys, "report", run_dir, "--out", tmp_path / "o", "--json")
    assert r.code == 0, r.err
    obj = json.loads(r.out)
    assert obj["report"] == str(tmp_path / "o" / "report.md") and Path(obj["report"]).is_file()
    assert set(obj["tables"]) == {"table1", "table2", "results", "training", "cem"}
    cells = {(d["row"], d["task"]): d for d in obj["tables"]["table1"]["data"]}
    assert cells[("base", "gsm8k")]["n"] == 100 and cells[("svf", "arc_easy")]["correct"] == 60
    assert len(obj["plots"]) >= 5 and all(Path(p).is_file() for p in obj["plots"])
    assert obj["sources"]["trajectories"] == ["table2/fewshot/cem-arc_challenge.jsonl"]

    r = run_cli(capsys, "report", run_dir)
    assert r.code == 0 and "report: " in r.out and (run_dir / "report" / "report.md").is_file()

    (tmp_path / "void").mkdir()
    r = run_cli(capsys, "report", tmp_path / "void")
    assert r.code == 1 and r.err.startswith("error: nothing to report") and r.err.count("\n") == 1


@pytest.mark.parametrize("script", ["examples/reproduce_cpu.sh", "examples/reproduce_gpu.sh"])
def test_reproduction_scripts_parse(script):
    path = ROOT / script
    assert path.is_file()
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [("examples/reproduce_cpu.sh", ["--quick"]), ("examples/reproduce_gpu.sh", [])])
def test_reproduction_scripts_dry_run(script, args, tmp_path):
    """Run a script end to end with a stub `t2` that parses every call with the real CLI (an unknown flag fails),
    fabricates the outputs and runs the real `t2 report`; a second run must skip every step."""
    import os

    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "t2"
    stub.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "_fake_t2.py"}" "$@"\n')
    stub.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log),
           "T2_ALLOW_NO_GPU": "1", "T2_DATA_DIR": str(tmp_path)}
    results = tmp_path / "results"
    cmd = ["bash", str(ROOT / script), *args, str(results)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = (results / "report" / "report.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 5"):
        assert f"## {title} " in report
    calls = log.read_text().splitlines()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and log.read_text().splitlines() == calls  # resumable: nothing re-run


def test_a_training_run_folder_itself_is_named_after_the_folder(tmp_path):
    from t2cli.report import build_report

    run = tmp_path / "train-arc_easy"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 0, "val_accuracy": 0.3}\n{"step": 1, "reward": -0.5, "kl": 0.01}\n')
    build_report(run, tmp_path / "out")
    assert (tmp_path / "out" / "train-train-arc_easy.png").is_file()
    assert "| train-arc_easy |" in (tmp_path / "out" / "report.md").read_text()
