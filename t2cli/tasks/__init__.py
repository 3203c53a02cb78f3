"""Task registry: ``get_task(name)`` and ``task_names()``; one module per benchmark."""

from __future__ import annotations

from typing import Callable

from t2cli.errors import TaskError
from t2cli.tasks.base import CodeTask, Example, Score, Task

__all__ = ["Example", "Score", "Task", "CodeTask", "get_task", "task_names"]


def _factories() -> dict[str, Callable[[], Task]]:
    from t2cli.tasks import arc, gsm8k, humaneval, math_task, mbpp

    return {
        "gsm8k": gsm8k.GSM8K,
        "math": math_task.MATH,
        "math500": math_task.MATH500,
        "mbpp": mbpp.mbpp,
        "mbpp_sanitized": mbpp.mbpp_sanitized,
        "humaneval": humaneval.HumanEval,
        "arc_easy": arc.arc_easy,
        "arc_challenge": arc.arc_challenge,
        "arc_easy_text": arc.arc_easy_text,
        "arc_challenge_text": arc.arc_challenge_text,
    }


def task_names() -> list[str]:
    """Every registered task name, in a fixed order."""
    return list(_factories())


def get_task(name: str) -> Task:
    """A fresh task object for ``name``; an unknown name raises TaskError listing the known ones."""
    factories = _factories()
    key = (name or "").strip().lower().replace("-", "_")
    if key not in factories:
        raise TaskError(f"unknown task {name!r}; choose one of: {', '.join(factories)}")
    return factories[key]()
