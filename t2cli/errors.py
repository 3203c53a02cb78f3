"""Domain errors. Every message says what went wrong and how to fix it, in one line."""

from __future__ import annotations


class T2Error(Exception):
    """Base class: the CLI prints the message on one line and exits with ``exit_code``."""

    exit_code = 1


class ConfigError(T2Error):
    """Bad option values or combinations (exit code 2, like a usage error)."""

    exit_code = 2


class ModelError(T2Error):
    """A model spec that cannot be resolved or loaded."""


class ArchitectureError(T2Error):
    """A model whose matrices SVF does not know how to target."""


class CacheError(T2Error):
    """A missing, corrupt or mismatched SVD cache."""


class ExpertError(T2Error):
    """An expert file that is missing, corrupt or does not fit the model."""


class DataError(T2Error):
    """A data set that cannot be found or parsed."""


class TaskError(T2Error):
    """An unknown task or a record the task cannot score."""


class BackendError(T2Error):
    """A generation backend that is unavailable or misconfigured."""


class TrainingError(T2Error):
    """A training run that cannot continue (NaN loss, bad checkpoint)."""
