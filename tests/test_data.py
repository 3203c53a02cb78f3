"""t2cli.data: local folder or Hub, env resolution, and one-line errors for missing or corrupt files."""

from __future__ import annotations

import sys
import types

import pytest

from t2cli.data import load_records, read_jsonl, resolve_data_dir
from t2cli.errors import DataError


def test_resolve_prefers_explicit_then_env(tmp_path, monkeypatch):
    monkeypatch.setenv("T2_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "opt") == tmp_path / "opt"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("T2_DATA_DIR")
    assert resolve_data_dir() is None
    assert resolve_data_dir("") is None


def test_load_local_split(shared_data_dir):
    rows = load_records("gsm8k", "test", "openai/gsm8k", "main", shared_data_dir)
    assert len(rows) == 1319
    assert {"question", "answer"} <= set(rows[0])


def test_env_var_is_used(shared_data_dir, monkeypatch):
    monkeypatch.setenv("T2_DATA_DIR", str(shared_data_dir))
    assert len(load_records("humaneval", "test", "openai/openai_humaneval", None)) == 164


def test_missing_file_names_file_and_fix(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    with pytest.raises(DataError) as info:
        load_records("gsm8k", "train", "openai/gsm8k", "main", tmp_path)
    message = str(info.value)
    assert "gsm8k/train.jsonl" in message and "T2_DATA_DIR" in message and "\n" not in message


def test_corrupt_line_names_file_and_line(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "test.jsonl").write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(DataError, match=r"test\.jsonl line 3"):
        load_records("x", "test", "some/hub", None, tmp_path)
    (folder / "test.jsonl").write_text('[1, 2]\n')
    with pytest.raises(DataError, match="line 1 is not a JSON object"):
        read_jsonl(folder / "test.jsonl")


def test_hub_failure_is_a_data_error(monkeypatch):
    monkeypatch.delenv("T2_DATA_DIR", raising=False)
    fake = types.ModuleType("datasets")

    def load_dataset(*args, **kwargs):
        raise ConnectionError("offline")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DataError, match=r"openai/gsm8k \(main\).*--data-dir"):
        load_records("gsm8k", "test", "openai/gsm8k", "main")


def test_hub_records_become_dicts(monkeypatch):
    monkeypatch.delenv("T2_DATA_DIR", raising=False)
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda hub_id, config, split: [{"q": hub_id, "c": config, "s": split}]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert load_records("f", "test", "a/b", "cfg") == [{"q": "a/b", "c": "cfg", "s": "test"}]
