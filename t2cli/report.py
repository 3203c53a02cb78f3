"""Reproduction report (`t2 report RUN_DIR`): gather what t2 wrote under a run folder and render it as markdown
tables shaped like the paper's, plus PNG plots.

Why: a reproduction is dozens of commands, each writing its own files; this turns the folder into one readable page
without re-running anything, and says plainly which table has no data.

What it reads, anywhere under RUN_DIR (the report folder itself is skipped):

* eval summaries — ``summary.json`` (`t2 eval`) and ``adapt-<strategy>-<task>.json`` (`t2 adapt`), both
  ``{"meta": ..., "results": [{label, task, split, n, correct, accuracy, stderr}]}``;
* training curves — ``metrics.jsonl`` (`t2 train`, `t2 classify-train`: one record per step with reward, accuracy,
  kl, grad_norm, lr, seconds, val_accuracy);
* CEM trajectories — ``cem-*.jsonl`` (`t2 adapt --strategy fewshot`: one record per iteration with every sample's
  fitness ``[accuracy, mean log-likelihood]`` and the best so far).

Paper tables come from a folder convention, ``RUN_DIR/<table>/<row>/...`` (``examples/reproduce_cpu.sh`` follows it):

* ``table1`` fine-tuning: rows ``base``, ``lora``, ``svf``;
* ``table2`` self-adaptation on unseen tasks: rows ``base``, ``lora``, ``prompt``, ``cls``, ``fewshot``;
* ``table3`` cross-model transfer: rows ``base``, ``ordered``, ``shuffled``;
* ``table5`` ablation: rows ``mlp-rl``, ``attn-rl``, ``all-rl``, ``mlp-ntp``, ``lora-ntp``, ``lora-rl``.

Every summary found below ``<table>/<row>/`` fills that row. A summary holding several labels (``t2 eval
--with-base``, ``t2 adapt --compare``) fills row ``<row>`` with its ``adapted-*`` label (or its only label) and adds
rows ``<row>/<label>`` for the others. Columns are tasks (``task (split)`` when the split is not ``test``); a cell is
accuracy ± binomial standard error in %, with n, and ×r = the ratio to the table's ``base`` row (the paper's
normalised score). Rows outside the known names are kept, after the known ones; a table with no data is skipped.
When one cell is found twice, the summary with the larger n (then the newer file) wins and a note says so.

Output: ``<out>/report.md`` and PNGs next to it; every file is written through a temporary file and renamed, the PNGs
before ``report.md``, so a reader never sees a half-written report. matplotlib (Agg canvas, imported lazily) is
optional: without it the report has tables only and a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError, DataError
from .paths import slug, temp_path_for

log = logging.getLogger(__name__)

REPORT_FILE = "report.md"

# (key, title, known rows in display order with their names)
PAPER_TABLES: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("table1", "Table 1 — fine-tuning on the training tasks",
     [("base", "base model"), ("lora", "LoRA (next-token)"), ("svf", "SVF (RL)")]),
    ("table2", "Table 2 — self-adaptation on unseen tasks",
     [("base", "base model"), ("lora", "LoRA"), ("prompt", "T² prompt"), ("cls", "T² cls-expert"),
      ("fewshot", "T² few-shot (CEM)")]),
    ("table3", "Table 3 — cross-model transfer of experts",
     [("base", "target base model"), ("ordered", "experts, ordered σ"), ("shuffled", "experts, shuffled σ (control)")]),
    ("table5", "Table 5 — ablation: modules and objective",
     [("mlp-rl", "SVF · MLP · RL"), ("attn-rl", "SVF · attention · RL"), ("all-rl", "SVF · MLP+attention · RL"),
      ("mlp-ntp", "SVF · MLP · next-token"), ("lora-ntp", "LoRA · next-token"), ("lora-rl", "LoRA · RL")]),
]
TASK_ORDER = ["gsm8k", "mbpp", "mbpp_sanitized", "arc_easy", "arc_easy_text", "math", "math500", "humaneval",
              "arc_challenge", "arc_challenge_text"]
MATPLOTLIB_MISSING = "matplotlib is not installed: tables only, no plots (pip install 't2cli[plot]')"


@dataclass
class Table:
    """One rendered table: markdown ``columns``/``rows`` (formatted cells) and the raw numbers in ``data``."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    data: list[dict] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        numeric = [i > 0 and all(_numeric_cell(row[i]) for row in self.rows) for i in range(len(self.columns))]
        lines = ["| " + " | ".join(_md(c) for c in self.columns) + " |",
                 "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "columns": self.columns, "rows": self.rows, "data": self.data,
                "plots": [str(p) for p in self.plots], "notes": self.notes}


