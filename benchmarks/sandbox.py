"""Sandbox throughput: programs per second through ``run_programs`` vs a bare ``subprocess.run`` loop.

Runs the same N HumanEval canonical solutions (prompt + solution + test + check) both ways in the same process
and prints the ratio. The bare loop has no isolation at all; the ratio is the price of the sandbox.

    python benchmarks/sandbox.py --data-dir ../shared/datasets -n 50 --workers 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from t2cli.tasks import get_task
from t2cli.tasks.sandbox import run_programs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with humaneval/test.jsonl (default: $T2_DATA_DIR)")
    parser.add_argument("-n", type=int, default=50, help="number of HumanEval problems")
    parser.add_argument("--workers", type=int, default=2, help="parallel sandboxed programs")
    args = parser.parse_args()

    task = get_task("humaneval")
    examples = task.load("test", args.data_dir, limit=args.n)
    programs = [task.build_program(task.extract(e.solution, e), e) for e in examples]

    start = time.perf_counter()
    bare_ok = 0
    for program in programs:
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30)
        bare_ok += done.returncode == 0
    bare_s = time.perf_counter() - start

    start = time.perf_counter()
    serial = run_programs(programs, workers=1, timeout=10)
    serial_s = time.perf_counter() - start

    start = time.perf_counter()
    results = run_programs(programs, workers=args.workers, timeout=10)
    sandbox_s = time.perf_counter() - start

    n = len(programs)
    print(f"programs: {n}  passed bare/sandbox(1)/sandbox({args.workers}): {bare_ok}/{sum(r.passed for r in serial)}/{sum(r.passed for r in results)}")
    print(f"bare subprocess loop : {n / bare_s:7.1f} programs/s")
    print(f"run_programs workers=1: {n / serial_s:7.1f} programs/s  (ratio to bare {bare_s / serial_s:.2f}x)")
    print(f"run_programs workers={args.workers}: {n / sandbox_s:7.1f} programs/s  (ratio to bare {bare_s / sandbox_s:.2f}x)")


if __name__ == "__main__":
    main()
