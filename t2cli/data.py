"""Dataset loading: one JSONL file per split from a local folder, or the Hugging Face Hub — same records either way.

The local layout is ``<data_dir>/<folder>/<split>.jsonl`` with the Hub's record fields (see
``../shared/datasets/README.md``). The folder comes from an explicit option or ``T2_DATA_DIR``; without either the
Hub is used through ``datasets.load_dataset`` (imported lazily so importing this module stays cheap).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from t2cli.errors import DataError

log = logging.getLogger(__name__)

ENV_VAR = "T2_DATA_DIR"
_OFFLINE_HINT = f"pass --data-dir or set {ENV_VAR}=../shared/datasets to use the offline copies"


def resolve_data_dir(explicit: str | Path | None = None) -> Path | None:
    """The local data folder: ``explicit`` if given, else ``$T2_DATA_DIR``, else None (use the Hub)."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return None


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSONL file (blank lines skipped); a bad line raises DataError naming file and line."""
    records = []
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}; check the file's permissions or {_OFFLINE_HINT}") from exc
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} line {lineno} is not valid JSON ({exc.msg}); restore the file from its source copy"
                ) from exc
            if not isinstance(record, dict):
                raise DataError(
                    f"{path} line {lineno} is not a JSON object; restore the file from its source copy"
                )
            records.append(record)
    return records


def load_records(
    folder: str,
    split: str,
    hub_id: str,
    hub_config: str | None,
    data_dir: str | Path | None = None,
) -> list[dict]:
    """The records of one split, from ``<data_dir>/<folder>/<split>.jsonl`` or from the Hub dataset."""
    root = resolve_data_dir(data_dir)
    if root is not None:
        path = root / folder / f"{split}.jsonl"
        if not path.is_file():
            where = "folder is missing" if not (root / folder).is_dir() else "split file is missing"
            raise DataError(
                f"data file {path} not found ({where}); point --data-dir or {ENV_VAR} at a folder holding "
                f"{folder}/{split}.jsonl (e.g. ../shared/datasets)"
            )
        log.debug("reading %s", path)
        return read_jsonl(path)
    name = hub_id + (f" ({hub_config})" if hub_config else "")
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a hard dependency
        raise DataError(f"the 'datasets' package is needed to load {name} from the Hub; {_OFFLINE_HINT}") from exc
    log.debug("loading %s split %s from the Hub", name, split)
    try:
        ds = datasets.load_dataset(hub_id, hub_config, split=split)
    except Exception as exc:  # network errors, missing dataset or split: all surface as one DataError
        raise DataError(
            f"cannot load Hub dataset {name} split {split!r} ({type(exc).__name__}); {_OFFLINE_HINT}"
        ) from exc
    return [dict(row) for row in ds]