@dataclass
class Report:
    run_dir: Path
    out: Path
    report_path: Path
    tables: list[Table]
    plots: list[Path]
    warnings: list[str]
    sources: dict[str, list[str]]

    def table(self, key: str) -> Table | None:
        return next((t for t in self.tables if t.key == key), None)

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "out": str(self.out), "report": str(self.report_path),
                "plots": [str(p) for p in self.plots], "warnings": self.warnings, "sources": self.sources,
                "tables": {t.key: t.to_dict() for t in self.tables}}


# ---------------------------------------------------------------- discovery

@dataclass
class _Summary:
    path: Path
    rel: str
    meta: dict
    results: list[dict]


@dataclass
class _Curve:
    rel: str
    records: list[dict]


@dataclass
class _Trajectory:
    rel: str
    records: list[dict]


def _is_summary_name(name: str) -> bool:
    return name == "summary.json" or (name.startswith("adapt-") and name.endswith(".json"))


def _valid_row(r: Any) -> bool:
    return (isinstance(r, dict) and all(k in r for k in ("label", "task", "n", "accuracy"))
            and isinstance(r["n"], int) and isinstance(r["accuracy"], (int, float)))


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            if isinstance(rec, dict):
                out.append(rec)
    return out


def _first_record(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    return rec if isinstance(rec, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def _is_cem(path: Path) -> bool:
    if path.name.startswith("cem") and path.suffix == ".jsonl":
        return True
    rec = _first_record(path)
    return rec is not None and "iteration" in rec and "fitness" in rec and "best" in rec


def discover(run_dir: Path, skip: Path | None = None):
    """Walk ``run_dir`` (sorted, deterministic) and return (summaries, curves, trajectories, warnings)."""
    summaries: list[_Summary] = []
    curves: list[_Curve] = []
    trajectories: list[_Trajectory] = []
    warnings: list[str] = []
    skip_resolved = skip.resolve() if skip is not None else None
    for dirpath, dirnames, filenames in os.walk(run_dir):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip_resolved is None or (here / d).resolve() != skip_resolved))
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(run_dir).as_posix()
            if name.startswith("."):
                continue
            try:
                if _is_summary_name(name):
                    obj = json.loads(path.read_text(encoding="utf-8"))
                    rows = obj.get("results") if isinstance(obj, dict) else None
                    if not isinstance(rows, list):
                        continue
                    good = [r for r in rows if _valid_row(r)]
                    if len(good) < len(rows):
                        warnings.append(f"{rel}: skipped {len(rows) - len(good)} malformed result rows")
                    if good:
                        summaries.append(_Summary(path, rel, obj.get("meta") or {}, good))
                elif name == "metrics.jsonl":
                    records = [r for r in _read_jsonl(path) if isinstance(r.get("step"), int)]
                    if records:
                        folder = Path(rel).parent.as_posix()
                        curves.append(_Curve(run_dir.resolve().name if folder == "." else folder, records))
                elif name.endswith(".jsonl") and _is_cem(path):
                    records = [r for r in _read_jsonl(path) if "iteration" in r and "fitness" in r]
                    if records:
                        trajectories.append(_Trajectory(rel, records))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                warnings.append(f"{rel}: unreadable, skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})")
    return summaries, curves, trajectories, warnings


# ---------------------------------------------------------------- formatting

def _numeric_cell(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-—+")


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt_acc(accuracy: float, stderr: float | None) -> str:
    """``28.5 ± 2.0`` (percent, one decimal)."""
    s = f"{100 * accuracy:.1f}"
    return s if stderr is None else f"{s} ± {100 * stderr:.1f}"


def _stderr(r: dict) -> float:
    se = r.get("stderr")
    if isinstance(se, (int, float)):
        return float(se)
    p, n = float(r["accuracy"]), int(r["n"])
    return math.sqrt(p * (1 - p) / n) if n else 0.0


def _task_key(task: str, split: str) -> tuple:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task, split != "test", split)


def _column(task: str, split: str) -> str:
    return task if split == "test" else f"{task} ({split})"


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _primary(f: Any) -> float | None:
    """The first component of a (possibly lexicographic) fitness: accuracy on the shots."""
    if isinstance(f, (list, tuple)):
        return _num(f[0]) if f else None
    return _num(f)


# ---------------------------------------------------------------- tables

def _results_table(summaries: list[_Summary]) -> Table:
    rows, data = [], []
    for s in summaries:
        for r in s.results:
            se = _stderr(r)
            split = str(r.get("split", "test"))
            rows.append([s.rel, r["label"], r["task"], split, str(r["n"]), f"{100 * r['accuracy']:.1f}",
                         f"{100 * se:.1f}"])
            data.append({"source": s.rel, "label": r["label"], "task": r["task"], "split": split, "n": r["n"],
                         "correct": r.get("correct"), "accuracy": r["accuracy"], "stderr": se,
                         "model": s.meta.get("model")})
    return Table("results", "All evaluation results",
                 ["source", "label", "task", "split", "n", "accuracy (%)", "± stderr"], rows, data)


def _rows_of(s: _Summary, row: str) -> list[tuple[str, dict]]:
    """Map a summary below ``<table>/<row>/`` onto table rows (see the module docstring)."""
    labels = list(dict.fromkeys(r["label"] for r in s.results))
    main = next((lab for lab in labels if str(lab).startswith("adapted-")), None)
    if main is None and len(labels) == 1:
        main = labels[0]
    if main is None and row in labels:
        main = row
    return [(row if r["label"] == main else f"{row}/{r['label']}", r) for r in s.results]


def _paper_table(key: str, title: str, known: list[tuple[str, str]], summaries: list[_Summary]) -> Table | None:
    cells: dict[tuple[str, tuple], tuple[dict, _Summary]] = {}
    notes: list[str] = []
    models: dict[str, None] = {}
    for s in summaries:
        parts = Path(s.rel).parts
        if len(parts) < 3 or parts[0] != key:
            continue
        if s.meta.get("model"):
            models[str(s.meta["model"])] = None
        for row, r in _rows_of(s, parts[1]):
            col = (r["task"], str(r.get("split", "test")))
            prev = cells.get((row, col))
            if prev is not None:
                old_r, old_s = prev
                better = (r["n"], s.path.stat().st_mtime) > (old_r["n"], old_s.path.stat().st_mtime)
                kept, dropped = (s, old_s) if better else (old_s, s)
                notes.append(f"{row} · {_column(*col)}: found in {old_s.rel} and {s.rel}; kept {kept.rel} "
                             f"(larger n, then newer), ignored {dropped.rel}")
                if not better:
                    continue
            cells[(row, col)] = (r, s)
    if not cells:
        return None
    names = dict(known)
    found_rows = list(dict.fromkeys(row for row, _ in cells))
    order = [k for k, _ in known if k in found_rows]
    order += sorted(r for r in found_rows if r not in order)
    cols = sorted(dict.fromkeys(col for _, col in cells), key=lambda c: _task_key(*c))
    rows, data = [], []
    for row in order:
        line = [f"{names.get(row, row)} (`{row}`)" if row in names else f"`{row}`"]
        for col in cols:
            hit = cells.get((row, col))
            if hit is None:
                line.append("—")
                continue
            r, s = hit
            se = _stderr(r)
            cell = f"{fmt_acc(r['accuracy'], se)} (n={r['n']})"
            base = cells.get(("base", col))
            ratio = None
            if row != "base" and base is not None and base[0]["accuracy"] > 0:
                ratio = r["accuracy"] / base[0]["accuracy"]
                cell += f" ×{ratio:.2f}"
            line.append(cell)
            data.append({"row": row, "task": col[0], "split": col[1], "n": r["n"], "correct": r.get("correct"),
                         "accuracy": r["accuracy"], "stderr": se, "ratio_to_base": ratio, "label": r["label"],
                         "source": s.rel, "model": s.meta.get("model")})
        rows.append(line)
    table = Table(key, title, ["method", *(_column(*c) for c in cols)], rows, data, notes=notes)
    if models:
        table.notes.insert(0, "model: " + ", ".join(f"`{m}`" for m in models))
    return table


def _window_mean(values: list[float], head: bool, k: int = 5) -> float | None:
    if not values:
        return None
    w = max(1, min(k, len(values) // 2 or 1))
    part = values[:w] if head else values[-w:]
    return sum(part) / len(part)


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        v = _num(r.get(key))
        if v is not None:
            xs.append(r["step"])
            ys.append(v)
    return xs, ys


def _dedupe_steps(records: list[dict]) -> list[dict]:
    by_step: dict[int, dict] = {}
    for r in records:  # a resumed run may repeat steps: the later record wins
        by_step[r["step"]] = r
    return [by_step[s] for s in sorted(by_step)]


def _training_table(curves: list[_Curve]) -> Table:
    rows, data = [], []
    for c in curves:
        recs = c.records
        _, rew = _series(recs, "reward")
        vx, vy = _series(recs, "val_accuracy")
        _, kl = _series(recs, "kl")
        seconds = sum(v for v in (_num(r.get("seconds")) for r in recs) if v is not None)
        steps = max((r["step"] for r in recs), default=0)
        r0, r1 = _window_mean(rew, True), _window_mean(rew, False)
        best_i = max(range(len(vy)), key=lambda i: (vy[i], -vx[i])) if vy else None
        fmt = lambda v, d=3: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
        val = "—" if best_i is None else f"{100 * vy[0]:.1f} → {100 * vy[best_i]:.1f} (step {vx[best_i]})"
        rows.append([c.rel, str(steps), f"{fmt(r0)} → {fmt(r1)}", val, fmt(kl[-1] if kl else None, 4),
                     f"{seconds / 60:.1f}"])
        data.append({"run": c.rel, "steps": steps, "reward_start": r0, "reward_end": r1,
                     "val_accuracy_start": vy[0] if vy else None,
                     "best_val_accuracy": vy[best_i] if best_i is not None else None,
                     "best_step": vx[best_i] if best_i is not None else None, "last_kl": kl[-1] if kl else None,
                     "train_minutes": seconds / 60})
    return Table("training", "Training curves (metrics.jsonl)",
                 ["run", "steps", "reward, first → last (≤5-step means)", "val accuracy %, start → best (step)",
                  "last KL", "train minutes"], rows, data)


def _cem_stats(records: list[dict]) -> list[dict]:
    out = []
    for r in records:
        fits = [v for v in (_primary(f) for f in r.get("fitness") or []) if v is not None]
        out.append({"iteration": r.get("iteration"), "best": _primary(r.get("best")),
                    "iteration_best": _primary(r.get("iteration_best")) if "iteration_best" in r else (max(fits) if fits else None),
                    "mean": sum(fits) / len(fits) if fits else None, "min": min(fits) if fits else None,
                    "max": max(fits) if fits else None, "population": len(fits)})
    return out


def _cem_table(trajectories: list[_Trajectory]) -> Table:
    rows, data = [], []
    for t in trajectories:
        st = _cem_stats(t.records)
        last = t.records[-1]
        best = last.get("best")
        loglik = _num(best[1]) if isinstance(best, (list, tuple)) and len(best) > 1 else None
        pct = lambda v: "—" if v is None else f"{100 * v:.1f}"  # noqa: E731
        rows.append([t.rel, str(len(st)), str(st[-1]["population"]), f"{pct(st[0]['mean'])} → {pct(st[-1]['mean'])}",
                     pct(st[-1]["best"]), "—" if loglik is None else f"{loglik:.3f}"])
        data.append({"trajectory": t.rel, "iterations": len(st), "population": st[-1]["population"],
                     "mean_first": st[0]["mean"], "mean_last": st[-1]["mean"], "best": st[-1]["best"],
                     "best_mean_loglik": loglik, "per_iteration": st})
    return Table("cem", "Few-shot CEM search (fitness = accuracy on the shots)",
                 ["trajectory", "iterations", "population", "mean fitness %, first → last iteration",
                  "best fitness %", "best mean log-lik"], rows, data)


# ---------------------------------------------------------------- plots

def _figure(width: float = 6.4, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _publish(tmp: Path, path: Path) -> None:
    """Rename a finished temporary file over ``path``, readable like any file the user creates (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = temp_path_for(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save(fig, path: Path) -> Path:
    tmp = temp_path_for(path)
    try:
        fig.savefig(tmp, format="png", bbox_inches="tight")
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _bars(path: Path, title: str, groups: list[str], series: list[tuple[str, list[tuple[float, float] | None]]]):
    """Grouped bars: one group per task, one bar per method, error bars = stderr (all in %)."""
    fig = _figure(max(6.4, 1.2 + 0.35 * len(groups) * max(1, len(series))), 4.2)
    ax = fig.add_subplot(111)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g, v in enumerate(values) if v is not None]
        ys = [100 * v[0] for v in values if v is not None]
        es = [100 * v[1] for v in values if v is not None]
        if xs:
            ax.bar(xs, ys, width, yerr=es, capsize=3, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=15 if len(groups) > 3 else 0)
    ax.set_ylabel("accuracy (%) ± stderr")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _paper_bars(out: Path, table: Table) -> Path:
    cols = list(dict.fromkeys((d["task"], d["split"]) for d in table.data))
    cols.sort(key=lambda c: _task_key(*c))
    rows = list(dict.fromkeys(d["row"] for d in table.data))
    cell = {(d["row"], (d["task"], d["split"])): (d["accuracy"], d["stderr"]) for d in table.data}
    return _bars(out / f"bars-{table.key}.png", table.title, [_column(*c) for c in cols],
                 [(r, [cell.get((r, c)) for c in cols]) for r in rows])


def _all_bars(out: Path, table: Table) -> Path:
    cols = sorted(dict.fromkeys((d["task"], d["split"]) for d in table.data), key=lambda c: _task_key(*c))
    labels = list(dict.fromkeys(d["label"] for d in table.data))
    cell = {}
    for d in table.data:  # the same label twice for one task: the larger n wins
        k = (d["label"], (d["task"], d["split"]))
        if k not in cell or d["n"] > cell[k][2]:
            cell[k] = (d["accuracy"], d["stderr"], d["n"])
    return _bars(out / "bars-all.png", "accuracy per label and task (all summaries)", [_column(*c) for c in cols],
                 [(lab, [cell[(lab, c)][:2] if (lab, c) in cell else None for c in cols]) for lab in labels])


def _train_plot(out: Path, curve: _Curve) -> Path:
    fig = _figure(11, 3.2)
    panels = [("mean reward", [("reward", "reward")]),
              ("accuracy (%)", [("val_accuracy", "validation"), ("accuracy", "train batch")]),
              ("KL to base", [("kl", "KL")])]
    for i, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        drawn = 0
        for key, name in keys:
            xs, ys = _series(curve.records, key)
            if title.startswith("accuracy"):
                ys = [100 * y for y in ys]
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
        elif len(keys) > 1:
            ax.legend(fontsize=7)
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(curve.rel, fontsize=10, y=1.04)
    return _save(fig, out / f"train-{slug(curve.rel)}.png")


def _cem_plot(out: Path, traj: _Trajectory) -> Path:
    st = _cem_stats(traj.records)
    it = [s["iteration"] for s in st]
    pc = lambda key: [None if s[key] is None else 100 * s[key] for s in st]  # noqa: E731
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot(111)
    lo, hi = pc("min"), pc("max")
    if all(v is not None for v in lo + hi):
        ax.fill_between(it, lo, hi, alpha=0.15, label="population min–max")
    ax.plot(it, pc("mean"), marker="o", markersize=3, label="population mean")
    ax.plot(it, pc("iteration_best"), marker="^", markersize=3, label="iteration best")
    ax.plot(it, pc("best"), marker="s", markersize=3, label="best so far")
    ax.set_xlabel("CEM iteration")
    ax.set_ylabel("fitness: accuracy on the shots (%)")
    ax.set_title(traj.rel, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out / f"cem-{slug(Path(traj.rel).with_suffix('').as_posix())}.png")


# ---------------------------------------------------------------- the report

def _matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        return False
    return True


def _image(out: Path, path: Path) -> str:
    return f"![{path.stem}]({path.relative_to(out).as_posix()})"


def build_report(run_dir: Path, out: Path | None = None, plots: bool = True) -> Report:
    """Read everything reportable under ``run_dir`` and write ``<out>/report.md`` (+ PNGs); return what was built.

    ``out`` defaults to ``run_dir/report``. Raises DataError when the folder holds nothing to report.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder: pass the run folder your t2 commands wrote to (e.g. runs/repro)")
    out = Path(out) if out is not None else run_dir / "report"
    summaries, curves, trajectories, warnings = discover(run_dir, skip=out)
    if not (summaries or curves or trajectories):
        raise DataError(f"nothing to report in {run_dir}: no summary.json, adapt-*.json, metrics.jsonl or cem-*.jsonl "
                        "below it; point `t2 report` at the folder given to `t2 eval/train/adapt --out`")
    for c in curves:
        c.records = _dedupe_steps(c.records)

    tables: list[Table] = []
    for key, title, known in PAPER_TABLES:
        t = _paper_table(key, title, known, summaries)
        if t is not None:
            tables.append(t)
    if summaries:
        tables.append(_results_table(summaries))
    if curves:
        tables.append(_training_table(curves))
    if trajectories:
        tables.append(_cem_table(trajectories))

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plots and not _matplotlib_available():
        warnings.append(MATPLOTLIB_MISSING)
        plots = False
    if plots:
        for t in tables:
            if t.key.startswith("table"):
                t.plots.append(_paper_bars(out, t))
            elif t.key == "results":
                t.plots.append(_all_bars(out, t))
        tt = next((t for t in tables if t.key == "training"), None)
        if tt is not None:
            tt.plots += [_train_plot(out, c) for c in curves]
        ct = next((t for t in tables if t.key == "cem"), None)
        if ct is not None:
            ct.plots += [_cem_plot(out, tr) for tr in trajectories]
        written = [p for t in tables for p in t.plots]

    sources = {"summaries": [s.rel for s in summaries], "metrics": [c.rel for c in curves],
               "trajectories": [t.rel for t in trajectories]}
    skipped = [title for key, title, _ in PAPER_TABLES if not any(t.key == key for t in tables)]
    text = render_markdown(run_dir, out, tables, warnings, sources, skipped)
    report_path = out / REPORT_FILE
    _write_text(report_path, text)  # last: report.md only ever points at complete PNGs
    log.info("wrote %s and %d plots", report_path, len(written))
    return Report(run_dir, out, report_path, tables, written, warnings, sources)


def render_markdown(run_dir: Path, out: Path, tables: Iterable[Table], warnings: list[str],
                    sources: dict[str, list[str]], skipped: list[str]) -> str:
    from . import __version__

    parts = [
        "# t2 reproduction report", "",
        f"Run folder: `{run_dir}` · t2 {__version__} · {len(sources['summaries'])} eval summaries, "
        f"{len(sources['metrics'])} training runs, {len(sources['trajectories'])} CEM trajectories.", "",
        "Accuracy in % ± binomial standard error √(p(1−p)/n), n = examples scored; ×r = ratio to the `base` row of "
        "the same table and task (the paper's normalised score). Paper tables follow the folder convention "
        "`<run>/<table>/<row>/` (see `t2cli/report.py`).", "",
    ]
    if skipped:
        parts += ["No data for: " + "; ".join(skipped) + ".", ""]
    for t in tables:
        parts += [f"## {t.title}", ""]
        parts += [f"_{n}_" if n.startswith("model:") else f"- note: {n}" for n in t.notes]
        if t.notes:
            parts.append("")
        parts += [t.markdown(), ""]
        parts += [_image(out, p) for p in t.plots]
        if t.plots:
            parts.append("")
    if warnings:
        parts += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    return "\n".join(parts)
